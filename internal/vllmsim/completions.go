package vllmsim

import (
	"net/http"
	"strconv"
	"time"
)

// completionsDefaultMaxTokens is CompletionRequest.max_tokens' default.
const completionsDefaultMaxTokens = 16

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	so, aerr := s.checkStreamOptions(req)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	prompts, err := parsePrompts(req.Prompt)
	if err != nil {
		s.writeError(w, s.validationError(err.Error()))
		return
	}
	m, aerr := s.lookupModel(req.Model)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	n, aerr := checkN(req.N)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	choices := make([]choice, 0, len(prompts)*n)
	total := 0
	for pi, p := range prompts {
		count := p.count(s.tok)
		total += count
		def := completionsDefaultMaxTokens
		if req.MaxTokensNull {
			def = 0 // None: the rest of the context
		}
		length, finish, aerr := s.outputBudget(count, req.MaxTokens, def, ov)
		if aerr != nil {
			s.writeError(w, *aerr)
			return
		}
		var echo string
		if req.Echo {
			echo = p.text
			if p.isIDs {
				var ok bool
				if echo, ok = decodeTokens(p.ids); !ok {
					s.writeError(w, badRequest("prompt contains a token id outside the vocabulary", "prompt"))
					return
				}
			}
		}
		for i := 0; i < n; i++ {
			c := s.newChoice(pi*n+i, count, length, finish)
			c.echo = echo
			choices = append(choices, c)
		}
	}
	id := s.requestID("cmpl-", r)
	created := time.Now().Unix()
	g := s.newGeneration(m, choices, total, ov)

	if !req.stream() {
		o := g.run(r.Context(), discard{})
		s.endJSON(w, g, o, func() { s.writeCompletionJSON(w, g, id, created, m.name) })
		return
	}
	include, continuous := s.usageFlags(so)
	cs := &completionStream{
		s: s, continuous: continuous,
		prefix: appendChunkPrefix(nil, id, "text_completion", created, m.name),
	}
	sw, err := startStream(w)
	if err != nil {
		g.finish(outcomeAborted)
		return
	}
	cs.sw = sw
	s.endStream(sw, g, g.run(r.Context(), cs), cs.prefix, include, usageFinal)
}

// completionStream writes text_completion chunks (VLLM.md §3.8): no role
// chunk, and by default every null field present, "usage":null included.
type completionStream struct {
	s          *Server
	sw         *streamWriter
	prefix     []byte
	continuous bool
}

func (cs *completionStream) first() error { return nil }

func (cs *completionStream) emit(c *choice, from, to int) error {
	cfg := &cs.s.cfg
	b := append(cs.sw.buf[:0], cs.prefix...)
	b = append(b, `{"index":`...)
	b = appendInt(b, c.index)
	b = append(b, `,"text":"`...)
	if from == 0 {
		b = appendEscaped(b, c.echo)
	}
	b = c.appendText(b, from, to)
	b = append(b, '"')
	if cfg.CompletionsOmitNulls {
		if c.done() {
			b = append(b, `,"finish_reason":"`...)
			b = append(b, c.finish...)
			b = append(b, '"')
		}
		b = append(b, "}]"...)
		if cs.continuous {
			b = append(b, `,"usage":`...)
			b = cs.s.appendUsage(b, c.prompt, c.emitted, usageChunk)
		}
	} else {
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		if c.done() {
			b = append(b, '"')
			b = append(b, c.finish...)
			b = append(b, '"')
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"stop_reason":null`...)
		if !cfg.LegacyFields {
			b = append(b, `,"prompt_token_ids":null,"token_ids":null`...)
		}
		b = append(b, `}],"usage":`...)
		if cs.continuous {
			b = cs.s.appendUsage(b, c.prompt, c.emitted, usageChunk)
		} else {
			b = append(b, "null"...)
		}
	}
	b = append(b, "}\n\n"...)
	return cs.sw.send(b)
}

// writeCompletionJSON writes a text_completion body (VLLM.md §4.2).
func (s *Server) writeCompletionJSON(w http.ResponseWriter, g *generation, id string, created int64, model string) {
	b := make([]byte, 0, 512+len(g.choices)*(8*g.choices[0].length+256))
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"object":"text_completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendString(b, model)
	b = append(b, `,"choices":[`...)
	for i := range g.choices {
		c := &g.choices[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = appendInt(b, c.index)
		b = append(b, `,"text":`...)
		b = appendJSONText(b, c.echo, c)
		b = append(b, `,"logprobs":null,"finish_reason":"`...)
		b = append(b, c.finish...)
		b = append(b, `","stop_reason":null`...)
		if !s.cfg.LegacyFields {
			b = append(b, `,"token_ids":null`...)
		}
		b = append(b, `,"prompt_logprobs":null`...)
		if !s.cfg.LegacyFields {
			b = append(b, `,"prompt_token_ids":null`...)
		}
		b = append(b, '}')
	}
	b = append(b, `],"service_tier":null,"system_fingerprint":null,"usage":`...)
	b = s.appendUsage(b, g.prompt, g.completionTokens(), usageBody)
	b = append(b, `,"kv_transfer_params":null}`...)
	writeJSON(w, http.StatusOK, b)
}
