package handler

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/meter"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// serveMetered is the life of a metered request: read and check the body,
// admit it against every window, forward it, count the response, settle.
func (h *Handler) serveMetered(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, c *caller, ep meter.Endpoint, start time.Time) error {
	body, aerr := readBody(r, h.MaxBodySize)
	if aerr != nil {
		h.countOutcome(outcomeBadRequest)
		aerr.write(w, r)
		return nil
	}
	var req meter.Request // on the stack, as is the reservation below
	if ep.Audio() {
		if err := req.ParseForm(ep, body, r.Header.Get("Content-Type")); err != nil {
			h.countOutcome(outcomeBadRequest)
			errBadRequest("invalid_form", err.Error()).write(w, r)
			return nil
		}
	} else if err := req.Parse(ep, body); err != nil {
		h.countOutcome(outcomeBadRequest)
		e := errBadRequest("invalid_json", err.Error())
		if fe := (*meter.FieldError)(nil); errors.As(err, &fe) {
			e.Param = fe.Param
		}
		e.write(w, r)
		return nil
	}
	defaulted := false
	if req.Model == "" {
		// vLLM serves a request that names no model with its first one: the
		// plan is checked, and the record kept, against that model, which
		// the body then names (see forward).
		if m := h.modelLens.defaultModel(r, next); m != "" {
			req.Model, defaulted = m, true
		}
	}
	c.model = req.Model
	if !gate.ModelAllowed(c.eff.Models, req.Model) {
		h.countOutcome(outcomeForbidden)
		errModelNotAllowed(req.Model).write(w, r)
		return nil
	}
	// A request that sets its output cap (or comes from a user without
	// token windows) is admitted on a bound of its prompt, read without
	// counting it, where the bound cannot change the outcome; the usage the
	// upstream reports is what it is charged, and a stream still running
	// after streamCountAfter has its prompt counted then, between two
	// chunks, for its checkpoints (see streamPrompt). Anything
	// else, or a bound the windows have no ample room for, is counted
	// first. (So the model-length cap below, for uncapped requests under
	// token limits, always has the count.)
	prompt, bounded, exact := int64(0), false, false
	if h.PromptCount != "tokenize" && (!req.Uncapped() || !hasTokenLimit(c.eff.Limits)) {
		prompt, bounded = req.PromptBound(body)
	}
	if !bounded {
		prompt, exact = h.countPrompt(r, next, &req)
	}
	// Without a client cap, reserve what the model can still produce, at
	// most reserve_output (but see below).
	defaultOutput, modelLeft := h.ReserveOutput, int64(0)
	if req.Uncapped() && !req.PromptOnly() && !ep.Audio() && hasTokenLimit(c.eff.Limits) {
		if n := h.modelLens.get(r, next, req.Model); n > 0 && req.Prompts > 1 {
			// prompt is the prompts' sum here, and one cap serves them all:
			// it must fit the longest one's context, with room for the
			// estimate's error (vLLM refuses the whole request otherwise).
			// It is always set (modelLeft stays 0).
			longest := req.LongestPrompt(h.app.Counter())
			if left := n - longest - estimateError(longest); left < defaultOutput {
				defaultOutput = max(left, 1)
			}
		} else if n > 0 {
			// Within the estimate's error of the context's end, a cap could
			// be more than the model has left after the real prompt (vLLM
			// refuses it): the reservation is what the model can produce,
			// and forward leaves the cap to vLLM.
			left := n - prompt
			if left < defaultOutput || left-estimateError(prompt) < defaultOutput && !exact && !req.PromptIsTokens() {
				modelLeft = max(left, 1)
				defaultOutput = modelLeft
			}
		}
	}
	output := req.MaxTokens
	if output == 0 && !req.Uncapped() {
		output = 1 // an explicit 0: reserve a token per choice, never raise it
	}
	engine := h.state.Engine
	var res quota.Reservation
	qr := quota.Request{
		User:          c.user.ID,
		Limits:        c.eff.Limits,
		Prompt:        prompt,
		Output:        output,
		Choices:       req.Choices(),
		DefaultOutput: defaultOutput,
		PromptOnly:    req.PromptOnly(),
		WantRate:      true,
		PromptBound:   bounded,
		Now:           start,
	}
	if c.key != nil {
		qr.Ref = &c.key.Quota
	}
	err := engine.AdmitTo(&res, qr)
	if errors.Is(err, quota.ErrNeedCount) {
		prompt, _ = h.countPrompt(r, next, &req)
		bounded = false
		qr.Prompt, qr.PromptBound = prompt, false
		err = engine.AdmitTo(&res, qr)
	}
	if err != nil {
		var d *quota.Denial
		if errors.As(err, &d) {
			h.countOutcome(outcomeForDenial(d))
			h.writeDenial(w, r, c, d)
			return nil
		}
		h.logger.Error("admitting a request", zap.Error(err))
		errInternal().write(w, r)
		return nil
	}
	x := exchange{h: h, w: w, r: r, c: c, model: req.Model, ep: ep, prompt: prompt, counted: !bounded, start: start, defaulted: defaulted}
	if ep.Audio() {
		x.textPrompt, x.audioExact = req.TextPromptTokens(h.app.Counter()), req.AudioExact
	}
	x.modelLeft = modelLeft
	x.forward(next, body, &req, &res)
	return nil
}

