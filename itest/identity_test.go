package itest

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

type openAIError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

func decodeError(t testing.TB, b []byte) openAIError {
	t.Helper()
	var e openAIError
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not an OpenAI error: %s (%v)", b, err)
	}
	return e
}

// TestIdentity: every credential outcome through a real Caddy, in OpenAI's
// error shape, and the caller's identity reaching the access log's
// placeholders and header_up.
func TestIdentity(t *testing.T) {
	e := newEnv(t, envOpts{file: strings.Replace(gateCaddyfile, "reverse_proxy {UPSTREAM}",
		"reverse_proxy {UPSTREAM} {\n\t\theader_up X-Gate-User {http.llm_gate.user}\n\t\theader_up X-Gate-Key {http.llm_gate.key_id}\n\t}", 1)})
	// An admin-made user with an API key.
	if st := e.admin("PUT", "/llm_gate/users/carol", map[string]any{"plan": "unlimited"}, nil); st != 200 && st != 201 {
		t.Fatalf("PUT user: %d", st)
	}
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if st := e.admin("POST", "/llm_gate/users/carol/keys", map[string]any{"name": "laptop"}, &key); st != 201 || !strings.HasPrefix(key.Key, "sk-") {
		t.Fatalf("POST key: %d %+v", st, key)
	}
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(-time.Hour).Unix()}).SignedString([]byte(testSecret))
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("another-secret-0123456789abcdef01234"))
	none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.TrimRight(jwtSeg(`{"sub":"x","exp":9999999999}`), "=") + "."

	cases := []struct {
		name   string
		header []string
		status int
		code   string
	}{
		{"no credential", nil, 401, "missing_api_key"},
		{"garbage bearer", []string{"Authorization", "Bearer not-a-token"}, 401, "invalid_api_key"},
		{"basic auth", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, "invalid_api_key"},
		{"expired jwt", []string{"Authorization", "Bearer " + expired}, 401, "invalid_api_key"},
		{"jwt with another secret", []string{"Authorization", "Bearer " + wrongKey}, 401, "invalid_api_key"},
		{"alg none", []string{"Authorization", "Bearer " + none}, 401, "invalid_api_key"},
		{"unknown api key", []string{"Authorization", "Bearer sk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 401, "invalid_api_key"},
		{"16 kB token", []string{"Authorization", "Bearer " + strings.Repeat("a", 16<<10)}, 401, "invalid_api_key"},
		// Beyond Go's header limit the server refuses before the gate runs.
		{"1 MB token", []string{"Authorization", "Bearer " + strings.Repeat("a", 1<<20)}, 431, ""},
		{"valid jwt", []string{"Authorization", "Bearer " + token(t, "dave", nil)}, 200, ""},
		{"api key as bearer", []string{"Authorization", "Bearer " + key.Key}, 200, ""},
		{"api key as x-api-key", []string{"X-Api-Key", key.Key}, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := e.post("/v1/chat/completions", "", chatBody("sim-model", false, nil), c.header...)
			b := mustStatus(t, resp, c.status)
			if c.status == 200 || c.status == 431 {
				return
			}
			if got := decodeError(t, b); got.Error.Code != c.code {
				t.Fatalf("code %q, want %q: %s", got.Error.Code, c.code, b)
			}
			if c.status == 401 && !strings.HasPrefix(resp.Header.Get("Www-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: %v", resp.Header)
			}
		})
	}
	// The identity reached the upstream through header_up, the credential did not.
	reqs := e.sim.Requests()
	last := reqs[len(reqs)-1]
	if last.Header.Get("X-Gate-User") != "carol" || last.Header.Get("X-Gate-Key") != key.ID {
		t.Fatalf("placeholders upstream: user %q key %q", last.Header.Get("X-Gate-User"), last.Header.Get("X-Gate-Key"))
	}
	if last.Header.Get("X-Api-Key") != "" || last.Header.Get("Authorization") != "" {
		t.Fatalf("credential forwarded upstream")
	}
	// The key's use reached the store with the requests' records.
	var stored struct {
		LastUsedAt *time.Time `json:"last_used_at"`
	}
	if st := e.admin("GET", "/llm_gate/keys/"+key.ID, nil, &stored); st != 200 || stored.LastUsedAt == nil || time.Since(*stored.LastUsedAt) > time.Minute {
		t.Fatalf("GET key: %d, last_used_at %v; want the time of the requests above", st, stored.LastUsedAt)
	}

	// The minted key works for the OpenAI Go SDK...
	client := openai.NewClient(option.WithBaseURL(e.base+"/v1"), option.WithAPIKey(key.Key), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{Model: "sim-model", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello!")}}
	if _, err := client.Chat.Completions.New(t.Context(), params); err != nil {
		t.Fatalf("SDK with a minted key: %v", err)
	}
	// ...and revocation takes effect on the very next request.
	if st := e.admin("DELETE", "/llm_gate/keys/"+key.ID, nil, nil); st != 200 && st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	var apiErr *openai.Error
	if _, err := client.Chat.Completions.New(t.Context(), params); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Fatalf("SDK after revocation: %v", err)
	}
	b := mustStatus(t, e.post("/v1/chat/completions", key.Key, chatBody("sim-model", false, nil)), 401)
	if decodeError(t, b).Error.Code != "invalid_api_key" {
		t.Fatalf("%s", b)
	}

	// A disabled user is refused with 403.
	if st := e.admin("PATCH", "/llm_gate/users/dave", map[string]any{"disabled": true}, nil); st != 200 {
		t.Fatalf("PATCH: %d", st)
	}
	b = mustStatus(t, e.post("/v1/chat/completions", token(t, "dave", nil), chatBody("sim-model", false, nil)), 403)
	if decodeError(t, b).Error.Code != "user_disabled" {
		t.Fatalf("%s", b)
	}

	// A JWT subject with '/' (GitHub Actions' OIDC tokens name the
	// repository and ref) is a user like any other, reachable in the admin
	// API with the '/' escaped.
	const ci = "repo:octo/app:ref:refs/heads/main"
	mustStatus(t, e.post("/v1/chat/completions", token(t, ci, nil), chatBody("sim-model", false, nil)), 200)
	reqs = e.sim.Requests()
	if got := reqs[len(reqs)-1].Header.Get("X-Gate-User"); got != ci {
		t.Fatalf("user %q upstream, want %q", got, ci)
	}
	var u struct {
		ID     string `json:"id"`
		Source string `json:"source"`
	}
	if st := e.admin("GET", "/llm_gate/users/"+url.PathEscape(ci), nil, &u); st != 200 || u.ID != ci || u.Source != "jwt" {
		t.Fatalf("GET the JWT user: %d %+v", st, u)
	}
	if r := e.waitRecords(ci, 1)[0]; r.PromptTokens == 0 {
		t.Fatalf("record %+v", r)
	}

	// Paths outside /v1 are not proxied.
	b = mustStatus(t, e.post("/tokenize", token(t, "erin", nil), map[string]any{"prompt": "hi"}), 404)
	decodeError(t, b)
	if resp, err := http.Get(e.base + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("unauthenticated /metrics: %v %v", resp.StatusCode, err)
	}
}

func jwtSeg(s string) string {
	return strings.TrimRight((&jwt.Token{}).EncodeSegment([]byte(s)), "=")
}

// TestKeyUserChanges: a key's requests see every change to its user from
// the next request on, though the gate keeps the user with the key between
// requests: disabled, enabled again, and its plan's model list.
func TestKeyUserChanges(t *testing.T) {
	e := newEnv(t, envOpts{})
	if st := e.admin("PUT", "/llm_gate/users/kate", map[string]any{"plan": "unlimited"}, nil); st != 200 && st != 201 {
		t.Fatalf("PUT user: %d", st)
	}
	var key struct {
		Key string `json:"key"`
	}
	if st := e.admin("POST", "/llm_gate/users/kate/keys", map[string]any{"name": "ci"}, &key); st != 201 {
		t.Fatalf("POST key: %d", st)
	}
	ask := func(want int) []byte {
		t.Helper()
		return mustStatus(t, e.post("/v1/chat/completions", key.Key, chatBody("sim-model", false, nil)), want)
	}
	ask(200)
	ask(200) // the key and its user are the gate's cached ones now
	for _, step := range []struct {
		patch map[string]any
		want  int
		code  string
	}{
		{map[string]any{"disabled": true}, 403, "user_disabled"},
		{map[string]any{"disabled": false}, 200, ""},
		{map[string]any{"models": []string{"other-*"}}, 403, "model_not_allowed"},
		{map[string]any{"models": []string{"sim-*"}}, 200, ""},
	} {
		if st := e.admin("PATCH", "/llm_gate/users/kate", step.patch, nil); st != 200 {
			t.Fatalf("PATCH %v: %d", step.patch, st)
		}
		b := ask(step.want)
		if step.code != "" {
			if got := decodeError(t, b).Error.Code; got != step.code {
				t.Fatalf("after PATCH %v: code %q, want %q: %s", step.patch, got, step.code, b)
			}
		}
	}
}
