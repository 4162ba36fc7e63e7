package caddyfile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/handler"
)

// TestGlobalWords adapts each word of the global option on its own and
// compares the app's JSON: only what was written may appear.
func TestGlobalWords(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty", ``, `{}`},
		{"db", `db /var/lib/caddy/gate.db`, `{"db":"/var/lib/caddy/gate.db"}`},
		{"flush_interval", `flush_interval 250ms`, `{"flush_interval":250000000}`},
		{"flush_interval zero is kept", `flush_interval 0`, `{"flush_interval":0}`},
		{"retention days", `retention 90d`, `{"retention":7776000000000000}`},
		{"retention hours", `retention 36h`, `{"retention":129600000000000}`},
		{"retention zero is kept", `retention 0s`, `{"retention":0}`},
		{"tokenizer", `tokenizer o200k_base`, `{"tokenizer":"o200k_base"}`},
		{"metrics_per_user", `metrics_per_user`, `{"metrics_per_user":true}`},
		{"plan without block", `plan open`, `{"plans":{"open":{}}}`},
		{"plan with empty block", "plan open {\n}", `{"plans":{"open":{}}}`},
		{"tokens", "plan p {\ntokens 100000 per day\n}", `{"plans":{"p":{"tokens":[{"window":"day","limit":100000}]}}}`},
		{"tokens k", "plan p {\ntokens 100k per hour\n}", `{"plans":{"p":{"tokens":[{"window":"hour","limit":100000}]}}}`},
		{"tokens M fraction", "plan p {\ntokens 2.5M per month\n}", `{"plans":{"p":{"tokens":[{"window":"month","limit":2500000}]}}}`},
		{"tokens G", "plan p {\ntokens 1G per total\n}", `{"plans":{"p":{"tokens":[{"window":"total","limit":1000000000}]}}}`},
		{"tokens every window", "plan p {\ntokens 1 per minute\ntokens 2 per hour\ntokens 3 per day\ntokens 4 per week\ntokens 5 per month\ntokens 6 per total\n}",
			`{"plans":{"p":{"tokens":[{"window":"minute","limit":1},{"window":"hour","limit":2},{"window":"day","limit":3},{"window":"week","limit":4},{"window":"month","limit":5},{"window":"total","limit":6}]}}}`},
		{"requests", "plan p {\nrequests 60 per minute\n}", `{"plans":{"p":{"requests":[{"window":"minute","limit":60}]}}}`},
		{"tokens and requests share a window", "plan p {\ntokens 10 per minute\nrequests 10 per minute\n}",
			`{"plans":{"p":{"tokens":[{"window":"minute","limit":10}],"requests":[{"window":"minute","limit":10}]}}}`},
		{"max_parallel", "plan p {\nmax_parallel 4\n}", `{"plans":{"p":{"max_parallel":4}}}`},
		{"models", "plan p {\nmodels llama-* qwen-?\nmodels [a-c]*\n}", `{"plans":{"p":{"models":["llama-*","qwen-?","[a-c]*"]}}}`},
		{"default_plan before its plan", "default_plan pro\nplan pro", `{"plans":{"pro":{}},"default_plan":"pro"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := adapt(global(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := canon(t, a.app), canon(t, []byte(tt.want)); got != want {
				t.Errorf("app:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestNoGlobalOption checks that a site alone adds no llm_gate app: the
// app's defaults then apply.
func TestNoGlobalOption(t *testing.T) {
	a, err := adapt(":8080 {\n\tllm_gate\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if a.app != nil {
		t.Errorf("app = %s, want none", a.app)
	}
	if got := canon(t, a.gateHandler(t)); got != `{"handler":"llm_gate"}` {
		t.Errorf("bare directive = %s, want only the handler name", got)
	}
}

// TestHandlerWords adapts each word of the directive on its own and
// compares the handler's JSON.
func TestHandlerWords(t *testing.T) {
	pub := writePublicKey(t)
	jwksFile := filepath.Join(t.TempDir(), "jwks.json") // RFC 8037's Ed25519 example key
	if err := os.WriteFile(jwksFile, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, global, body, want string
	}{
		{"empty block", "", ``, `{}`},
		{"secret", "", "jwt {\nsecret " + secret32 + "\n}", `{"jwt":{"secrets":["` + secret32 + `"]}}`},
		{"secret placeholder", "", "jwt {\nsecret {env.LLM_GATE_JWT_SECRET}\n}", `{"jwt":{"secrets":["{env.LLM_GATE_JWT_SECRET}"]}}`},
		{"secret file placeholder", "", "jwt {\nsecret {file./run/secrets/jwt}\n}", `{"jwt":{"secrets":["{file./run/secrets/jwt}"]}}`},
		{"secrets repeat", "", "jwt {\nsecret " + secret32 + "\nsecret {env.OLD}\n}", `{"jwt":{"secrets":["` + secret32 + `","{env.OLD}"]}}`},
		{"public_key", "", "jwt {\npublic_key " + pub + "\n}", `{"jwt":{"public_keys":["` + pub + `"]}}`},
		{"public_key placeholder", "", "jwt {\npublic_key {env.KEY_FILE}\n}", `{"jwt":{"public_keys":["{env.KEY_FILE}"]}}`},
		{"jwks url", "", "jwt {\njwks https://idp.example.com/jwks.json\n}", `{"jwt":{"jwks":["https://idp.example.com/jwks.json"]}}`},
		{"jwks file", "", "jwt {\njwks " + jwksFile + "\n}", `{"jwt":{"jwks":["` + jwksFile + `"]}}`},
		{"algorithms", "", "jwt {\nsecret {env.S}\njwks https://i/j\nalgorithms HS256 HS512\nalgorithms EdDSA\n}", `{"jwt":{"secrets":["{env.S}"],"jwks":["https://i/j"],"algorithms":["HS256","HS512","EdDSA"]}}`},
		{"issuer", "", "jwt {\njwks https://i/j\nissuer https://a\nissuer https://b\n}", `{"jwt":{"jwks":["https://i/j"],"issuers":["https://a","https://b"]}}`},
		{"audience", "", "jwt {\njwks https://i/j\naudience vllm\naudience chat\n}", `{"jwt":{"jwks":["https://i/j"],"audiences":["vllm","chat"]}}`},
		{"leeway", "", "jwt {\njwks https://i/j\nleeway 1m30s\n}", `{"jwt":{"jwks":["https://i/j"],"leeway":90000000000}}`},
		{"user_claim", "", "jwt {\njwks https://i/j\nuser_claim email\n}", `{"jwt":{"jwks":["https://i/j"],"user_claim":"email"}}`},
		{"plan_claim", "", "jwt {\njwks https://i/j\nplan_claim tier\n}", `{"jwt":{"jwks":["https://i/j"],"plan_claim":"tier"}}`},
		{"limit_claim", "", "jwt {\njwks https://i/j\nlimit_claim quota\n}", `{"jwt":{"jwks":["https://i/j"],"limit_claim":"quota"}}`},
		{"two jwt blocks add up", "", "jwt {\njwks https://i/a\n}\njwt {\njwks https://i/b\n}", `{"jwt":{"jwks":["https://i/a","https://i/b"]}}`},
		{"api_keys bare", "", `api_keys`, `{"api_keys":true}`},
		{"api_keys on", "", `api_keys on`, `{"api_keys":true}`},
		{"api_keys true", "", `api_keys true`, `{"api_keys":true}`},
		{"api_keys off", "", "jwt {\njwks https://i/j\n}\napi_keys off", `{"jwt":{"jwks":["https://i/j"]},"api_keys":false}`},
		{"api_keys false", "", "api_keys false\njwt {\njwks https://i/j\n}", `{"jwt":{"jwks":["https://i/j"]},"api_keys":false}`},
		{"plan", "plan free", `plan free`, `{"plan":"free"}`},
		{"usage_chunk hide", "", `usage_chunk hide`, `{"usage_chunk":"hide"}`},
		{"usage_chunk forward", "", `usage_chunk forward`, `{"usage_chunk":"forward"}`},
		{"prompt_count estimate", "", `prompt_count estimate`, `{"prompt_count":"estimate"}`},
		{"prompt_count tokenize", "", `prompt_count tokenize`, `{"prompt_count":"tokenize"}`},
		{"reserve_output", "", `reserve_output 4096`, `{"reserve_output":4096}`},
		{"reserve_output k", "", `reserve_output 8k`, `{"reserve_output":8000}`},
		{"self_service", "", `self_service /llm_gate/me`, `{"self_service":"/llm_gate/me"}`},
		{"max_body_size MB", "", `max_body_size 16MB`, `{"max_body_size":16000000}`},
		{"max_body_size MiB", "", `max_body_size 1MiB`, `{"max_body_size":1048576}`},
		{"max_body_size bytes", "", `max_body_size 4096`, `{"max_body_size":4096}`},
		{"max_body_size fraction of MB", "", `max_body_size 1.5MB`, `{"max_body_size":1500000}`},
		{"max_body_size with a space", "", `"max_body_size" "2 KiB"`, `{"max_body_size":2048}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := adapt(site(tt.global, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			// The directive adds the module's name to what was written.
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			want["handler"] = "llm_gate"
			if got, want := canon(t, a.gateHandler(t)), canon(t, []byte(mustJSON(t, want))); got != want {
				t.Errorf("handler:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestRoundTrip decodes the adapted JSON into the modules' own types, as
// Caddy does when it loads the config, and checks every field as written.
func TestRoundTrip(t *testing.T) {
	pub := writePublicKey(t)
	a, err := adapt(strings.Replace(specExample, "/etc/caddy/jwt.pem", pub, 1))
	if err != nil {
		t.Fatal(err)
	}

	var app gate.App
	if err := json.Unmarshal(a.app, &app); err != nil {
		t.Fatal(err)
	}
	if app.DB != "/var/lib/caddy/llm_gate.db" || app.Tokenizer != "cl100k_base" || app.DefaultPlan != "free" {
		t.Errorf("app strings = %q %q %q", app.DB, app.Tokenizer, app.DefaultPlan)
	}
	if app.FlushInterval == nil || time.Duration(*app.FlushInterval) != time.Second {
		t.Errorf("flush_interval = %v, want 1s", app.FlushInterval)
	}
	if app.Retention == nil || time.Duration(*app.Retention) != 90*24*time.Hour {
		t.Errorf("retention = %v, want 90 days", app.Retention)
	}
	free, pro := app.Plans["free"], app.Plans["pro"]
	if len(app.Plans) != 2 || free == nil || pro == nil {
		t.Fatalf("plans = %v", app.Plans)
	}
	wantFree := gate.PlanConfig{
		Tokens:      []gate.WindowLimit{{Window: "day", Limit: 100000}, {Window: "minute", Limit: 20000}},
		Requests:    []gate.WindowLimit{{Window: "minute", Limit: 60}},
		MaxParallel: 4,
		Models:      []string{"llama-*", "qwen-*"},
	}
	if got, _ := json.Marshal(free); string(got) != mustJSON(t, wantFree) {
		t.Errorf("plan free = %s", got)
	}
	if len(pro.Tokens) != 1 || pro.Tokens[0] != (gate.WindowLimit{Window: "month", Limit: 5000000}) || pro.Requests != nil || pro.MaxParallel != 0 || pro.Models != nil {
		t.Errorf("plan pro = %+v", *pro)
	}

	var h handler.Handler
	if err := json.Unmarshal(a.gateHandler(t), &h); err != nil {
		t.Fatal(err)
	}
	j := h.JWT
	if j == nil {
		t.Fatal("jwt lost")
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"secrets", j.Secrets, []string{"{env.LLM_GATE_JWT_SECRET}"}},
		{"public_keys", j.PublicKeys, []string{pub}},
		{"jwks", j.JWKS, []string{"https://idp.example.com/.well-known/jwks.json"}},
		{"algorithms", j.Algorithms, []string{"RS256", "ES256"}},
		{"issuers", j.Issuers, []string{"https://idp.example.com"}},
		{"audiences", j.Audiences, []string{"vllm"}},
		{"leeway", j.Leeway, caddy.Duration(30 * time.Second)},
		{"user_claim", j.UserClaim, "sub"},
		{"plan_claim", j.PlanClaim, "plan"},
		{"limit_claim", j.LimitClaim, "token_limit"},
		{"api_keys", h.APIKeys != nil && *h.APIKeys, true},
		{"plan", h.Plan, "free"},
		{"usage_chunk", h.UsageChunk, "hide"},
		{"prompt_count", h.PromptCount, "estimate"},
		{"reserve_output", h.ReserveOutput, int64(4096)},
		{"self_service", h.SelfService, "/llm_gate/me"},
		{"max_body_size", h.MaxBodySize, int64(0)},
	}
	for _, c := range checks {
		if mustJSON(t, c.got) != mustJSON(t, c.want) {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

// TestRoundTripZero checks that a written 0 survives as a set pointer,
// distinct from an absent word, and that api_keys off survives as false.
func TestRoundTripZero(t *testing.T) {
	a, err := adapt(site("flush_interval 0", "api_keys off\njwt {\njwks https://i/j\n}"))
	if err != nil {
		t.Fatal(err)
	}
	var app gate.App
	if err := json.Unmarshal(a.app, &app); err != nil {
		t.Fatal(err)
	}
	if app.FlushInterval == nil || *app.FlushInterval != 0 {
		t.Errorf("flush_interval = %v, want a set 0", app.FlushInterval)
	}
	if app.Retention != nil {
		t.Errorf("retention = %v, want absent", *app.Retention)
	}
	var h handler.Handler
	if err := json.Unmarshal(a.gateHandler(t), &h); err != nil {
		t.Fatal(err)
	}
	if h.APIKeys == nil || *h.APIKeys {
		t.Errorf("api_keys = %v, want a set false", h.APIKeys)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
