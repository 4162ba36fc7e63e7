package caddyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// atLine finds the position Caddy appends to a Caddyfile error.
var atLine = regexp.MustCompile(`Caddyfile:(\d+)`)

// mark flags the line an error must name. Caddyfile comments are dropped
// by the lexer, so the marker does not change what is parsed.
const mark = "# <-"

// markedLine returns the 1-based line of src holding mark.
func markedLine(t *testing.T, src string) int {
	t.Helper()
	line := 0
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, mark) {
			if line != 0 {
				t.Fatalf("two marked lines in\n%s", src)
			}
			line = i + 1
		}
	}
	if line == 0 {
		t.Fatalf("no marked line in\n%s", src)
	}
	return line
}

// TestGlobalErrors feeds broken global options and checks the error names
// the marked line and says what is wrong.
func TestGlobalErrors(t *testing.T) {
	tests := []struct {
		name, body, phrase string
	}{
		{"unknown word", "bd /x " + mark, `unrecognized llm_gate option "bd"`},
		{"missing argument", "db " + mark, "db: missing argument"},
		{"extra argument", "db /a /b " + mark, `db: unexpected extra argument "/b"`},
		{"block after a word without one", "db /a {\nfoo " + mark + "\n}", "db takes no block"},
		{"bad duration", "flush_interval soon " + mark, `flush_interval: bad duration "soon"`},
		{"negative duration", "retention -1h " + mark, `retention: duration "-1h" is negative`},
		{"unknown tokenizer", "tokenizer gpt2 " + mark, `tokenizer: unknown encoding "gpt2"; use one of cl100k_base`},
		{"metrics_per_user with an argument", "metrics_per_user yes " + mark, `metrics_per_user: unexpected extra argument "yes"`},
		{"plan without name", "plan " + mark, "plan: missing name"},
		{"plan with extra argument", "plan a b { " + mark + "\n}", `plan a: unexpected extra argument "b"`},
		{"plan defined twice", "plan a\nplan a " + mark, `plan "a" is defined twice`},
		{"unknown plan word", "plan a {\ntoken 5 per day " + mark + "\n}", `plan a: unrecognized setting "token"`},
		{"bad integer", "plan a {\ntokens 10x per day " + mark + "\n}", `tokens: "10x": want a positive whole number`},
		{"negative integer", "plan a {\nrequests -5 per day " + mark + "\n}", "want a positive whole number"},
		{"zero limit", "plan a {\ntokens 0 per day " + mark + "\n}", "want a positive whole number"},
		{"fraction without suffix", "plan a {\ntokens 1.5 per day " + mark + "\n}", "want a positive whole number"},
		{"too large", "plan a {\ntokens 99999999999G per day " + mark + "\n}", "is too large"},
		{"missing per", "plan a {\ntokens 5 day " + mark + "\n}", "want 'tokens <n> per <window>'"},
		{"missing window", "plan a {\nrequests 5 per " + mark + "\n}", "want 'requests <n> per <window>'"},
		{"bad window", "plan a {\ntokens 5 per fortnight " + mark + "\n}",
			`tokens: unknown window "fortnight"; windows are minute, hour, day, week, month, total`},
		{"duplicate window", "plan a {\ntokens 5 per day\ntokens 6 per day " + mark + "\n}", "tokens per day is given twice"},
		{"bad max_parallel", "plan a {\nmax_parallel two " + mark + "\n}", `max_parallel: "two"`},
		{"huge max_parallel", "plan a {\nmax_parallel 5G " + mark + "\n}", "max_parallel: 5000000000 is too large"},
		{"models without globs", "plan a {\nmodels " + mark + "\n}", "models: missing argument"},
		{"bad glob", "plan a {\nmodels llama-* qwen-[ " + mark + "\n}", `models: bad glob "qwen-["`},
		{"unknown default_plan", "default_plan gold " + mark + "\nplan free\nplan pro", `default_plan "gold" is not defined; defined plans: free, pro`},
		{"default_plan without plans", "default_plan gold " + mark, "no plans are defined"},
		// A setting that takes one value, given twice: one would silently win.
		{"db twice", "db /a\ndb /b " + mark, "db is given twice (first on line 3); give it once"},
		{"flush_interval twice", "flush_interval 1s\nflush_interval 0 " + mark, "flush_interval is given twice"},
		{"retention twice", "retention 1h\nretention 2h " + mark, "retention is given twice"},
		{"tokenizer twice", "tokenizer cl100k_base\ntokenizer o200k_base " + mark, "tokenizer is given twice"},
		{"metrics_per_user twice", "metrics_per_user\nmetrics_per_user " + mark, "metrics_per_user is given twice"},
		{"default_plan twice", "plan a\nplan b\ndefault_plan a\ndefault_plan b " + mark, "default_plan is given twice"},
		{"max_parallel twice", "plan a {\nmax_parallel 2\nmax_parallel 3 " + mark + "\n}", "max_parallel is given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkError(t, global(tt.body), tt.phrase)
		})
	}
}

