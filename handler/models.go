package handler

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// modelLenTTL is how long the upstream's max_model_len answers are trusted.
const modelLenTTL = 5 * time.Minute

// modelLens caches each model's context length from the upstream's
// GET /v1/models, so a request without max_tokens reserves no more output
// than the model can produce.
type modelLens struct {
	mu      sync.Mutex
	lens    map[string]int64
	fetched time.Time
}

// get returns the model's max_model_len, or 0 when the upstream does not
// say. It asks the upstream (through next, like any other request) at most
// once per modelLenTTL.
func (m *modelLens) get(r *http.Request, next caddyhttp.Handler, model string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.fetched) > modelLenTTL {
		m.fetched = time.Now()
		m.lens = fetchModelLens(r, next)
	}
	return m.lens[model]
}

func fetchModelLens(r *http.Request, next caddyhttp.Handler) map[string]int64 {
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
		return nil
	}
	var list struct {
		Data []struct {
			ID          string `json:"id"`
			MaxModelLen int64  `json:"max_model_len"`
		} `json:"data"`
	}
	if json.Unmarshal(rec.body.Bytes(), &list) != nil {
		return nil
	}
	lens := make(map[string]int64, len(list.Data))
	for _, d := range list.Data {
		if d.MaxModelLen > 0 {
			lens[d.ID] = d.MaxModelLen
		}
	}
	return lens
}
