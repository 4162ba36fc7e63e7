package caddyfile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/llmgate/llmgate/gate"
	_ "github.com/llmgate/llmgate/handler"
)

// specExample is the Caddyfile of SPEC §2, word for word; tests swap the
// public key path for a file they create.
const specExample = `{
	llm_gate {
		db /var/lib/caddy/llm_gate.db   # bbolt file; default: <Caddy data dir>/llm_gate/llm_gate.db
		flush_interval 1s               # how often usage is committed; 0 = every request, before it ends
		retention 90d                   # how long per-request records are kept
		tokenizer cl100k_base           # estimator for prompt pre-checks and fallback counting

		plan free {
			tokens 100000 per day       # budget; windows: minute hour day week month total
			tokens 20000 per minute     # several windows may be given
			requests 60 per minute
			max_parallel 4
			models llama-* qwen-*       # allowed models (globs); default: all
		}
		plan pro {
			tokens 5000000 per month
		}
		default_plan free
	}
}

llm.example.com {
	llm_gate {
		jwt {
			secret {env.LLM_GATE_JWT_SECRET}   # HS256/384/512; must be >= 32 bytes
			public_key /etc/caddy/jwt.pem      # RS*, PS*, ES*, EdDSA (PEM, may repeat)
			jwks https://idp.example.com/.well-known/jwks.json   # URL or file, cached, refreshed on unknown kid
			algorithms RS256 ES256             # allowed algorithms; default: those the keys support
			issuer https://idp.example.com     # may repeat; any matches
			audience vllm                      # may repeat; any matches
			leeway 30s                         # clock skew allowed on exp/nbf/iat
			user_claim sub                     # which claim names the user (default sub)
			plan_claim plan                    # optional: claim naming the user's plan
			limit_claim token_limit            # optional: claim overriding the budget of the plan's largest window
		}
		api_keys                               # accept API keys issued through the admin API (default on)
		plan free                              # plan for users with none of their own (default: default_plan)
		usage_chunk hide                       # hide (default: the client sees vLLM's stream byte for byte) | forward (clients such as OpenCode want usage)
		prompt_count estimate                  # estimate (local tokenizer, default) | tokenize (exact, via the upstream's /tokenize)
		reserve_output 4096                    # output reserved for a request that sets no max_tokens
		self_service /llm_gate/me              # GET here shows the caller their own plan, usage and remaining budget
	}
	reverse_proxy localhost:8000
}
`

// specAppJSON and specHandlerJSON are what specExample must adapt to.
const specAppJSON = `{
	"db": "/var/lib/caddy/llm_gate.db",
	"flush_interval": 1000000000,
	"retention": 7776000000000000,
	"tokenizer": "cl100k_base",
	"plans": {
		"free": {
			"tokens": [{"window": "day", "limit": 100000}, {"window": "minute", "limit": 20000}],
			"requests": [{"window": "minute", "limit": 60}],
			"max_parallel": 4,
			"models": ["llama-*", "qwen-*"]
		},
		"pro": {"tokens": [{"window": "month", "limit": 5000000}]}
	},
	"default_plan": "free"
}`

const specHandlerJSON = `{
	"handler": "llm_gate",
	"jwt": {
		"secrets": ["{env.LLM_GATE_JWT_SECRET}"],
		"public_keys": ["PUBKEY"],
		"jwks": ["https://idp.example.com/.well-known/jwks.json"],
		"algorithms": ["RS256", "ES256"],
		"issuers": ["https://idp.example.com"],
		"audiences": ["vllm"],
		"leeway": 30000000000,
		"user_claim": "sub",
		"plan_claim": "plan",
		"limit_claim": "token_limit"
	},
	"api_keys": true,
	"plan": "free",
	"usage_chunk": "hide",
	"prompt_count": "estimate",
	"reserve_output": 4096,
	"self_service": "/llm_gate/me"
}`

// secret32 is a literal HMAC secret of exactly the minimum length.
const secret32 = "0123456789abcdef0123456789abcdef"

// adapted is the part of an adapted config these tests look at.
type adapted struct {
	app      json.RawMessage   // apps.llm_gate; nil when absent
	handlers []json.RawMessage // every HTTP handler, in the order requests meet them
}