// TestHandlerErrors does the same for the site directive.
func TestHandlerErrors(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(notPEM, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope.pem")
	// Keys that parse as PEM but that the verifier refuses at provision,
	// where no line could be named.
	ed := writePublicKey(t)
	edPriv := filepath.Join(t.TempDir(), "ed.key")
	if _, priv, err := ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	} else if der, err := x509.MarshalPKCS8PrivateKey(priv); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(edPriv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyJWKS := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(emptyJWKS, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, global, body, phrase string
	}{
		{"unknown word", "", "api_key " + mark, `unrecognized llm_gate subdirective "api_key"`},
		{"missing argument", "", "usage_chunk " + mark, "usage_chunk: missing argument"},
		{"extra argument", "", "self_service /a /b " + mark, `self_service: unexpected extra argument "/b"`},
		{"bad usage_chunk", "", "usage_chunk drop " + mark, `usage_chunk: unknown value "drop"; use hide or forward`},
		{"bad prompt_count", "", "prompt_count exact " + mark, `prompt_count: unknown value "exact"; use estimate or tokenize`},
		{"bad api_keys", "", "api_keys maybe " + mark, `api_keys: unknown value "maybe"; use on or off`},
		{"api_keys extra", "", "api_keys on off " + mark, `api_keys: unexpected extra argument "off"`},
		{"bad reserve_output", "", "reserve_output lots " + mark, `reserve_output: "lots": want a positive whole number`},
		{"relative self_service", "", "self_service me " + mark, `self_service: path "me" must start with /`},
		{"self_service under /v1/", "", "self_service /v1/chat/completions " + mark, `self_service: path "/v1/chat/completions" is under /v1/`},
		{"self_service with a query", "", "self_service /me?x=1 " + mark, `must not hold a query`},
		{"reserve_output past JSON's integers", "", "reserve_output 9223372036854775807 " + mark, `reserve_output: 9223372036854775807 is too large`},
		{"max_body_size past JSON's integers", "", "max_body_size 9EB " + mark, `max_body_size: 9EB is too large`},
		{"bad max_body_size", "", "max_body_size big " + mark, `max_body_size: bad size "big"`},
		{"zero max_body_size", "", "max_body_size 0 " + mark, `max_body_size: bad size "0"`},
		{"max_body_size with a comma", "", "max_body_size 1,5MB " + mark, `max_body_size: bad size "1,5MB"`},
		{"max_body_size a fraction of a byte", "", "max_body_size 1.5 " + mark, `max_body_size: bad size "1.5"`},
		{"max_body_size a fraction of B", "", "max_body_size 2.5B " + mark, `max_body_size: bad size "2.5B"`},
		{"undefined plan", "plan free", "plan gold " + mark, `plan "gold" is not defined in the global llm_gate option; defined plans: free`},
		{"plan without global option", "", "plan free " + mark, "no plans are defined; add 'plan <name> { ... }' to the global llm_gate option"},
		{"jwt argument", "", "jwt hs256 { " + mark + "\nsecret {env.S}\n}", `jwt: unexpected argument "hs256"`},
		{"jwt without block", "", "jwt " + mark, "jwt needs a key to verify tokens with: add secret, public_key or jwks"},
		{"jwt without key", "", "jwt { " + mark + "\nissuer https://idp\nleeway 5s\n}", "jwt needs a key to verify tokens with"},
		{"short secret", "", "jwt {\nsecret " + secret32[1:] + " " + mark + "\n}", "jwt secret must be at least 32 bytes; generate one with: openssl rand -base64 48"},
		{"unknown jwt word", "", "jwt {\nsecret {env.S}\nkid abc " + mark + "\n}", `unrecognized jwt subdirective "kid"`},
		{"unknown algorithm", "", "jwt {\nsecret {env.S}\nalgorithms HS256 HS999 " + mark + "\n}", `jwt: unknown algorithm "HS999" (known: HS256`},
		{"algorithm case matters", "", "jwt {\nsecret {env.S}\nalgorithms rs256 " + mark + "\n}", `unknown algorithm "rs256"`},
		{"algorithm none", "", "jwt {\nsecret {env.S}\nalgorithms RS256 none " + mark + "\n}", "algorithm none is never accepted"},
		{"algorithm NONE", "", "jwt {\nsecret {env.S}\nalgorithms NONE " + mark + "\n}", "algorithm none is never accepted"},
		{"algorithms empty", "", "jwt {\nsecret {env.S}\nalgorithms " + mark + "\n}", "algorithms: missing argument"},
		{"missing public_key", "", "jwt {\npublic_key " + missing + " " + mark + "\n}", "jwt public_key: open " + missing + ": no such file or directory"},
		{"public_key not PEM", "", "jwt {\npublic_key " + notPEM + " " + mark + "\n}", "jwt public_key: read " + notPEM + ": no PEM block found"},
		{"bad jwks URL", "", "jwt {\njwks ftp://idp/jwks " + mark + "\n}", `jwks: "ftp://idp/jwks" is neither an http(s) URL nor a file path`},
		{"bad leeway", "", "jwt {\njwks https://i/j\nleeway 5 " + mark + "\n}", `leeway: bad duration "5"`},
		{"directive argument", "", "", `llm_gate: unexpected argument "now"`},
		{"api_keys twice", "", "api_keys\napi_keys off " + mark, "api_keys is given twice"},
		// What provisioning would refuse without a line, caught here with it.
		{"api_keys off without jwt", "", "api_keys off " + mark, "no credential can be accepted: configure jwt, or leave api_keys on"},
		{"algorithm without its key", "", "jwt {\nsecret {env.S}\nalgorithms HS256 RS256 " + mark + "\n}", "jwt algorithms: RS256 needs a public_key or jwks"},
		{"hmac algorithm without a secret", "", "jwt {\njwks https://i/j\nalgorithms HS512 " + mark + "\n}", "jwt algorithms: HS512 needs a secret"},
		{"private key as public_key", "", "jwt {\npublic_key " + edPriv + " " + mark + "\n}", "holds a PRIVATE KEY"},
		{"jwks file without keys", "", "jwt {\njwks " + emptyJWKS + " " + mark + "\n}", "no usable signature verification key"},
		{"algorithm without a key of its kind", "", "jwt {\npublic_key " + ed + "\nalgorithms ES256 " + mark + "\n}", "algorithm ES256 has no EC P-256 key"},
		{"missing jwks file", "", "jwt {\njwks " + missing + " " + mark + "\n}", "jwt jwks: open " + missing + ": no such file or directory"},
		{"plan twice", "plan free\nplan pro", "plan free\nplan pro " + mark, "plan is given twice"},
		{"usage_chunk twice", "", "usage_chunk hide\nusage_chunk forward " + mark, "usage_chunk is given twice"},
		{"prompt_count twice", "", "prompt_count estimate\nprompt_count tokenize " + mark, "prompt_count is given twice"},
		{"reserve_output twice", "", "reserve_output 10\nreserve_output 20 " + mark, "reserve_output is given twice"},
		{"self_service twice", "", "self_service /a\nself_service /b " + mark, "self_service is given twice"},
		{"max_body_size twice", "", "max_body_size 1MB\nmax_body_size 2MB " + mark, "max_body_size is given twice"},
		{"leeway twice", "", "jwt {\njwks https://i/j\nleeway 5s\nleeway 10s " + mark + "\n}", "leeway is given twice"},
		{"user_claim in two jwt blocks", "", "jwt {\njwks https://i/j\nuser_claim sub\n}\njwt {\njwks https://i/k\nuser_claim email " + mark + "\n}", "user_claim is given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := site(tt.global, tt.body)
			if tt.body == "" { // the directive's own line is at fault
				src = ":8080 {\n\tllm_gate now " + mark + "\n}\n"
			}
			checkError(t, src, tt.phrase)
		})
	}
}