// forward rewrites the body as admitted, hands the request on, counts the
// response and settles. Its defers are few and its returns fewer, so the
// compiler open-codes them: serveMetered, with a return for every refusal,
// would have them run through the runtime's defer chain on every request.
func (x *exchange) forward(next caddyhttp.Handler, body []byte, req *meter.Request, res *quota.Reservation) {
	h, w, r := x.h, x.w, x.r
	settled := false
	defer func() {
		if !settled { // a refusal or a panic below must not pin the reservation
			res.Cancel()
		}
	}()
	opts := meter.RewriteOptions{
		InjectUsage: req.Stream && (!req.IncludeUsage || req.IncludeUsageImplied) && (x.ep == meter.EndpointChat || x.ep == meter.EndpointCompletions || x.ep.Audio()),
	}
	if x.defaulted {
		opts.Model = req.Model
	}
	// The reservation's cap is set upstream, unless it is what the model
	// can still produce anyway: vLLM then stops there by itself, counting
	// the prompt exactly, where a cap from the estimate (max_model_len −
	// estimated prompt) would be refused as too large whenever the real
	// prompt (template, BOS) is longer than the estimate. A budget's cap is
	// less than half of that (the engine leaves a request half of what
	// remains when it cannot have all it wants), which only an estimate
	// off by as much again would make too large.
	if hasTokenLimit(x.c.eff.Limits) && (req.Uncapped() || res.OutputCap < req.MaxTokens || req.OtherCap) && res.OutputCap > 0 &&
		(x.modelLeft == 0 || res.OutputCap < x.modelLeft) {
		opts.MaxTokens = res.OutputCap
	}
	body, err := meter.Rewrite(body, req, opts)
	if err != nil {
		h.countOutcome(outcomeBadRequest)
		errBadRequest("invalid_json", err.Error()).write(w, r)
		return
	}
	// The gate reads the answer's usage: a compressed one would go
	// uncounted (vLLM does not compress, a proxy in front of it may).
	delete(r.Header, "Accept-Encoding")
	if int64(len(body)) != r.ContentLength {
		r.ContentLength = int64(len(body))
		r.Header["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	rb := &bodyReader{}
	rb.Reset(body)
	if len(r.Trailer) == 0 {
		rb.whole = body
	}
	r.Body = rb

	mw := getWriter(w, h, x.ep, opts.InjectUsage && !req.IncludeUsage && h.hide, x.start)
	defer putWriter(mw)
	mw.rate = res.Rate
	mw.slot = res.Slot()
	if x.ep == meter.EndpointCompletions && req.Prompts > 1 {
		mw.perPrompt = req.N // continuous usage reports each choice's own prompt
	}
	x.mw = mw
	if req.Stream {
		// A stream may run for minutes: each commit charges what it has
		// produced so far (the prompt and the text counted) and writes it
		// as the request's open record, so that a crash does not lose it.
		if x.counted {
			mw.promptN = x.prompt
		} else {
			mw.promptReq = new(meter.Request) // one a stream; the writer stays small
			*mw.promptReq = *req
		}
		mw.st = h.state.Track(res.Track(), x.record())
		defer h.state.Untrack(mw.st)
	}
	gate.RequestStarted()
	defer func() {
		gate.RequestDone()
		// reverse_proxy panics with http.ErrAbortHandler to cut the client's
		// connection when the upstream cut its own: charge what was relayed,
		// then let the panic do its job.
		if p := recover(); p != nil {
			x.settle(req, res, errors.New("response aborted"))
			settled = true
			x.logCut()
			panic(p)
		}
	}()
	x.settle(req, res, next.ServeHTTP(mw, r))
	settled = true
}

// exchange is one metered request on its way back.
type exchange struct {
	h     *Handler
	w     http.ResponseWriter
	r     *http.Request
	c     *caller
	model string
	ep    meter.Endpoint
	mw    *meteredWriter
	// prompt is the prompt's count, or, until promptCount counts it, the
	// bound the request was admitted on (counted false).
	prompt  int64
	counted bool
	// modelLeft is the output the model can still produce after the
	// prompt (as counted), when it set the reservation of a request without
	// a cap; else 0.
	modelLeft int64
	start     time.Time
	// textPrompt is the count of a speech-to-text request's text prompt;
	// audioExact reports that its audio's duration is known exactly.
	textPrompt int64
	audioExact bool
	// defaulted: the request named no model, and model is the upstream's
	// default.
	defaulted bool
}

// settle charges what the response shows to the reservation, keeps the
// record and answers an upstream failure that left the client without a
// response.
func (x *exchange) settle(req *meter.Request, res *quota.Reservation, nextErr error) {
	h, mw := x.h, x.mw
	mw.finish(x.r.ProtoMajor == 1 && h.state.FlushInterval() > 0 && gate.InFlight() == 1) // alone: see finish
	if mw.slotFreed {
		res.SlotFreed()
	}
	rec := x.record()
	rec.Status = mw.status
	usage, reported := mw.usage()
	upErr := mw.upstreamError()
	aborted := x.r.Context().Err() != nil
	accepted := mw.status >= 200 && mw.status < 300
	// reverse_proxy answers 499 when the client went away before the
	// upstream's answer.
	clientGone := aborted && (accepted || mw.status == 0 || mw.status == statusClientClosed)
	switch {
	case reported:
		rec.PromptTokens, rec.CompletionTokens, rec.CachedTokens = usage.PromptTokens, usage.CompletionTokens, usage.CachedTokens
		// A stream cut after continuous usage: its last running counts,
		// not vLLM's final word.
		rec.Estimated = mw.stream != nil && mw.status < 300 && mw.stream.UsageRunning()
	case mw.audio != nil && upErr == nil && accepted:
		rec.PromptTokens, rec.CompletionTokens = x.transcript()
		rec.Estimated = true
	case mw.generated():
		// With echo, the text relayed starts with the prompt repeated.
		rec.PromptTokens, rec.CompletionTokens, rec.Estimated = mw.prompt(x.promptCount(req)), max(mw.estimateCompletion()-req.EchoEstimate(h.app.Counter()), 0), true
	case upErr == nil && (accepted || clientGone),
		mw.status == http.StatusInternalServerError && mw.stream == nil && upErr != nil:
		// Accepted but cut before the first token (vLLM answers 200 before
		// the engine starts, and a cut upstream then aborts the response),
		// the client gone before the answer (a non-streaming request that
		// vLLM was generating), or vLLM's 500 to a non-streaming request
		// (generation failed, finish_reason "error": VLLM.md §10.1 rule 5;
		// it cannot say what it generated): vLLM processed the prompt.
		rec.PromptTokens, rec.Estimated = mw.prompt(x.promptCount(req)), true
	}
	elapsed := time.Since(x.start)
	if rec.PromptTokens == 0 && rec.CompletionTokens == 0 {
		res.Cancel()
	} else {
		res.SettleAt(rec.PromptTokens, rec.CompletionTokens, x.start.Add(elapsed))
	}
	switch {
	case !mw.wroteHeader && nextErr != nil:
		h.logger.Warn("upstream failed", zap.Error(nextErr))
		e := upstreamFailure(nextErr)
		writeRate(x.w.Header(), mw.rate, x.start.Add(elapsed))
		e.write(x.w, x.r)
		rec.Status = e.Status
	case !mw.wroteHeader && !aborted:
		writeRate(x.w.Header(), mw.rate, x.start.Add(elapsed))
		h.noUpstream(x.w, x.r)
		rec.Status = http.StatusBadGateway
	}
	rec.Duration = elapsed
	rec.TTFT = mw.ttft
	x.c.prompt, x.c.completion, x.c.estimated, x.c.settled = rec.PromptTokens, rec.CompletionTokens, rec.Estimated, true
	// The prompt estimate's error (a metric) is observed on every request
	// the gate counted, and on one in estimateEvery of the others.
	if !x.counted && reported && h.uncounted.Add(1)%estimateEvery == 1 {
		x.promptCount(req)
	}
	estimate := int64(-1) // no estimate to compare with
	if x.counted {
		estimate = x.prompt
	}
	// An error body with a 4xx is vLLM refusing the request: the client's.
	h.observe(&rec, upErr != nil && mw.status < 400 || nextErr != nil || mw.status >= 500, aborted, reported, estimate)
	var err error
	if mw.st != nil {
		err = h.state.Finish(mw.st, rec) // replaces its open record
	} else {
		err = h.state.Record(rec)
	}
	if err != nil {
		h.logger.Error("committing usage", zap.Error(err))
	}
}

// logCut says what a response cut short was charged. The panic that cuts
// the client's connection also skips the log_append handlers on its way
// out (they add their fields after the handlers they wrap return), so the
// access log line lacks the {http.llm_gate.*} fields: this line has them.
func (x *exchange) logCut() {
	lvl, msg := zapcore.WarnLevel, "upstream cut the response: charged what was relayed"
	if x.r.Context().Err() != nil {
		lvl, msg = zapcore.InfoLevel, "client left before the response ended: charged what was relayed"
	}
	if ce := x.h.logger.Check(lvl, msg); ce != nil {
		ce.Write(zap.String("user", x.c.user.ID), zap.String("key_id", x.c.keyID()), zap.String("model", x.model),
			zap.Int64("prompt_tokens", x.c.prompt), zap.Int64("completion_tokens", x.c.completion), zap.Bool("estimated", x.c.estimated))
	}
}

// estimateEvery: of the requests admitted without counting their prompt,
// the first and then one in estimateEvery are counted after their answer, so
// that the estimate's error stays measured.
const estimateEvery = 64

// promptCount returns the prompt's count, counting it (req) now if the
// request was admitted on a bound and the upstream's answer did not report
// it. (req is not kept in x: x's other fields reach the heap, and req, on
// serveMetered's stack, would go with them.)
func (x *exchange) promptCount(req *meter.Request) int64 {
	switch {
	case x.counted:
	case x.mw != nil && x.mw.st != nil && x.mw.promptReq == nil: // a stream's, counted
		x.prompt, x.counted = x.mw.promptN, true
	default:
		x.prompt, x.counted = req.EstimatePrompt(x.h.app.Counter()), true
	}
	return x.prompt
}

// record is the request's record before its outcome: who, what, when.
func (x *exchange) record() store.Record {
	return store.Record{
		Time: x.start, User: x.c.user.ID, KeyID: x.c.keyID(), Model: x.model,
		Endpoint: x.ep.String(), Plan: x.c.eff.Plan,
	}
}

// statusClientClosed is the status reverse_proxy records for a client that
// went away before the answer (nginx's 499).
const statusClientClosed = 499

// bodyReader is the request body handed on to the upstream: the bytes the
// gate read (and may have rewritten), in one allocation. whole is those
// bytes when the llm_gate transport may send them with the request's
// headers, each attempt from the start: when the client declared no
// trailers (reverse_proxy copies them when the body reaches its end).
type bodyReader struct {
	bytes.Reader
	whole []byte
}

func (*bodyReader) Close() error { return nil }

// readBody reads the request body once, bounded. A body that announces its
// length is read into a buffer of exactly that size, in as few reads as the
// connection allows (Caddy moves the read deadline on each one): the server
// (HTTP/1.1, /2 and /3 alike) ends the body at its Content-Length.
func readBody(r *http.Request, limit int64) ([]byte, *apiError) {
	if r.ContentLength > limit {
		return nil, errBodyTooLarge(limit)
	}
	if r.ContentLength >= 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil { // cut short, or a read error
			return nil, errBadRequest("invalid_json", "could not read the request body")
		}
		return buf, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, errBadRequest("invalid_json", "could not read the request body")
	}
	if n > limit {
		return nil, errBodyTooLarge(limit)
	}
	return buf.Bytes(), nil
}

func hasTokenLimit(l quota.Limits) bool {
	for _, v := range l.Tokens {
		if v > 0 {
			return true
		}
	}
	return false
}

// Canonical header names, spelled out so setting them costs no
// canonicalization.
var rateHeaderNames = [2][3]string{
	{"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"},
	{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"},
}

// writeRate sets the x-ratelimit-* headers of the user's tightest windows.
// Every metered response carries them, so the values (limit, remaining and
// reset of each window present, in order) are cut from one string and
// share one slice. The resets count from now; a window that never resets
// (a total budget) has no reset header, where "0s" would promise room now.
func writeRate(hdr http.Header, rs quota.RateStatus, now time.Time) {
	var wins [2]*quota.WindowStatus
	if rs.HasTokens {
		wins[0] = &rs.Tokens
	}
	if rs.HasRequests {
		wins[1] = &rs.Requests
	}
	var buf [128]byte // two windows' int64s and resets in decimal
	var names [6]string
	b, ends, n := buf[:0], [6]int{}, 0
	for i, s := range wins {
		if s == nil {
			continue
		}
		b = strconv.AppendInt(b, s.Limit, 10)
		ends[n], names[n] = len(b), rateHeaderNames[i][0]
		b = strconv.AppendInt(b, max(s.Remaining, 0), 10)
		ends[n+1], names[n+1] = len(b), rateHeaderNames[i][1]
		n += 2
		if !s.ResetsAt.IsZero() {
			b = appendSeconds(b, s.ResetsAt.Sub(now).Round(time.Second))
			ends[n], names[n] = len(b), rateHeaderNames[i][2]
			n++
		}
	}
	if n == 0 {
		return
	}
	all := string(b)
	vals := make([]string, n)
	for k, start := 0, 0; k < n; k++ {
		vals[k], start = all[start:ends[k]], ends[k]
		hdr[names[k]] = vals[k : k+1 : k+1]
	}
}

// appendSeconds appends d, a whole number of seconds, as d.String() writes
// it ("0s", "59s", "1m0s", "23h59m59s"); a negative d is written as 0s.
func appendSeconds(b []byte, d time.Duration) []byte {
	sec := max(int64(d/time.Second), 0)
	if h := sec / 3600; h > 0 {
		b = strconv.AppendInt(b, h, 10)
		b = append(b, 'h')
	}
	if sec >= 60 {
		b = strconv.AppendInt(b, sec/60%60, 10)
		b = append(b, 'm')
	}
	b = strconv.AppendInt(b, sec%60, 10)
	return append(b, 's')
}

func (h *Handler) writeDenial(w http.ResponseWriter, r *http.Request, c *caller, d *quota.Denial) {
	writeRate(w.Header(), h.state.Engine.Tightest(c.user.ID, c.eff.Limits), time.Now())
	// RetryAfter 0: waiting will not help (a total budget, a request larger
	// than the limit), so no retry-after.
	if d.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.RetryAfter.Seconds())), 10))
	}
	e := &apiError{Status: http.StatusTooManyRequests, Message: d.Error(), Code: "rate_limit_exceeded"}
	switch d.Kind {
	case quota.Budget:
		e.Type, e.Code = "insufficient_quota", "insufficient_quota"
	case quota.TokenRate:
		e.Type = "tokens"
	default:
		e.Type = "requests"
	}
	if d.Kind == quota.Budget || d.TooLarge() {
		// Waiting will not help (or not soon): SDKs that retry 429s by
		// themselves read this and give up at once.
		w.Header().Set("X-Should-Retry", "false")
	}
	e.write(w, r)
}

