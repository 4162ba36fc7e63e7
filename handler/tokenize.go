package handler

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/meter"
)

// countPrompt counts the prompt the way the site asks: with the local
// tokenizer, or exactly through the upstream's /tokenize (sent through the
// same next handler, so it reaches the same upstream), falling back to the
// estimate when the upstream cannot say; exact reports the former.
func (h *Handler) countPrompt(r *http.Request, next caddyhttp.Handler, req *meter.Request) (n int64, exact bool) {
	if h.PromptCount == "tokenize" {
		if n, ok := h.tokenize(r, next, req); ok {
			return n, true
		}
	}
	return req.EstimatePrompt(h.app.Counter()), false
}

// estimateError is the room left for an estimated prompt of n tokens
// running short of the real one (a chat template's tokens, a tokenizer
// that splits differently): a cap that must fit the context leaves it.
func estimateError(n int64) int64 {
	return n/16 + 16
}

func (h *Handler) tokenize(r *http.Request, next caddyhttp.Handler, req *meter.Request) (int64, bool) {
	body, ok := req.TokenizeBody()
	if !ok {
		return 0, false
	}
	sub := r.Clone(r.Context())
	sub.URL.Path, sub.URL.RawPath, sub.URL.RawQuery = "/tokenize", "", ""
	sub.RequestURI = "/tokenize"
	sub.Body = io.NopCloser(bytes.NewReader(body))
	sub.ContentLength = int64(len(body))
	sub.Header.Set("Content-Length", strconv.Itoa(len(body)))
	sub.Header.Set("Content-Type", "application/json")
	sub.Header.Del("Accept-Encoding")
	rec := &bufferedResponse{header: make(http.Header)}
	if err := next.ServeHTTP(rec, sub); err != nil || rec.status != http.StatusOK {
		h.logger.Debug("upstream /tokenize failed; estimating", zap.Error(err), zap.Int("status", rec.status))
		return 0, false
	}
	var out struct {
		Count *int64 `json:"count"`
	}
	if json.Unmarshal(rec.body.Bytes(), &out) != nil || out.Count == nil {
		return 0, false
	}
	return *out.Count, true
}

// bufferedResponse collects a small upstream answer the client never sees.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if b.body.Len()+len(p) > 1<<20 {
		return 0, io.ErrShortWrite
	}
	return b.body.Write(p)
}