// TestSecretNotEchoed checks that a refused secret stays out of the
// message, which ends up in logs and CI output.
func TestSecretNotEchoed(t *testing.T) {
	const secret = "hunter2-but-longer"
	_, err := adapt(site("", "jwt {\nsecret "+secret+"\n}"))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v; want an error without the secret", err)
	}
}

// TestOptionTwice checks that a second global llm_gate block is refused
// rather than silently replacing the first.
func TestOptionTwice(t *testing.T) {
	checkError(t, "{\n\tllm_gate {\n\t\tdb /a\n\t}\n\tllm_gate { "+mark+"\n\t\tdb /b\n\t}\n}\n", "llm_gate global option given twice")
	checkError(t, "{\n\tllm_gate /a "+mark+"\n}\n", `llm_gate: unexpected argument "/a"`)
}

// checkError adapts src and wants an error naming the marked line and
// holding phrase.
func checkError(t *testing.T, src, phrase string) {
	t.Helper()
	line := markedLine(t, src)
	_, err := adapt(src)
	if err == nil {
		t.Fatalf("adapted without error:\n%s", src)
	}
	msg := err.Error()
	if m := atLine.FindStringSubmatch(msg); m == nil || m[1] != strconv.Itoa(line) {
		t.Errorf("error does not name Caddyfile:%d: %v", line, msg)
	}
	if !strings.Contains(msg, phrase) {
		t.Errorf("error lacks %q: %v", phrase, msg)
	}
}