// meteredWriter relays the response to the client while the meter reads
// the usage out of it. It embeds Caddy's ResponseWriterWrapper so Flush,
// Hijack and http.ResponseController reach the real writer.
type meteredWriter struct {
	*caddyhttp.ResponseWriterWrapper
	h           *Handler
	ep          meter.Endpoint
	hideUsage   bool
	perPrompt   int // choices per prompt of a completions request with several prompts, else 0
	slot        quota.Slot
	slotFreed   bool
	start       time.Time
	status      int
	wroteHeader bool
	rate        quota.RateStatus
	stream      *meter.StreamMeter
	spare       *meter.StreamMeter // kept across requests by the pool
	spareJSON   *meter.JSONMeter
	json        *meter.JSONMeter
	jsonLen     int  // a JSON body's announced length, unencoded; 0 if none
	wroteBody   bool // a body write went through
	ttft        time.Duration
	st          *gate.Stream  // a stream's progress, or nil
	audio       *bytes.Buffer // a speech-to-text answer's body, up to maxTranscript
	audioMore   int64         // its bytes beyond maxTranscript
	promptN     int64         // the gate's count of the prompt, for st
	// promptReq is the request of a stream admitted on a bound of its
	// prompt, until streamPrompt counts it.
	promptReq *meter.Request
	relayed   bool // a stream's write went through
	emit      func([]byte) error
	wrapper   caddyhttp.ResponseWriterWrapper
}

