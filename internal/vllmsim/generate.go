package vllmsim

import (
	"context"
	"strconv"
	"time"
)

// choice is one generated sequence (one entry of "choices").
type choice struct {
	index   int    // index on the wire (prompt_idx * n + i for completions)
	prompt  int    // prompt tokens of the prompt it answers
	length  int    // tokens it will generate, EOS included
	finish  string // "stop" or "length"
	seed    int    // vocabulary offset
	eos     bool   // its last token is an EOS that emits no text
	emitted int    // tokens generated so far
	echo    string // text sent before the first token (echo)
	from    int    // first token the answer reports (see lastDelta)
}

// appendText appends the text of tokens [from, to) of c.
func (c *choice) appendText(b []byte, from, to int) []byte {
	if c.eos && to == c.length {
		to-- // the EOS token emits nothing
	}
	for t := from; t < to; t++ {
		b = append(b, word(c.seed, t)...)
	}
	return b
}

// done reports whether c generated all its tokens.
func (c *choice) done() bool { return c.emitted >= c.length }

// outputBudget decides how long an answer is and why it ends:
// the natural length (X-Sim-Length or Config.DefaultLength) unless the cap
// (the request's limit, or the context left) is reached first or at the
// same token, which vLLM reports as "length".
func (s *Server) outputBudget(prompt int, limit *int, defaultLimit int, ov simOverrides) (int, string, *apiError) {
	maxLen := s.cfg.MaxModelLen
	if prompt >= maxLen {
		e := badRequest("This model's maximum context length is "+strconv.Itoa(maxLen)+" tokens. However, your request has "+strconv.Itoa(prompt)+" input tokens. Please reduce the length of the input messages.", "input_tokens")
		return 0, "", &e
	}
	remaining := maxLen - prompt
	budget := remaining
	if limit == nil && defaultLimit > 0 {
		limit = &defaultLimit
	}
	if limit != nil {
		if *limit < 1 {
			e := badRequest("max_tokens must be at least 1, got "+strconv.Itoa(*limit)+".", "max_tokens")
			return 0, "", &e
		}
		if *limit > remaining {
			e := badRequest("'max_tokens' or 'max_completion_tokens' is too large: "+strconv.Itoa(*limit)+". This model's maximum context length is "+strconv.Itoa(maxLen)+" tokens and your request has "+strconv.Itoa(prompt)+" input tokens ("+strconv.Itoa(*limit)+" > "+strconv.Itoa(maxLen)+" - "+strconv.Itoa(prompt)+").", "max_tokens")
			return 0, "", &e
		}
		budget = *limit
	}
	natural := s.cfg.DefaultLength
	if ov.length > 0 {
		natural = ov.length
	}
	if budget <= natural {
		return budget, "length", nil
	}
	return natural, "stop", nil
}

// newChoice builds choice index of a prompt with the computed budget.
func (s *Server) newChoice(index, prompt, length int, finish string) choice {
	if s.cfg.VaryLengths && finish == "stop" {
		length = max(length-index, 1)
	}
	return choice{
		index:  index,
		prompt: prompt,
		length: length,
		finish: finish,
		seed:   choiceSeed(prompt, index),
		eos:    finish == "stop" && !s.cfg.OmitEOS,
	}
}

// outcome is how a generation ended.
type outcome int

const (
	outcomeDone    outcome = iota // every choice finished
	outcomeAborted                // the client went away
	outcomeError                  // X-Sim-Error-After
	outcomeCrash                  // X-Sim-Crash-After
)

// sink receives a generation's steps. first runs once, when prefill is
// done (the first token exists); emit runs for each choice that produced
// tokens [from, to) in a step. An error from either means the client is
// gone.
type sink interface {
	first() error
	emit(c *choice, from, to int) error
}

// generation is one request's run through the emulated engine.
type generation struct {
	s         *Server
	model     *modelStats
	choices   []choice
	prompt    int // usage.prompt_tokens: once per prompt, not per choice
	ttft      time.Duration
	tps       float64
	chunk     int
	failAfter int     // tokens per choice before the failure; -1 = none
	fail      outcome // outcomeError or outcomeCrash when failAfter >= 0
	generated int
	prefilled bool
}

