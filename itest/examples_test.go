package itest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/golang-jwt/jwt/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	bolt "go.etcd.io/bbolt"

	"github.com/llmgate/llmgate/internal/testcaddy"
	"github.com/llmgate/llmgate/internal/vllmsim"
)

// examplesDir holds one directory per example, each with a README.md and
// a Caddyfile or a caddy.json.
const examplesDir = "../examples"

// The examples' identity provider, as their configs name it.
const (
	idpIssuer   = "https://idp.example.com"
	idpAudience = "vllm"
)

// idpKeys are the signing keys of the test identity provider, made once:
// an RSA key is slow to generate.
var idpKeys = sync.OnceValues(func() (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return rk, ek
})

// testIdP is an identity provider publishing an RSA and an EC key as a
// JWKS over HTTP, as the examples' `jwks` expects.
type testIdP struct {
	url string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

func newIdP(t *testing.T) *testIdP {
	t.Helper()
	p := &testIdP{}
	p.rsa, p.ec = idpKeys()
	ecPub, err := p.ec.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	point := ecPub.Bytes() // 0x04 || X || Y
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
			"n": b64(p.rsa.N.Bytes()), "e": b64(big.NewInt(int64(p.rsa.E)).Bytes())},
		{"kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256",
			"x": b64(point[1:33]), "y": b64(point[33:])},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL + "/.well-known/jwks.json"
	return p
}

// mint signs a token for user as the IdP would (issuer, audience, an
// hour's lifetime) with the key of alg; extra claims are added last.
func (p *testIdP) mint(t *testing.T, alg, user string, extra jwt.MapClaims) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": user, "iss": idpIssuer, "aud": idpAudience,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		claims[k] = v
	}
	var (
		tok *jwt.Token
		key any
	)
	switch alg {
	case "RS256":
		tok, key = jwt.NewWithClaims(jwt.SigningMethodRS256, claims), p.rsa
		tok.Header["kid"] = "rsa-1"
	case "ES256":
		tok, key = jwt.NewWithClaims(jwt.SigningMethodES256, claims), p.ec
		tok.Header["kid"] = "ec-1"
	case "HS256": // a forgery: the IdP publishes no HMAC key
		tok, key = jwt.NewWithClaims(jwt.SigningMethodHS256, claims), []byte(testSecret)
		tok.Header["kid"] = "ec-1"
	default:
		t.Fatalf("mint: unknown algorithm %s", alg)
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exampleWorld is the environment the examples read, all of it under the
// test's temporary directory.
type exampleWorld struct {
	idp       *testIdP
	vllmKey   string
	accessLog string
}

// setExampleEnv sets every variable the examples use. XDG_DATA_HOME moves
// Caddy's data dir, and with it the gate's default database, into the
// test's directory.
func setExampleEnv(t *testing.T) *exampleWorld {
	t.Helper()
	tmp := t.TempDir()
	w := &exampleWorld{
		idp:       newIdP(t),
		vllmKey:   "vllm-upstream-key-" + fmt.Sprint(time.Now().UnixNano()),
		accessLog: filepath.Join(tmp, "access.log"),
	}
	t.Setenv("LLM_GATE_JWKS_URL", w.idp.url)
	t.Setenv("LLM_GATE_JWT_SECRET", testSecret)
	t.Setenv("VLLM_API_KEY", w.vllmKey)
	t.Setenv("LLM_GATE_DB", filepath.Join(tmp, "env-db", "llm_gate.db"))
	t.Setenv("LLM_GATE_ACCESS_LOG", w.accessLog)
	t.Setenv("XDG_DATA_HOME", filepath.Join(tmp, "data"))
	t.Setenv("VLLM_URL", "127.0.0.1:1") // each serving test points it at its emulator
	return w
}

// useStorage points Caddy's default certificate storage (fixed at init
// from the home directory) at dir for the test, so that nothing a test
// issues lands in the user's data dir.
func useStorage(t *testing.T, dir string) {
	t.Helper()
	old := caddy.DefaultStorage.Path
	caddy.DefaultStorage.Path = dir
	t.Cleanup(func() { caddy.DefaultStorage.Path = old })
}

// exampleConfig returns an example's config as JSON: its Caddyfile
// adapted (failing on any adapter warning, such as an unformatted file), or
// its caddy.json.
func exampleConfig(t *testing.T, dir string) []byte {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(dir, "Caddyfile")); err == nil {
		cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(b,
			map[string]any{"filename": filepath.Join(dir, "Caddyfile")})
		if err != nil {
			t.Fatalf("adapting %s/Caddyfile: %v", dir, err)
		}
		for _, w := range warnings {
			t.Errorf("adapting %s/Caddyfile: warning: %s", dir, w)
		}
		return cfg
	}
	b, err := os.ReadFile(filepath.Join(dir, "caddy.json"))
	if err != nil {
		t.Fatalf("%s has neither a Caddyfile nor a caddy.json: %v", dir, err)
	}
	return b
}