var writerPool = sync.Pool{New: func() any {
	mw := &meteredWriter{}
	mw.emit = mw.writeThrough
	return mw
}}

func getWriter(w http.ResponseWriter, h *Handler, ep meter.Endpoint, hide bool, start time.Time) *meteredWriter {
	mw := writerPool.Get().(*meteredWriter)
	mw.wrapper.ResponseWriter = w
	mw.ResponseWriterWrapper = &mw.wrapper
	mw.h, mw.ep, mw.hideUsage, mw.start = h, ep, hide, start
	return mw
}

func putWriter(mw *meteredWriter) {
	spare := mw.stream
	if spare == nil {
		spare = mw.spare
	}
	spareJSON := mw.json
	if spareJSON == nil {
		spareJSON = mw.spareJSON
	}
	emit := mw.emit
	*mw = meteredWriter{spare: spare, spareJSON: spareJSON, emit: emit}
	writerPool.Put(mw)
}

func (mw *meteredWriter) writeThrough(p []byte) error {
	_, err := mw.ResponseWriterWrapper.ResponseWriter.Write(p)
	return err
}

// WriteHeader decides, from the response's content type, how the body is
// read: SSE, JSON, or not at all.
func (mw *meteredWriter) WriteHeader(status int) {
	if mw.wroteHeader {
		return
	}
	if status < 200 { // informational: pass through, the real header follows
		mw.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	mw.wroteHeader, mw.status = true, status
	hdr := mw.Header()
	var ct string
	if v := hdr["Content-Type"]; len(v) > 0 {
		ct = v[0]
	}
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		if mw.spare == nil {
			mw.stream = meter.NewStreamMeter(mw.ep, mw.hideUsage, mw.h.app.Counter())
		} else {
			mw.stream, mw.spare = mw.spare, nil
			mw.stream.Reset(mw.ep, mw.hideUsage, mw.h.app.Counter())
		}
		mw.stream.SetChoicesPerPrompt(mw.perPrompt)
		if mw.hideUsage {
			delete(hdr, "Content-Length")
		}
	case strings.Contains(ct, "json"):
		if mw.spareJSON == nil {
			mw.json = meter.NewJSONMeter()
		} else {
			mw.json, mw.spareJSON = mw.spareJSON, nil
			mw.json.Reset()
		}
		if cl := hdr["Content-Length"]; len(cl) == 1 && len(hdr["Content-Encoding"]) == 0 {
			if n, err := strconv.Atoi(cl[0]); err == nil && n > 0 {
				mw.jsonLen = n
			}
		}
	}
	if mw.ep.Audio() && mw.stream == nil && status < 300 {
		// vLLM's answer to a speech-to-text request reports no tokens
		// (JSON, text, SRT or VTT): its transcript is kept to count them.
		mw.audio = new(bytes.Buffer)
	}
	writeRate(hdr, mw.rate, mw.start.Add(time.Since(mw.start))) // the monotonic clock: cheaper than a reading of both
	mw.ResponseWriterWrapper.WriteHeader(status)
}