// adapt runs the Caddyfile adapter in-process, as `caddy adapt` does.
func adapt(src string) (adapted, error) {
	out, _, err := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}.Adapt([]byte(src), nil)
	if err != nil {
		return adapted{}, err
	}
	var cfg struct {
		Apps struct {
			LLMGate json.RawMessage `json:"llm_gate"`
			HTTP    struct {
				Servers map[string]struct {
					Routes []route `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		return adapted{}, err
	}
	a := adapted{app: cfg.Apps.LLMGate}
	for _, srv := range cfg.Apps.HTTP.Servers {
		a.handlers = appendHandlers(a.handlers, srv.Routes)
	}
	return a, nil
}

type route struct {
	Handle []json.RawMessage `json:"handle"`
}

// appendHandlers flattens routes, descending into subroutes, so the order
// of the result is the order a request goes through.
func appendHandlers(dst []json.RawMessage, routes []route) []json.RawMessage {
	for _, r := range routes {
		for _, raw := range r.Handle {
			var h struct {
				Handler string  `json:"handler"`
				Routes  []route `json:"routes"`
			}
			if json.Unmarshal(raw, &h) != nil {
				continue
			}
			if h.Handler == "subroute" {
				dst = appendHandlers(dst, h.Routes)
				continue
			}
			dst = append(dst, raw)
		}
	}
	return dst
}

// handlerNames lists the handlers' names in order.
func (a adapted) handlerNames() []string {
	var names []string
	for _, raw := range a.handlers {
		var h struct {
			Handler string `json:"handler"`
		}
		_ = json.Unmarshal(raw, &h)
		names = append(names, h.Handler)
	}
	return names
}

// gateHandler returns the one llm_gate handler of the config.
func (a adapted) gateHandler(t testing.TB) json.RawMessage {
	t.Helper()
	var found json.RawMessage
	for i, name := range a.handlerNames() {
		if name == "llm_gate" {
			if found != nil {
				t.Fatalf("more than one llm_gate handler: %v", a.handlerNames())
			}
			found = a.handlers[i]
		}
	}
	if found == nil {
		t.Fatalf("no llm_gate handler among %v", a.handlerNames())
	}
	return found
}

// canon re-encodes JSON with sorted keys and no spaces so two documents
// compare equal exactly when they hold the same values.
func canon(t testing.TB, raw []byte) string {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep large integers exact
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad JSON %s: %v", raw, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// writePublicKey writes a fresh Ed25519 public key as PEM and returns its path.
func writePublicKey(t testing.TB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// global is a Caddyfile whose global llm_gate option holds body, with a
// plain site so the file is complete.
func global(body string) string {
	return "{\n\tllm_gate {\n" + body + "\n\t}\n}\n\n:8080 {\n\trespond ok\n}\n"
}

// site is a Caddyfile whose one site holds `llm_gate { body }`, after
// globalBody in the global llm_gate option when that is not empty.
func site(globalBody, body string) string {
	var b strings.Builder
	if globalBody != "" {
		b.WriteString("{\n\tllm_gate {\n" + globalBody + "\n\t}\n}\n\n")
	}
	b.WriteString(":8080 {\n\tllm_gate {\n" + body + "\n\t}\n\treverse_proxy localhost:8000\n}\n")
	return b.String()
}

func TestSpecExample(t *testing.T) {
	pub := writePublicKey(t)
	a, err := adapt(strings.Replace(specExample, "/etc/caddy/jwt.pem", pub, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := canon(t, a.app), canon(t, []byte(specAppJSON)); got != want {
		t.Errorf("llm_gate app:\n got %s\nwant %s", got, want)
	}
	wantHandler := strings.Replace(specHandlerJSON, "PUBKEY", pub, 1)
	if got, want := canon(t, a.gateHandler(t)), canon(t, []byte(wantHandler)); got != want {
		t.Errorf("llm_gate handler:\n got %s\nwant %s", got, want)
	}
	if names := a.handlerNames(); strings.Join(names, ",") != "llm_gate,reverse_proxy" {
		t.Errorf("handlers = %v, want [llm_gate reverse_proxy]", names)
	}
}

// TestOrderWithoutOrderLine puts reverse_proxy first in the site: the
// registered directive order alone must still run llm_gate before it.
func TestOrderWithoutOrderLine(t *testing.T) {
	a, err := adapt(":8080 {\n\treverse_proxy localhost:8000\n\tencode gzip\n\tllm_gate\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	names := a.handlerNames()
	gateAt, proxyAt := -1, -1
	for i, n := range names {
		switch n {
		case "llm_gate":
			gateAt = i
		case "reverse_proxy":
			proxyAt = i
		}
	}
	if gateAt < 0 || proxyAt < 0 || gateAt > proxyAt {
		t.Fatalf("handlers = %v, want llm_gate before reverse_proxy", names)
	}
}

// TestMatcher checks that a matcher token before the block limits the
// handler to matching requests and leaves the block to the handler.
func TestMatcher(t *testing.T) {
	out, _, err := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}.Adapt(
		[]byte(":8080 {\n\tllm_gate /v1/* {\n\t\tusage_chunk forward\n\t}\n\treverse_proxy localhost:8000\n}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"path":["/v1/*"]`)) || !bytes.Contains(out, []byte(`"usage_chunk":"forward"`)) {
		t.Errorf("matcher or handler lost: %s", out)
	}
}
