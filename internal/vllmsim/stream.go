package vllmsim

import (
	"errors"
	"net/http"
	"strconv"
)

// streamWriter writes SSE events, one HTTP write and one flush per event as
// each Python yield is in vLLM. buf is reused for every event of the stream,
// so steady-state streaming does not allocate.
type streamWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
}

// startStream sends the status and headers at once: vLLM answers 200
// before the engine produced anything.
func startStream(w http.ResponseWriter) (*streamWriter, error) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	sw := &streamWriter{w: w, rc: http.NewResponseController(w), buf: make([]byte, 0, 1024)}
	return sw, sw.flush()
}

func (sw *streamWriter) flush() error {
	if err := sw.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// send writes one event and flushes it; b usually aliases sw.buf.
func (sw *streamWriter) send(b []byte) error {
	sw.buf = b[:0]
	if _, err := sw.w.Write(b); err != nil {
		return err
	}
	return sw.flush()
}

const doneEvent = "data: [DONE]\n\n"

// usage shapes: continuous usage on a chunk, the final usage chunk (nulls
// dropped), and the non-streaming body (every field, nulls included).
const (
	usageChunk = iota
	usageFinal
	usageBody
)

// appendUsage appends a UsageInfo object in pydantic's field order:
// prompt_tokens, total_tokens, completion_tokens, then the details.
func (s *Server) appendUsage(b []byte, prompt, completion, shape int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	switch shape {
	case usageFinal:
		if s.cfg.EnablePromptTokensDetails {
			b = append(b, `,"prompt_tokens_details":{"cached_tokens":0}`...)
		}
	case usageBody:
		if s.cfg.EnablePromptTokensDetails {
			b = append(b, `,"prompt_tokens_details":{"cached_tokens":0}`...)
		} else {
			b = append(b, `,"prompt_tokens_details":null`...)
		}
		if !s.cfg.LegacyFields {
			b = append(b, `,"completion_tokens_details":null`...)
		}
	}
	return append(b, '}')
}

// usageFlags decides the final usage chunk and continuous usage of a
// stream (vLLM's should_include_usage).
func (s *Server) usageFlags(so *StreamOptions) (include, continuous bool) {
	if s.cfg.ForceIncludeUsage && !s.cfg.LegacyForceIncludeUsage {
		return true, true // PR #37923: the flag forces both
	}
	if so != nil {
		include = !s.cfg.LegacyIncludeUsageDefault
		if so.IncludeUsage != nil {
			include = *so.IncludeUsage
		}
		continuous = so.ContinuousUsageStats != nil && *so.ContinuousUsageStats
	}
	if s.cfg.ForceIncludeUsage {
		include = true
	}
	return include, include && continuous
}

// appendChunkPrefix appends the part shared by every chunk of a stream:
// `data: {"id":…,"object":…,"created":…,"model":…,"choices":[`.
func appendChunkPrefix(b []byte, id, object string, created int64, model string) []byte {
	b = append(b, `data: {"id":`...)
	b = appendString(b, id)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendString(b, model)
	return append(b, `,"choices":[`...)
}

// endStream finishes a chat, completions or speech-to-text stream after
// the generation ended with o: nothing more for an abort, a cut connection
// for a crash, an error event for a failure, else the optional usage chunk,
// its usage in the given shape (usageFinal; a transcription's has no
// details: usageChunk). [DONE] follows the last two.
func (s *Server) endStream(sw *streamWriter, g *generation, o outcome, prefix []byte, include bool, shape int) {
	g.finish(o)
	switch o {
	case outcomeAborted:
		return
	case outcomeCrash:
		panic(http.ErrAbortHandler)
	case outcomeError:
		if sw.send(s.appendStreamError(sw.buf[:0], generationError)) != nil {
			return
		}
	default:
		if include {
			b := append(sw.buf[:0], prefix...)
			b = append(b, `],"usage":`...)
			b = s.appendUsage(b, g.prompt, g.completionTokens(), shape)
			b = append(b, "}\n\n"...)
			if sw.send(b) != nil {
				return
			}
		}
	}
	_ = sw.send(append(sw.buf[:0], doneEvent...))
}

// endJSON finishes a non-streaming request: the body is written by write
// unless the generation was aborted, crashed or failed.
func (s *Server) endJSON(w http.ResponseWriter, g *generation, o outcome, write func()) {
	g.finish(o)
	switch o {
	case outcomeAborted:
		return
	case outcomeCrash:
		panic(http.ErrAbortHandler)
	case outcomeError:
		s.writeError(w, generationError)
		return
	}
	write()
}

// appendJSONText appends a JSON string holding prefix followed by the text
// of tokens [c.from, c.emitted) of c; prefix is escaped, the vocabulary
// needs no escaping.
func appendJSONText(b []byte, prefix string, c *choice) []byte {
	b = appendString(b, prefix)
	b = b[:len(b)-1]
	b = c.appendText(b, c.from, c.emitted)
	return append(b, '"')
}