func (mw *meteredWriter) Write(p []byte) (int, error) {
	if !mw.wroteHeader {
		mw.WriteHeader(http.StatusOK)
	}
	if mw.stream != nil && mw.status < 300 {
		if !mw.slotFreed && mw.endsStream(p) {
			mw.freeSlot() // before the end reaches the client: see quota.Slot
		}
		err := mw.stream.Write(p, mw.emit)
		if mw.ttft == 0 && mw.stream.FirstToken() {
			mw.ttft = time.Since(mw.start)
		}
		if mw.st != nil {
			if prompt, ok := mw.streamPrompt(); ok {
				mw.st.Report(mw.status, prompt, prompt+mw.stream.EstimateSoFar())
			}
		}
		mw.relayed = true
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if mw.ttft == 0 {
		mw.ttft = time.Since(mw.start)
	}
	if mw.json != nil {
		if !mw.wroteBody && len(p) == mw.jsonLen { // the whole body in one write
			mw.json.WriteWhole(p)
		} else {
			mw.json.Write(p)
		}
	}
	if mw.audio != nil {
		mw.keepTranscript(p)
	}
	mw.wroteBody = true
	return mw.ResponseWriterWrapper.ResponseWriter.Write(p)
}

// streamPrompt returns the prompt a stream's progress counts: the one the
// stream reported (a Messages stream's message_start), else the gate's
// count. A stream admitted on a bound of its prompt reports no progress
// for its first streamCountAfter, then has its prompt counted at its next
// write: most streams that short end with vLLM's usage and are never
// counted, and a longer one is counted between two chunks, never before
// the first token (the server flushes each write as it returns). Progress
// only matters to the commits' checkpoints, at most one a second: those of
// the stream's first moments charge nothing, as for a stream that started
// after them.
func (mw *meteredWriter) streamPrompt() (int64, bool) {
	if n, ok := mw.stream.PromptReported(); ok {
		return n, true
	}
	if mw.promptReq != nil {
		if !mw.relayed || time.Since(mw.start) < streamCountAfter {
			return 0, false
		}
		mw.promptN, mw.promptReq = mw.promptReq.EstimatePrompt(mw.h.app.Counter()), nil
	}
	return mw.promptN, true
}

// streamCountAfter is how long a stream admitted on a bound of its prompt
// runs before the gate counts its prompt (streamPrompt).
const streamCountAfter = 250 * time.Millisecond

// maxTranscript bounds the part of a speech-to-text answer the gate keeps
// to count; beyond it, four bytes count a token.
const maxTranscript = 4 << 20

func (mw *meteredWriter) keepTranscript(p []byte) {
	room := maxTranscript - mw.audio.Len()
	if len(p) > room {
		mw.audioMore += int64(len(p) - room)
		p = p[:room]
	}
	mw.audio.Write(p)
}

// transcript counts a speech-to-text answer: the tokens of its text, and
// its prompt: the gate's count when it read the duration from a WAV
// header, else from the audio seconds vLLM reports, if it does.
func (x *exchange) transcript() (prompt, completion int64) {
	mw := x.mw
	completion, seconds, ok := meter.Transcript(mw.audio.Bytes(), x.h.app.Counter())
	completion += mw.audioMore / 4
	prompt = x.prompt
	if ok && !x.audioExact {
		// Whole seconds, rounded up: up to 100 tokens over, where an
		// estimate from the size of compressed audio may be far off.
		prompt = meter.AudioPromptTokens(seconds, x.textPrompt)
	}
	return prompt, completion
}

// ReadFrom must go through Write: the embedded one copies straight to the
// underlying writer and the meter would see nothing.
func (mw *meteredWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writeOnly{mw}, r)
}