// validate is `caddy validate`: decode strictly, provision every module,
// clean up.
func validate(cfgJSON []byte) error {
	var cfg caddy.Config
	if err := caddy.StrictUnmarshalJSON(cfgJSON, &cfg); err != nil {
		return fmt.Errorf("decoding the config: %w", err)
	}
	return caddy.Validate(&cfg)
}

// gateDB is the database file a config would open: its llm_gate db, or the
// default in Caddy's data dir.
func gateDB(t *testing.T, cfgJSON []byte) string {
	t.Helper()
	var cfg struct {
		Apps struct {
			Gate *struct {
				DB string `json:"db"`
			} `json:"llm_gate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Apps.Gate != nil && cfg.Apps.Gate.DB != "" {
		return cfg.Apps.Gate.DB
	}
	return filepath.Join(caddy.AppDataDir(), "llm_gate", "llm_gate.db")
}

// TestExamplesValidate: every example adapts without warnings and passes
// `caddy validate` (its JWKS fetched from a test IdP), and validation never
// opens the database: the file is not created, and validation succeeds
// while another holder has it locked, as it is while Caddy serves.
func TestExamplesValidate(t *testing.T) {
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	for _, want := range []string{"dev", "public", "teams", "remote-admin"} {
		if !slices.Contains(names, want) {
			t.Errorf("example %s is missing from %s (found %v)", want, examplesDir, names)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			setExampleEnv(t)
			useStorage(t, t.TempDir())
			dir := filepath.Join(examplesDir, name)
			if fi, err := os.Stat(filepath.Join(dir, "README.md")); err != nil || fi.Size() == 0 {
				t.Errorf("%s has no README.md", dir)
			}
			cfg := exampleConfig(t, dir)
			db := gateDB(t, cfg)
			if !strings.HasPrefix(db, os.TempDir()) {
				t.Fatalf("the database %s is outside the test's directory; the example should take it from LLM_GATE_DB or the data dir", db)
			}

			if err := validate(cfg); err != nil {
				t.Fatalf("validate: %v", err)
			}
			if _, err := os.Stat(db); !os.IsNotExist(err) {
				t.Fatalf("validation touched the database %s (stat: %v)", db, err)
			}

			// Hold the file as a running Caddy would, then validate again.
			if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
				t.Fatal(err)
			}
			held, err := bolt.Open(db, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			done := make(chan error, 1)
			go func() { done <- validate(cfg) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("validate while the database is held: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("validation blocks while another holder has the database open")
			}
		})
	}
}

// serveExample runs an example's Caddyfile in this process in front of an
// emulator configured as sim. Only what a test cannot use is changed: the
// site address siteAddr becomes http://127.0.0.1:{HTTP}, and the global
// options get free admin, HTTP and HTTPS ports (replacing the example's
// own) and no config autosave. Everything else is the example as shipped.
func serveExample(t *testing.T, name, siteAddr string, sim vllmsim.Config) *env {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(examplesDir, name, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	global, globalDone, siteFound := false, false, false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case !globalDone && !global && line == "{":
			global = true
			out = append(out, line, "\tadmin 127.0.0.1:{ADMIN}", "\thttp_port {HTTP}",
				"\thttps_port {HTTPS}", "\tpersist_config off")
			continue
		case global && line == "}":
			global, globalDone = false, true
		case global && (strings.HasPrefix(line, "\tadmin ") || strings.HasPrefix(line, "\thttp_port ") ||
			strings.HasPrefix(line, "\thttps_port ")):
			continue
		case line == siteAddr+" {":
			line, siteFound = "http://127.0.0.1:{HTTP} {", true
		}
		out = append(out, line)
	}
	if !globalDone || !siteFound {
		t.Fatalf("examples/%s/Caddyfile: global options block found: %v, site %q found: %v", name, globalDone, siteAddr, siteFound)
	}

	// Even an HTTP-only config starts the tls app, which keeps its storage
	// clean under a lock.
	useStorage(t, t.TempDir())
	e := &env{t: t, sim: vllmsim.New(sim)}
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	e.simURL = srv.URL
	t.Setenv("VLLM_URL", srv.URL)
	e.caddy = testcaddy.Start(t, strings.Join(out, "\n"), nil)
	e.base = e.caddy.HTTP
	return e
}

// waitLogEntry polls a JSON access log until an entry satisfies match:
// Caddy writes the entry just after the response.
func waitLogEntry(t *testing.T, path string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		for _, line := range bytes.Split(b, []byte("\n")) {
			var entry map[string]any
			if json.Unmarshal(line, &entry) == nil && match(entry) {
				return entry
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching entry in the access log %s:\n%s", path, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logNumber reads a numeric access-log field, which log_append writes as
// a number or a string depending on the placeholder's type.
func logNumber(v any) float64 {
	var f float64
	fmt.Sscan(fmt.Sprint(v), &f)
	return f
}

// TestExamplesPublic serves examples/public: JWTs from the IdP's JWKS in
// both allowed algorithms, the plan claim, API keys from the admin API,
// vLLM's own key added upstream, and the access log fields.
func TestExamplesPublic(t *testing.T) {
	w := setExampleEnv(t)
	e := serveExample(t, "public", "llm.example.com",
		vllmsim.Config{APIKey: w.vllmKey, ModelNames: []string{"llama-3.1-8b-instruct"}})
	const model = "llama-3.1-8b-instruct"

	// The emulator demands vLLM's key: a 200 means header_up replaced the
	// caller's credential with it.
	var jwts []string
	for _, alg := range []string{"ES256", "RS256"} {
		tok := w.idp.mint(t, alg, "alice-"+alg, jwt.MapClaims{"plan": "pro"})
		jwts = append(jwts, tok)
		mustStatus(t, e.post("/v1/chat/completions", tok, chatBody(model, false, nil)), 200)
	}

	refused := []struct {
		name string
		tok  string
	}{
		{"wrong audience", w.idp.mint(t, "ES256", "mallory", jwt.MapClaims{"aud": "other"})},
		{"wrong issuer", w.idp.mint(t, "ES256", "mallory", jwt.MapClaims{"iss": "https://evil.example.com"})},
		{"HS256 not allowed", w.idp.mint(t, "HS256", "mallory", nil)},
		{"expired", w.idp.mint(t, "RS256", "mallory", jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})},
	}
	for _, r := range refused {
		b := mustStatus(t, e.post("/v1/chat/completions", r.tok, chatBody(model, false, nil)), 401)
		if code := decodeError(t, b).Error.Code; code != "invalid_api_key" {
			t.Errorf("%s: code %q, want invalid_api_key", r.name, code)
		}
	}

	// An API key issued through the admin API, sent as x-api-key.
	if st := e.admin("PUT", "/llm_gate/users/ci-bot", map[string]any{"plan": "free"}, nil); st != 200 && st != 201 {
		t.Fatalf("PUT user: %d", st)
	}
	var key struct{ ID, Key string }
	if st := e.admin("POST", "/llm_gate/users/ci-bot/keys", map[string]any{"name": "ci"}, &key); st != 201 {
		t.Fatalf("POST key: %d", st)
	}
	mustStatus(t, e.post("/v1/chat/completions", "", chatBody(model, true, nil), "x-api-key", key.Key), 200)

	// The Go snippet of docs/CLIENTS.md, with that key: a stream that
	// asks for usage gets it.
	client := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(key.Key))
	stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
		Model:         model,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello!")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var text strings.Builder
	var usage openai.CompletionUsage
	for stream.Next() {
		chunk := stream.Current()
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
		}
		if chunk.Usage.TotalTokens > 0 {
			usage = chunk.Usage
		}
	}
	if err := stream.Err(); err != nil || text.Len() == 0 || usage.CompletionTokens <= 0 {
		t.Fatalf("openai-go stream: err %v, text %q, usage %+v", err, text.String(), usage)
	}

	// Self-service shows the plan the claim chose.
	var me struct{ User, Plan string }
	if err := jsonDecode(e.get("/llm_gate/me", jwts[0]), &me); err != nil || me.User != "alice-ES256" || me.Plan != "pro" {
		t.Fatalf("self-service: %+v, %v", me, err)
	}

	for _, r := range e.sim.Requests() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+w.vllmKey {
			t.Errorf("vLLM saw Authorization %q, want its own key", got)
		}
		if r.Header.Get("X-Api-Key") != "" {
			t.Error("the caller's x-api-key reached vLLM")
		}
	}

	// The access log names who used what, and how much.
	entry := waitLogEntry(t, w.accessLog, func(m map[string]any) bool { return m["llm_user"] == "alice-ES256" })
	if entry["llm_plan"] != "pro" || entry["llm_model"] != model || entry["llm_key_id"] != "" ||
		logNumber(entry["llm_prompt_tokens"]) <= 0 || logNumber(entry["llm_completion_tokens"]) <= 0 {
		t.Errorf("access log entry of a JWT request: %v", entry)
	}
	entry = waitLogEntry(t, w.accessLog, func(m map[string]any) bool { return m["llm_user"] == "ci-bot" })
	if entry["llm_plan"] != "free" || entry["llm_key_id"] != key.ID || logNumber(entry["llm_completion_tokens"]) <= 0 {
		t.Errorf("access log entry of an API-key request: %v", entry)
	}
	log, _ := os.ReadFile(w.accessLog)
	for _, secret := range append(jwts, key.Key, w.vllmKey) {
		if bytes.Contains(log, []byte(secret)) {
			t.Errorf("the access log holds a credential (%.12s…)", secret)
		}
	}
}

// TestExamplesTeams serves examples/teams: the team_plan claim picks the
// tier and its models, token_limit replaces the budget of the tier's
// largest window, and API keys are refused.
func TestExamplesTeams(t *testing.T) {
	w := setExampleEnv(t)
	e := serveExample(t, "teams", "llm.example.com", vllmsim.Config{
		ModelNames: []string{"llama-3.1-8b-instruct", "qwen-2.5-7b-instruct", "mistral-large"}})

	models := []struct {
		plan  string // team_plan claim; "" = none
		model string
		want  int
	}{
		{"", "llama-3.1-8b-instruct", 200},
		{"", "qwen-2.5-7b-instruct", 403},
		{"free", "qwen-2.5-7b-instruct", 403},
		{"no-such-tier", "qwen-2.5-7b-instruct", 403}, // falls back to default_plan free
		{"pro", "qwen-2.5-7b-instruct", 200},
		{"pro", "mistral-large", 403},
		{"enterprise", "mistral-large", 200},
	}
	for _, c := range models {
		claims := jwt.MapClaims{}
		if c.plan != "" {
			claims["team_plan"] = c.plan
		}
		tok := w.idp.mint(t, "RS256", "member-"+c.plan, claims)
		b := mustStatus(t, e.post("/v1/chat/completions", tok, chatBody(c.model, false, nil)), c.want)
		if c.want == 403 {
			if code := decodeError(t, b).Error.Code; code != "model_not_allowed" {
				t.Errorf("plan %q, model %s: code %q", c.plan, c.model, code)
			}
		}
	}

	// The token limits self-service reports, by kind and window.
	limits := func(user string, claims jwt.MapClaims) (plan string, byWindow map[string]int64) {
		t.Helper()
		var me struct {
			Plan    string
			Windows []struct {
				Window, Kind string
				Limit        int64
			}
		}
		if err := jsonDecode(e.get("/llm_gate/me", w.idp.mint(t, "ES256", user, claims)), &me); err != nil {
			t.Fatal(err)
		}
		byWindow = map[string]int64{}
		for _, w := range me.Windows {
			byWindow[w.Kind+"/"+w.Window] = w.Limit
		}
		return me.Plan, byWindow
	}
	budgets := []struct {
		user   string
		claims jwt.MapClaims
		plan   string
		want   map[string]int64 // limits that must hold
	}{
		{"dana", jwt.MapClaims{"team_plan": "pro"}, "pro",
			map[string]int64{"tokens/month": 2_000_000, "tokens/minute": 100_000, "requests/minute": 120}},
		{"dana", jwt.MapClaims{"team_plan": "pro", "token_limit": 12345}, "pro",
			map[string]int64{"tokens/month": 12345, "tokens/minute": 100_000}},
		{"erin", jwt.MapClaims{"token_limit": "777"}, "free",
			map[string]int64{"tokens/day": 777, "tokens/minute": 10_000}},
		{"frank", jwt.MapClaims{"team_plan": "enterprise", "token_limit": 20_000_000}, "enterprise",
			map[string]int64{"tokens/month": 20_000_000, "requests/minute": 1000}},
	}
	for _, c := range budgets {
		plan, got := limits(c.user, c.claims)
		if plan != c.plan {
			t.Errorf("%s %v: plan %q, want %q", c.user, c.claims, plan, c.plan)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s %v: %s limit %d, want %d (all: %v)", c.user, c.claims, k, got[k], v, got)
			}
		}
	}

	// api_keys off: even a key the admin API issued is refused.
	if st := e.admin("PUT", "/llm_gate/users/script", map[string]any{"plan": "pro"}, nil); st != 200 && st != 201 {
		t.Fatalf("PUT user: %d", st)
	}
	var key struct{ Key string }
	if st := e.admin("POST", "/llm_gate/users/script/keys", map[string]any{"name": "x"}, &key); st != 201 {
		t.Fatalf("POST key: %d", st)
	}
	mustStatus(t, e.post("/v1/chat/completions", key.Key, chatBody("llama-3.1-8b-instruct", false, nil)), 401)
}

// TestExamplesDev serves examples/dev with a token minted from
// LLM_GATE_JWT_SECRET, as `make run` prints one.
func TestExamplesDev(t *testing.T) {
	setExampleEnv(t)
	e := serveExample(t, "dev", "http://localhost:8080", vllmsim.Config{})
	tok := token(t, "dev-user", nil) // HS256 with testSecret = LLM_GATE_JWT_SECRET
	mustStatus(t, e.post("/v1/chat/completions", tok, chatBody("sim-model", true, nil)), 200)
	var me struct{ Plan string }
	if err := jsonDecode(e.get("/llm_gate/me", tok), &me); err != nil || me.Plan != "dev" {
		t.Fatalf("self-service: plan %q, %v", me.Plan, err)
	}
}

// The README's commands for the billing service's client certificate; the
// test runs them when openssl is installed.
const (
	readmeCertCmd = `openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ` +
		`-keyout billing.key -out billing.crt -days 365 -subj "/CN=billing" -addext "extendedKeyUsage=clientAuth"`
	readmeB64Cmd = `openssl x509 -in billing.crt -outform DER | openssl base64 -A`
)

// billingCert makes the billing service's key pair in dir with the
// README's openssl commands, or in Go where openssl is missing, and
// returns it with the base64 DER certificate that goes into public_keys.
func billingCert(t *testing.T, dir string) (tls.Certificate, string) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(examplesDir, "remote-admin", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes", `-subj "/CN=billing"`,
		`-addext "extendedKeyUsage=clientAuth"`, readmeB64Cmd} {
		if !bytes.Contains(readme, []byte(cmd)) {
			t.Errorf("remote-admin/README.md no longer shows %q; keep the test's commands in step", cmd)
		}
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Logf("openssl not found; making the client certificate in Go")
		return selfSignedClientCert(t, "billing")
	}
	run := func(script string) []byte {
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		return out
	}
	run(readmeCertCmd)
	b64 := strings.TrimSpace(string(run(readmeB64Cmd)))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "billing.crt"), filepath.Join(dir, "billing.key"))
	if err != nil {
		t.Fatal(err)
	}
	return cert, b64
}

// selfSignedClientCert makes a self-signed ECDSA client certificate.
func selfSignedClientCert(t *testing.T, cn string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, base64.StdEncoding.EncodeToString(der)
}

// jsonPath walks nested JSON objects.
func jsonPath(t *testing.T, v any, keys ...string) map[string]any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("caddy.json: %s is not an object", k)
		}
		v = m[k]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("caddy.json: %v is not an object", keys)
	}
	return m
}

// TestExamplesRemoteAdmin runs examples/remote-admin/caddy.json with the
// billing certificate made as its README says: over mutual TLS the billing
// service reads usage, records and plans, and nothing else; other clients
// do not get past the handshake.
func TestExamplesRemoteAdmin(t *testing.T) {
	w := setExampleEnv(t)
	storage := t.TempDir()
	useStorage(t, storage)
	billing, billingB64 := billingCert(t, t.TempDir())

	raw, err := os.ReadFile(filepath.Join(examplesDir, "remote-admin", "caddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}

	// What the README has the operator fill in: the certificate.
	admin := jsonPath(t, cfg, "admin")
	remote := jsonPath(t, admin, "remote")
	acl := remote["access_control"].([]any)[0].(map[string]any)
	if keys := acl["public_keys"].([]any); len(keys) != 1 || keys[0] != "REPLACE_WITH_BILLING_CERT_BASE64_DER" {
		t.Fatalf("public_keys %v: the README's jq command replaces REPLACE_WITH_BILLING_CERT_BASE64_DER", keys)
	}
	acl["public_keys"] = []any{billingB64}

	// What a test cannot use: fixed ports, the public site's certificate,
	// vLLM on localhost:8000, config autosave.
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	remoteAddr := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	gateAddr := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	admin["listen"] = adminAddr
	admin["config"] = map[string]any{"persist": false}
	remote["listen"] = remoteAddr
	server := jsonPath(t, cfg, "apps", "http", "servers", "gate")
	server["listen"] = []any{gateAddr}
	server["automatic_https"] = map[string]any{"disable": true}
	sim := vllmsim.New(vllmsim.Config{APIKey: w.vllmKey})
	simSrv := httptest.NewServer(sim)
	t.Cleanup(simSrv.Close)
	route := server["routes"].([]any)[0].(map[string]any)
	proxy := route["handle"].([]any)[1].(map[string]any)
	proxy["upstreams"] = []any{map[string]any{"dial": strings.TrimPrefix(simSrv.URL, "http://")}}

	live, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(live, true); err != nil {
		t.Fatalf("loading the example: %v", err)
	}
	t.Cleanup(func() {
		// A config without admin.remote stops the remote listener, which
		// caddy.Stop leaves running.
		_ = caddy.Load([]byte(`{"admin":{"listen":"`+adminAddr+`","config":{"persist":false}}}`), true)
		_ = caddy.Stop()
	})

	// The billing service trusts Caddy's local CA, which issued the admin
	// endpoint's identity certificate for admin.llm.example.com.
	root, err := os.ReadFile(filepath.Join(storage, "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatalf("Caddy's local root: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(root) {
		t.Fatal("root.crt holds no certificate")
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "admin.llm.example.com", Certificates: certs},
		}}
	}
	billingClient := client(billing)
	get := func(c *http.Client, method, path string) (int, []byte, error) {
		req, _ := http.NewRequest(method, "https://"+remoteAddr+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		b := readAll(t, resp.Body)
		return resp.StatusCode, b, nil
	}

	// The identity certificate is issued in the background at start; wait
	// for it before anything can fail, so that no issuance outlives the
	// test's storage.
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, b, err := get(billingClient, "GET", "/llm_gate/plans")
		if err == nil {
			if st != 200 || !bytes.Contains(b, []byte(`"pro"`)) {
				t.Fatalf("GET /llm_gate/plans: %d %s", st, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote admin endpoint: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Some usage for billing to read.
	req, _ := http.NewRequest("POST", "http://"+gateAddr+"/v1/chat/completions",
		strings.NewReader(mustJSON(t, chatBody("sim-model", false, nil))))
	req.Host = "llm.example.com"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+w.idp.mint(t, "ES256", "alice", nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, resp, 200)

	// Usage is committed within flush_interval (1s).
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, b, err := get(billingClient, "GET", "/llm_gate/usage?group_by=user")
		if err != nil || st != 200 {
			t.Fatalf("GET /llm_gate/usage: %d %s %v", st, b, err)
		}
		if bytes.Contains(b, []byte(`"alice"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage never shows alice: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, b, err := get(billingClient, "GET", "/llm_gate/requests?limit=5"); err != nil || st != 200 || !bytes.Contains(b, []byte(`"alice"`)) {
		t.Fatalf("GET /llm_gate/requests: %d %s %v", st, b, err)
	}

	// Read-only, and only those three.
	for _, c := range []struct{ method, path string }{
		{"GET", "/llm_gate/users"},
		{"GET", "/llm_gate/users/alice"},
		{"PUT", "/llm_gate/users/alice"},
		{"POST", "/llm_gate/users/alice/keys"},
		{"DELETE", "/llm_gate/keys/anything"},
		{"POST", "/llm_gate/plans"},
		{"GET", "/config/"},
		{"GET", "/reverse_proxy/upstreams"},
	} {
		st, b, err := get(billingClient, c.method, c.path)
		if err != nil || st != http.StatusForbidden {
			t.Errorf("billing %s %s: %d %s %v, want 403", c.method, c.path, st, b, err)
		}
	}

	// No certificate, or one not in public_keys: no connection at all.
	stranger, _ := selfSignedClientCert(t, "stranger")
	for name, c := range map[string]*http.Client{"no certificate": client(), "unknown certificate": client(stranger)} {
		if st, _, err := get(c, "GET", "/llm_gate/usage"); err == nil {
			t.Errorf("%s: answered %d, want a failed handshake", name, st)
		}
	}

	// The local admin endpoint is unchanged: loopback, full access.
	resp, err = http.Get("http://" + adminAddr + "/llm_gate/users")
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, resp, 200)
}
