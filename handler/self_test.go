package handler

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/gate"
)

// TestServeModelsShowsOnlyThePlans: whatever the upstream answers, the
// client never sees a model its plan leaves out. A list asked for with
// Accept-Encoding: gzip used to come back compressed, fail to parse and be
// passed on whole; a list that is not JSON is not passed on; an upstream
// that does not answer gets the metered paths' error shape, not an empty
// 502.
func TestServeModelsShowsOnlyThePlans(t *testing.T) {
	h := &Handler{logger: zap.NewNop()}
	c := &caller{eff: gate.Effective{Models: []string{"llama-*"}}}
	const list = `{"object":"list","data":[{"id":"llama-3"},{"id":"secret-internal"}]}`
	compressing := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			_, err := w.Write([]byte(list))
			return err
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write([]byte(list))
		return zw.Close()
	})
	notJSON := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write([]byte(list[:30]))
		return err
	})
	down := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(http.StatusBadGateway, errors.New("dial tcp: connection refused"))
	})
	for _, tc := range []struct {
		name   string
		next   caddyhttp.Handler
		status int
		want   string
	}{
		{"compressing upstream", compressing, 200, "llama-3"},
		{"not JSON", notJSON, 502, "upstream_error"},
		{"upstream down", down, 502, "upstream_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
			req.Header.Set("Accept-Encoding", "gzip, deflate")
			rr := httptest.NewRecorder()
			if err := h.serveModels(rr, req, tc.next, c); err != nil {
				t.Fatal(err)
			}
			body := rr.Body.String()
			if rr.Code != tc.status || !strings.Contains(body, tc.want) || strings.Contains(body, "secret-internal") {
				t.Fatalf("%d %s; want %d with %q and no model outside the plan", rr.Code, body, tc.status, tc.want)
			}
			if tc.status != 200 {
				var e struct {
					Error struct{ Message, Type, Code string } `json:"error"`
				}
				if json.Unmarshal(rr.Body.Bytes(), &e) != nil || e.Error.Message == "" || e.Error.Type != "server_error" {
					t.Fatalf("not OpenAI's error shape: %s", body)
				}
			}
		})
	}
}