type writeOnly struct{ io.Writer }

// finish forwards what the stream parser still holds and flushes it. With
// early set, a whole JSON body of announced length is flushed as well: it
// would otherwise wait in the server's buffer until the handler returns, so
// the client would wait for the gate's bookkeeping (settling, metrics,
// queueing the record) as well as for the upstream. Flushing it now is the
// one write the server would have made at the end. The caller sets early
// only on HTTP/1.x (HTTP/2 and /3 end the stream when the handler returns,
// so a flush adds a frame and saves nothing), only when records are
// committed in the background (with flush_interval 0 a response ends only
// once its record is in the file), and only for the one metered request in
// flight: the flush costs a response controller and the server's write
// deadline updates, about 3 µs of CPU per request under load, which a busy
// server spends better on the requests waiting than on a few µs of one
// client's latency. A body without a length (chunked, or compressed by an
// encode handler) has its end written only at the return too, so it is left
// alone.
func (mw *meteredWriter) finish(early bool) {
	switch {
	case mw.stream != nil && mw.status < 300:
		if err := mw.stream.Finish(mw.emit); err == nil {
			_ = http.NewResponseController(mw.ResponseWriterWrapper.ResponseWriter).Flush()
		}
	case early && mw.json != nil && mw.jsonLen > 0:
		mw.freeSlot() // the answer is complete and about to leave: see quota.Slot
		_ = http.NewResponseController(mw.ResponseWriterWrapper.ResponseWriter).Flush()
	}
}

