package handler

import (
	"cmp"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// modelLenTTL is how long the upstream's max_model_len answers are trusted.
const modelLenTTL = 5 * time.Minute

// modelLenRetry is how soon a failed ask is tried again (vLLM still loading
// its model, the asking client gone): the lengths known before are kept
// meanwhile.
const modelLenRetry = 10 * time.Second

// modelLens caches each model's context length from the upstream's
// GET /v1/models, so a request without max_tokens reserves no more output
// than the model can produce. Requests read it without a lock. The first
// requests wait for the upstream's first answer (without it, a request
// would ask vLLM for more tokens than its model can hold, and get a 400).
// Once the lengths have expired, the first request to see that asks the
// upstream again and waits for the answer; the others go on with the
// lengths known, rather than queue behind an upstream that may be slow to
// answer.
type modelLens struct {
	ttl, retry time.Duration // modelLenTTL and modelLenRetry when 0
	mu         sync.Mutex    // held for the first fetch
	cur        atomic.Pointer[lensSnapshot]
	fetching   atomic.Bool // a refresh is under way
}

// lensSnapshot is the lengths known (nil when the upstream never gave
// them) and when to ask again.
type lensSnapshot struct {
	lens    map[string]int64
	first   string // the first model listed: vLLM's default, served to a request that names none
	expires time.Time
}

// get returns the model's max_model_len, or 0 when the upstream does not
// say. It asks the upstream (through next, like any other request) at most
// once per TTL, or per retry interval while asking fails.
func (m *modelLens) get(r *http.Request, next caddyhttp.Handler, model string) int64 {
	return m.snapshot(r, next).lens[model]
}

// defaultModel returns the model the upstream serves to a request that
// names none (vLLM's first served name), or "" when it does not say.
func (m *modelLens) defaultModel(r *http.Request, next caddyhttp.Handler) string {
	return m.snapshot(r, next).first
}

// snapshot returns the upstream's answer, asking for it as get says.
func (m *modelLens) snapshot(r *http.Request, next caddyhttp.Handler) *lensSnapshot {
	s := m.cur.Load()
	switch {
	case s == nil:
		s = m.first(r, next)
	case time.Now().After(s.expires) && m.fetching.CompareAndSwap(false, true):
		defer m.fetching.Store(false) // even if next panics (reverse_proxy aborting)
		s = m.fetch(r, next)
	}
	return s
}

// first returns the first answer, asking for it unless another request
// did meanwhile.
func (m *modelLens) first(r *http.Request, next caddyhttp.Handler) *lensSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.cur.Load(); s != nil {
		return s
	}
	return m.fetch(r, next)
}

// fetch asks the upstream and keeps its answer for the TTL; when asking
// fails, it keeps the lengths known before, until the retry interval is up.
func (m *modelLens) fetch(r *http.Request, next caddyhttp.Handler) *lensSnapshot {
	lens, first := fetchModelLens(r, next)
	s := &lensSnapshot{lens: lens, first: first, expires: time.Now().Add(cmp.Or(m.ttl, modelLenTTL))}
	if lens == nil {
		if prev := m.cur.Load(); prev != nil {
			s.lens, s.first = prev.lens, prev.first
		}
		s.expires = time.Now().Add(cmp.Or(m.retry, modelLenRetry))
	}
	m.cur.Store(s)
	return s
}

// fetchModelLens asks GET /v1/models through next for each model's
// max_model_len, and the first model's id: nil when the upstream gave no
// answer, an empty map when it gave no lengths.
func fetchModelLens(r *http.Request, next caddyhttp.Handler) (map[string]int64, string) {
	sub := r.Clone(r.Context())
	sub.Method = http.MethodGet
	sub.URL.Path, sub.URL.RawPath, sub.URL.RawQuery = "/v1/models", "", ""
	sub.RequestURI = "/v1/models"
	sub.Body, sub.ContentLength = http.NoBody, 0
	sub.Header.Del("Content-Length")
	sub.Header.Del("Content-Type")
	sub.Header.Del("Accept-Encoding")
	rec := &bufferedResponse{header: make(http.Header)}
	if err := next.ServeHTTP(rec, sub); err != nil || rec.status != http.StatusOK {
		return nil, ""
	}
	var list struct {
		Data []struct {
			ID          string `json:"id"`
			MaxModelLen int64  `json:"max_model_len"`
		} `json:"data"`
	}
	if json.Unmarshal(rec.body.Bytes(), &list) != nil {
		return nil, ""
	}
	lens := make(map[string]int64, len(list.Data))
	first := ""
	for i, d := range list.Data {
		if i == 0 {
			first = d.ID
		}
		if d.MaxModelLen > 0 {
			lens[d.ID] = d.MaxModelLen
		}
	}
	return lens, first
}