// newGeneration applies the request's overrides to the configuration and
// counts the request as started.
func (s *Server) newGeneration(m *modelStats, choices []choice, prompt int, ov simOverrides) *generation {
	g := &generation{
		s: s, model: m, choices: choices, prompt: prompt,
		ttft: s.cfg.TTFT, tps: s.cfg.TokensPerSecond, chunk: s.cfg.TokensPerChunk,
		failAfter: -1,
	}
	if ov.hasTTFT {
		g.ttft = ov.ttft
	}
	if ov.hasTPS {
		g.tps = ov.tps
	}
	if ov.chunk > 0 {
		g.chunk = ov.chunk
	}
	switch {
	case ov.crashAfter >= 0:
		g.failAfter, g.fail = ov.crashAfter, outcomeCrash
	case ov.errorAfter >= 0:
		g.failAfter, g.fail = ov.errorAfter, outcomeError
	}
	s.requests.Add(1)
	m.running.Add(1)
	return g
}

// run generates on the emulated schedule: token t of every choice exists
// at TTFT + t/TPS. The first step carries one token (vLLM streams the first
// token at once), later steps TokensPerChunk. run returns when every choice
// is done, the failure point is reached, or ctx ends.
func (g *generation) run(ctx context.Context, out sink) outcome {
	stop := 0
	for i := range g.choices {
		stop = max(stop, g.choices[i].length)
	}
	if g.failAfter >= 0 && g.failAfter < stop {
		stop = g.failAfter
	}
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for pos := 0; pos < stop; {
		step := g.chunk
		if pos == 0 {
			step = 1
		}
		step = min(step, stop-pos)
		due := g.ttft
		if g.tps > 0 {
			due += time.Duration(float64(pos+step-1) * float64(time.Second) / g.tps)
		}
		if wait := due - time.Since(start); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				return outcomeAborted
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return outcomeAborted
		}
		if pos == 0 {
			g.prefill()
			if out.first() != nil {
				return outcomeAborted
			}
		}
		pos += step
		for i := range g.choices {
			c := &g.choices[i]
			to := min(c.length, pos)
			if to <= c.emitted {
				continue
			}
			from := c.emitted
			c.emitted = to
			g.generated += to - from
			if out.emit(c, from, to) != nil {
				return outcomeAborted
			}
		}
	}
	if g.failAfter >= 0 {
		return g.fail
	}
	return outcomeDone
}

// prefill counts the prompt once the first token exists, as vLLM's
// prompt_tokens_total does.
func (g *generation) prefill() {
	g.prefilled = true
	g.s.promptTokens.Add(int64(g.prompt))
	var engine int64
	for i := range g.choices {
		engine += int64(g.choices[i].prompt)
	}
	g.s.enginePromptTokens.Add(engine)
	g.model.promptTokens.Add(engine)
}

// completionTokens is usage.completion_tokens: the sum over choices of
// the tokens they report, which is every token generated except under
// lastDelta.
func (g *generation) completionTokens() int {
	n := 0
	for i := range g.choices {
		n += g.choices[i].emitted - g.choices[i].from
	}
	return n
}

// finish books the generation's end; it runs before the last bytes are
// written so that a client which has read the whole answer sees counters
// that include it.
func (g *generation) finish(o outcome) {
	s, m := g.s, g.model
	s.generationTokens.Add(int64(g.generated))
	m.generationTokens.Add(int64(g.generated))
	switch o {
	case outcomeAborted:
		s.aborted.Add(1)
	case outcomeError, outcomeCrash:
		s.errored.Add(1)
	}
	for i := range g.choices {
		c := &g.choices[i]
		// A choice with nothing to generate (embeddings) is done once its
		// prompt was processed.
		finished := g.prefilled && c.done()
		reason := finishStop
		switch {
		case finished && c.finish == "length":
			reason = finishLength
		case finished:
		case o == outcomeAborted:
			reason = finishAbort
		default:
			reason = finishError
		}
		m.finished[reason].Add(1)
		if g.prefilled {
			m.promptHist.observe(int64(c.prompt))
			m.generationHist.observe(int64(c.emitted))
		}
	}
	m.running.Add(-1)
}

// discard is the sink of non-streaming requests: it only lets time pass.
type discard struct{}

func (discard) first() error                 { return nil }
func (discard) emit(*choice, int, int) error { return nil }

// lastDelta is the sink of a batch chat request with "stream": true.
// vLLM's batch route forwards stream to each conversation's request, which
// makes the engine return deltas, and its collector keeps only the last
// output of each conversation instead of accumulating them: each choice
// reports only the tokens of its last step, usually the EOS alone (vLLM
// issue #50026).
type lastDelta struct{}

func (lastDelta) first() error { return nil }
func (lastDelta) emit(c *choice, from, _ int) error {
	c.from = from
	return nil
}