// freeSlot gives the request's place in max_parallel back, once.
func (mw *meteredWriter) freeSlot() {
	if !mw.slotFreed {
		mw.slotFreed = true
		mw.slot.Free()
	}
}

// Markers of a stream's last event, which the client may answer with its
// next request as soon as it reads it. Each is looked for by its rarest
// bytes, from tail on: every write of a stream is searched, and a chunk's
// JSON has a 'd' or a quote in every other key, where an uppercase D or a
// '.' is rare.
var (
	markDone = marker{[]byte("data: [DONE]"), len("data: [")}
	markStop = marker{[]byte("event: message_stop"), len("event: message")}
	// A Responses event type starts with responseType; those that end the
	// stream go on with one of responseEnds.
	responseType = []byte(`"response.`)
	responseEnds = [][]byte{[]byte(`completed"`), []byte(`incomplete"`), []byte(`failed"`)}
)

// marker is a line start that ends a stream; mark[tail:] is what is
// searched for.
type marker struct {
	mark []byte
	tail int
}

// endsStream reports whether p holds the stream's last event. A marker cut
// across two writes is missed, and the place is then given back when the
// request settles, as for any other end.
//
// data: [DONE] counts only at the start of a line: the client controls text
// inside the chunks (echo, or the prompt repeated), and must not free its
// place with it while the stream goes on. JSON strings hold no raw line
// breaks, so a line start is the SSE's own; so is a Messages stream's
// "event: message_stop" (the quoted type alone could be a tool's name,
// which the client chooses). The Responses markers are quoted event types
// ("response.completed", "response.incomplete", "response.failed") no
// client text can be.
func (mw *meteredWriter) endsStream(p []byte) bool {
	switch mw.ep {
	case meter.EndpointResponses:
		return endsResponses(p)
	case meter.EndpointMessages:
		if mw.lineStarts(p, markStop) {
			return true
		}
	}
	return mw.lineStarts(p, markDone)
}

// endsResponses reports whether p holds one of the quoted event types that
// end a Responses stream.
func endsResponses(p []byte) bool {
	dot := len(responseType) - 1 // where the '.' searched for stands in it
	for i := dot; i < len(p); i++ {
		j := bytes.IndexByte(p[i:], '.')
		if j < 0 {
			return false
		}
		i += j
		if !bytes.Equal(p[i-dot:i+1], responseType) {
			continue
		}
		for _, end := range responseEnds {
			if bytes.HasPrefix(p[i+1:], end) {
				return true
			}
		}
	}
	return false
}

// lineStarts reports whether a line of p starts with m's mark.
func (mw *meteredWriter) lineStarts(p []byte, m marker) bool {
	head, tail := m.mark[:m.tail], m.mark[m.tail:]
	for i := m.tail; i <= len(p); i++ {
		j := bytes.Index(p[i:], tail)
		if j < 0 {
			return false
		}
		i += j
		start := i - m.tail
		if !bytes.Equal(p[start:i], head) {
			continue
		}
		if start == 0 && mw.stream.AtLineStart() || start > 0 && (p[start-1] == '\n' || p[start-1] == '\r') {
			return true
		}
	}
	return false
}

func (mw *meteredWriter) usage() (meter.Usage, bool) {
	switch {
	case mw.stream != nil && mw.status < 300:
		return mw.stream.Usage()
	case mw.json != nil:
		return mw.json.Usage()
	}
	return meter.Usage{}, false
}

func (mw *meteredWriter) upstreamError() *meter.UpstreamError {
	switch {
	case mw.stream != nil && mw.status < 300:
		return mw.stream.Err()
	case mw.json != nil:
		return mw.json.Err()
	}
	return nil
}

// generated reports whether any generated token reached the client.
func (mw *meteredWriter) generated() bool {
	return mw.stream != nil && mw.status < 300 && mw.stream.FirstToken()
}

// prompt returns the prompt's count a stream gave before it was cut (a
// Messages stream's message_start), else the gate's own count.
func (mw *meteredWriter) prompt(counted int64) int64 {
	if mw.stream != nil && mw.status < 300 {
		if n, ok := mw.stream.PromptReported(); ok {
			return n
		}
	}
	return counted
}

func (mw *meteredWriter) estimateCompletion() int64 {
	return mw.stream.EstimateCompletion()
}
