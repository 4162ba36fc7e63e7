package admin_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/admin"
	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/internal/testcaddy"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// gateConfig is a Caddy with the llm_gate app and no site: the admin API
// must work without any site using the gate.
const gateConfig = `{
	admin 127.0.0.1:{ADMIN}
	http_port {HTTP}
	https_port {HTTPS}
	llm_gate {
		db {DB}
		flush_interval 1s
		# The records of the tests are dated 2025: keep them, or the
		# background pruner drops them within a second.
		retention 0
		plan free {
			tokens 1000 per day
			tokens 100 per minute
			requests 10 per minute
			max_parallel 2
			models llama-*
		}
		plan pro {
			tokens 500000 per month
		}
		default_plan free
	}
}
`

// env is a running Caddy and a client of its admin API.
type env struct {
	t    *testing.T
	in   *testcaddy.Instance
	db   string
	http *http.Client
}

// start runs Caddy with gateConfig on a fresh DB file (or the one given).
func start(t *testing.T, dbPath ...string) *env {
	t.Helper()
	db := filepath.Join(t.TempDir(), "gate.db")
	if len(dbPath) > 0 {
		db = dbPath[0]
	}
	in := testcaddy.Start(t, gateConfig, map[string]string{"{DB}": db})
	return &env{t: t, in: in, db: db, http: &http.Client{Timeout: 30 * time.Second}}
}

// app is the running config's llm_gate app.
func (e *env) app() *gate.App {
	e.t.Helper()
	v, err := caddy.ActiveContext().App("llm_gate")
	if err != nil {
		e.t.Fatal(err)
	}
	return v.(*gate.App)
}

func (e *env) state() *gate.State { return e.app().State() }

// do sends a request; body is sent as is when it is a string, else as JSON.
func (e *env) do(method, path string, body any) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.in.Admin+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// call sends a request, checks the status and decodes the JSON answer into
// out (when not nil).
func (e *env) call(method, path string, body any, want int, out any) []byte {
	e.t.Helper()
	status, _, data := e.do(method, path, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
	return data
}

// fails sends a request that must fail with status and Caddy's error shape.
func (e *env) fails(method, path string, body any, status int) string {
	e.t.Helper()
	got, hdr, data := e.do(method, path, body)
	if got != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, got, status, data)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("%s %s: error Content-Type %q", method, path, ct)
	}
	var m struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Error == "" {
		e.t.Fatalf("%s %s: error body %s is not {\"error\":…}: %v", method, path, data, err)
	}
	return m.Error
}

func TestUserLifecycle(t *testing.T) {
	e := start(t)

	// Create.
	var u admin.UserView
	e.call("PUT", "/llm_gate/users/alice", `{"plan":"pro","token_limit":5000,"period":"Day","models":["llama-*","qwen-*"]}`, 201, &u)
	if u.ID != "alice" || u.Plan != "pro" || u.Source != "admin" || u.Disabled {
		t.Fatalf("created %+v", u)
	}
	if *u.Overrides.Plan != "pro" || *u.Overrides.TokenLimit != 5000 || *u.Overrides.Period != "day" || u.Overrides.TokensPerMinute != nil {
		t.Errorf("overrides %+v", u.Overrides)
	}
	// pro has a month budget; token_limit with period day adds a day budget.
	wantTokens := []admin.WindowLimit{{"day", 5000}, {"month", 500000}}
	if !slices.Equal(u.Limits.Tokens, wantTokens) || !slices.Equal(u.Limits.Models, []string{"llama-*", "qwen-*"}) {
		t.Errorf("limits %+v", u.Limits)
	}
	if len(u.Windows) != 2 || u.Windows[0].Window != "day" || u.Windows[0].Remaining != 5000 || u.Windows[0].ResetsAt.IsZero() {
		t.Errorf("windows %+v", u.Windows)
	}
	created := u.Created

	// Get.
	var got admin.UserView
	e.call("GET", "/llm_gate/users/alice", nil, 200, &got)
	if got.ID != "alice" || got.Plan != "pro" || !got.Created.Equal(created) {
		t.Errorf("get %+v", got)
	}

	// Replace: absent fields go back to the plan; Created stays.
	e.call("PUT", "/llm_gate/users/alice", `{"tokens_per_minute":50,"disabled":true}`, 200, &u)
	if u.Overrides.Plan != nil || u.Overrides.TokenLimit != nil || u.Overrides.Models != nil || *u.Overrides.TokensPerMinute != 50 || !u.Disabled {
		t.Errorf("replaced overrides %+v disabled %v", u.Overrides, u.Disabled)
	}
	if u.Plan != "free" { // default_plan
		t.Errorf("replaced plan %q, want the default free", u.Plan)
	}
	if !u.Created.Equal(created) || !u.Updated.After(created) && !u.Updated.Equal(created) {
		t.Errorf("created %v → %v, updated %v", created, u.Created, u.Updated)
	}
	wantTokens = []admin.WindowLimit{{"minute", 50}, {"day", 1000}}
	if !slices.Equal(u.Limits.Tokens, wantTokens) || u.Limits.MaxParallel != 2 || !slices.Equal(u.Limits.Models, []string{"llama-*"}) {
		t.Errorf("replaced limits %+v", u.Limits)
	}

	// Patch: only the fields given change; null clears.
	e.call("PATCH", "/llm_gate/users/alice", `{"max_parallel":7,"disabled":false}`, 200, &u)
	if *u.Overrides.TokensPerMinute != 50 || *u.Overrides.MaxParallel != 7 || u.Disabled || u.Limits.MaxParallel != 7 {
		t.Errorf("patched %+v", u.Overrides)
	}
	e.call("PATCH", "/llm_gate/users/alice", `{"tokens_per_minute":null,"models":["x"],"plan":"pro"}`, 200, &u)
	if u.Overrides.TokensPerMinute != nil || *u.Overrides.MaxParallel != 7 || !slices.Equal(u.Overrides.Models, []string{"x"}) || u.Plan != "pro" {
		t.Errorf("patched with null %+v", u.Overrides)
	}
	e.call("PATCH", "/llm_gate/users/alice", `{"models":[],"plan":null,"max_parallel":null}`, 200, &u)
	if u.Overrides.Models != nil || u.Overrides.Plan != nil || u.Overrides.MaxParallel != nil || u.Plan != "free" {
		t.Errorf("cleared %+v", u.Overrides)
	}
	// An empty PATCH changes nothing but is no error.
	e.call("PATCH", "/llm_gate/users/alice", "", 200, &u)
	// What the API answers is what the gate sees.
	stored, err := e.state().User("alice")
	if err != nil || stored.MaxParallel != nil || stored.Source != "admin" {
		t.Errorf("state sees %+v, %v", stored, err)
	}
	e.fails("PATCH", "/llm_gate/users/nobody", `{"disabled":true}`, 404)

	// Delete.
	var del struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}
	e.call("DELETE", "/llm_gate/users/alice", nil, 200, &del)
	if del.ID != "alice" || !del.Deleted {
		t.Errorf("delete answered %+v", del)
	}
	e.fails("GET", "/llm_gate/users/alice", nil, 404)
	e.fails("DELETE", "/llm_gate/users/alice", nil, 404)
	if _, err := e.state().User("alice"); err == nil {
		t.Error("the state still has the deleted user")
	}
}

func TestPatchMakesJWTUserAdmins(t *testing.T) {
	e := start(t)
	// A user created by its first JWT request.
	if _, err := e.state().EnsureUser(&store.User{ID: "jwt-user", Plan: "pro", Source: "jwt"}); err != nil {
		t.Fatal(err)
	}
	var u admin.UserView
	e.call("PATCH", "/llm_gate/users/jwt-user", `{"disabled":true}`, 200, &u)
	if u.Source != "jwt" || !u.Disabled {
		t.Errorf("patching disabled: source %q disabled %v", u.Source, u.Disabled)
	}
	e.call("PATCH", "/llm_gate/users/jwt-user", `{"plan":"free"}`, 200, &u)
	if u.Source != "admin" || u.Plan != "free" {
		t.Errorf("patching the plan: source %q plan %q; the admin's plan must outrank claims", u.Source, u.Plan)
	}
	// Resolve now prefers the admin's plan to a claim.
	stored, _ := e.state().User("jwt-user")
	if eff := e.app().Resolve(stored, "", gate.Claims{Plan: "pro"}); eff.Plan != "free" {
		t.Errorf("resolved plan %q", eff.Plan)
	}
}

func TestUserBodyErrors(t *testing.T) {
	e := start(t)
	e.call("PUT", "/llm_gate/users/bob", `{}`, 201, nil)
	bodies := []struct {
		name, body, want string
	}{
		{"unknown field", `{"plan":"pro","tokens":5}`, `unknown field "tokens"`},
		{"unknown plan", `{"plan":"gold"}`, `unknown plan "gold"`},
		{"bad period", `{"period":"fortnight"}`, "period"},
		{"negative token_limit", `{"token_limit":-1}`, "token_limit"},
		{"fractional token_limit", `{"token_limit":1.5}`, "token_limit"},
		{"string token_limit", `{"token_limit":"5"}`, "token_limit"},
		{"negative tokens_per_minute", `{"tokens_per_minute":-5}`, "tokens_per_minute"},
		{"negative requests_per_minute", `{"requests_per_minute":-5}`, "requests_per_minute"},
		{"negative max_parallel", `{"max_parallel":-1}`, "max_parallel"},
		{"models not a list", `{"models":"llama"}`, "models"},
		{"empty model", `{"models":["a",""]}`, "empty model"},
		{"bad glob", `{"models":["[a"]}`, "bad glob"},
		{"disabled not bool", `{"disabled":"yes"}`, "disabled"},
		{"plan not string", `{"plan":5}`, "plan"},
		{"period not string", `{"period":5}`, "period"},
		{"not an object", `[1,2]`, "JSON object"},
		{"null body", `null`, "JSON object"},
		{"broken JSON", `{"plan":`, "JSON object"},
		{"trailing data", `{"plan":"pro"} {}`, "after its JSON object"},
		{"minute tokens twice", `{"token_limit":5,"period":"minute","tokens_per_minute":100}`, "give one of them"},
	}
	for _, b := range bodies {
		for _, method := range []string{"PUT", "PATCH"} {
			t.Run(method+" "+b.name, func(t *testing.T) {
				msg := e.fails(method, "/llm_gate/users/bob", b.body, 400)
				if !strings.Contains(msg, b.want) {
					t.Errorf("error %q does not mention %q", msg, b.want)
				}
			})
		}
	}
	// Nor when the other half is stored already.
	e.call("PUT", "/llm_gate/users/carl", `{"tokens_per_minute":100}`, 201, nil)
	if msg := e.fails("PATCH", "/llm_gate/users/carl", `{"token_limit":5,"period":"minute"}`, 400); !strings.Contains(msg, "give one of them") {
		t.Errorf("PATCH setting the minute twice: %q", msg)
	}
	e.call("PATCH", "/llm_gate/users/carl", `{"token_limit":5,"period":"minute","tokens_per_minute":null}`, 200, nil)
	// Nothing of the refused bodies was written.
	var u admin.UserView
	e.call("GET", "/llm_gate/users/bob", nil, 200, &u)
	if o := u.Overrides; o.Plan != nil || o.TokenLimit != nil || o.Period != nil || o.TokensPerMinute != nil ||
		o.RequestsPerMinute != nil || o.MaxParallel != nil || o.Models != nil || u.Disabled {
		t.Errorf("a refused body changed the user: %+v", u.Overrides)
	}
	// A refused PUT does not create the user.
	e.fails("PUT", "/llm_gate/users/carol", `{"plan":"gold"}`, 400)
	e.fails("GET", "/llm_gate/users/carol", nil, 404)

	t.Run("too large", func(t *testing.T) {
		big := `{"models":["` + strings.Repeat("a", 1<<20) + `"]}`
		e.fails("PUT", "/llm_gate/users/bob", big, 413)
	})
}

func TestUserIDs(t *testing.T) {
	e := start(t)
	// Any printable id works once escaped, including '%', '?', '#', '/' and
	// spaces inside.
	for _, id := range []string{"a b", "ümlaut", "x%y", "q?x=1", "h#1", "dots.and-dashes_1", "user@example.com", "repo:octo/app:ref:refs/heads/main", "a/keys"} {
		p := "/llm_gate/users/" + url.PathEscape(id)
		var u admin.UserView
		e.call("PUT", p, `{}`, 201, &u)
		if u.ID != id {
			t.Errorf("PUT %s stored id %q, want %q", p, u.ID, id)
		}
		e.call("GET", p, nil, 200, &u)
		if u.ID != id {
			t.Errorf("GET %s got id %q", p, u.ID)
		}
	}
	bad := []string{
		"%20lead",                // leading space
		"trail%20",               // trailing space
		"ctl%01",                 // control character
		strings.Repeat("x", 300), // too long
		"%ff",                    // not UTF-8
	}
	for _, id := range bad {
		for _, c := range []struct{ method, suffix string }{
			{"GET", ""}, {"PUT", ""}, {"PATCH", ""}, {"DELETE", ""},
			{"GET", "/keys"}, {"POST", "/keys"}, {"POST", "/reset"},
		} {
			e.fails(c.method, "/llm_gate/users/"+id+c.suffix, `{}`, 400)
		}
	}
	// An empty id between slashes.
	e.fails("GET", "/llm_gate/users/%20/keys", nil, 400)
}

func TestRoutingErrors(t *testing.T) {
	e := start(t)
	e.call("PUT", "/llm_gate/users/u1", nil, 201, nil)
	notAllowed := []struct {
		method, path, allow string
	}{
		{"POST", "/llm_gate/users", "GET, HEAD, OPTIONS"},
		{"DELETE", "/llm_gate/users", "GET, HEAD, OPTIONS"},
		{"POST", "/llm_gate/users/u1", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"},
		{"PUT", "/llm_gate/users/u1/keys", "GET, HEAD, POST, OPTIONS"},
		{"GET", "/llm_gate/users/u1/reset", "POST, OPTIONS"},
		{"POST", "/llm_gate/keys/key_1", "GET, HEAD, DELETE, OPTIONS"},
		{"POST", "/llm_gate/usage", "GET, HEAD, OPTIONS"},
		{"DELETE", "/llm_gate/requests", "GET, HEAD, OPTIONS"},
		{"PUT", "/llm_gate/plans", "GET, HEAD, OPTIONS"},
	}
	for _, c := range notAllowed {
		status, hdr, data := e.do(c.method, c.path, nil)
		if status != 405 || hdr.Get("Allow") != c.allow || !bytes.Contains(data, []byte(`"error"`)) {
			t.Errorf("%s %s: %d Allow %q body %s; want 405 Allow %q", c.method, c.path, status, hdr.Get("Allow"), data, c.allow)
		}
	}
	for _, p := range []string{"/llm_gate/", "/llm_gate/nope", "/llm_gate/users/u1/nope", "/llm_gate/keys", "/llm_gate/users/u1/keys/x"} {
		e.fails("GET", p, nil, 404)
	}
	// A route that takes no query parameters refuses them rather than do
	// what it would do without: a "dry run" delete deletes nothing.
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/llm_gate/users/u1?dry_run=1"},
		{"GET", "/llm_gate/users/u1?fields=plan"},
		{"POST", "/llm_gate/users/u1/reset?window=day"},
		{"GET", "/llm_gate/users/u1/keys?limit=1"},
		{"DELETE", "/llm_gate/keys/key_1?force=1"},
	} {
		status, _, data := e.do(c.method, c.path, nil)
		if status != 400 || !bytes.Contains(data, []byte("takes none")) {
			t.Errorf("%s %s: %d %s; want 400 naming the parameter", c.method, c.path, status, data)
		}
	}
	e.call("GET", "/llm_gate/users/u1", nil, 200, nil)
	// A trailing slash is forgiven.
	e.call("GET", "/llm_gate/users/", nil, 200, nil)
	// HEAD works where GET does; OPTIONS answers the methods.
	if status, _, _ := e.do("HEAD", "/llm_gate/plans", nil); status != 200 {
		t.Errorf("HEAD plans: %d", status)
	}
	if status, hdr, _ := e.do("OPTIONS", "/llm_gate/users/u1", nil); status != 204 || !strings.Contains(hdr.Get("Allow"), "PATCH") {
		t.Errorf("OPTIONS: %d %q", status, hdr.Get("Allow"))
	}
}

func TestKeys(t *testing.T) {
	e := start(t)
	e.call("PUT", "/llm_gate/users/kim", nil, 201, nil)

	var k admin.NewKey
	before := time.Now().UTC().Add(-time.Second)
	status, hdr, data := e.do("POST", "/llm_gate/users/kim/keys", `{"name":"laptop","expires_in":"720h"}`)
	if status != 201 {
		t.Fatalf("create key: %d %s", status, data)
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
	}
	if err := json.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Key, "sk-") || !strings.HasPrefix(k.ID, "key_") || k.Name != "laptop" || k.User != "kim" ||
		!strings.HasPrefix(k.Key, k.Prefix) || len(k.Prefix) >= len(k.Key) || k.Created.Before(before) {
		t.Fatalf("new key %+v", k)
	}
	if k.ExpiresAt == nil || k.ExpiresAt.Sub(k.Created) != 720*time.Hour {
		t.Errorf("expires_at %v, created %v", k.ExpiresAt, k.Created)
	}
	// The gate finds the key by the hash of its secret.
	st := e.state()
	found, err := st.KeyByHash(auth.HashKey(k.Key))
	if err != nil || found.ID != k.ID || found.UserID != "kim" || !found.Active(time.Now()) {
		t.Fatalf("KeyByHash: %+v, %v", found, err)
	}

	// A second key, without expiry; days work as a unit.
	var k2, k3 admin.NewKey
	e.call("POST", "/llm_gate/users/kim/keys", "", 201, &k2)
	e.call("POST", "/llm_gate/users/kim/keys", `{"expires_in":"30d"}`, 201, &k3)
	if k2.ExpiresAt != nil || k2.Name != "" || k2.Key == k.Key || k3.ExpiresAt.Sub(k3.Created) != 30*24*time.Hour {
		t.Errorf("second key %+v, third %+v", k2, k3)
	}

	// Listing shows no secret and no hash.
	var list struct {
		Keys []admin.KeyView `json:"keys"`
	}
	raw := e.call("GET", "/llm_gate/users/kim/keys", nil, 200, &list)
	if len(list.Keys) != 3 || bytes.Contains(raw, []byte(k.Key)) || bytes.Contains(raw, []byte(k2.Key)) || bytes.Contains(raw, []byte(`"hash"`)) {
		t.Fatalf("list %s", raw)
	}
	for _, kv := range list.Keys {
		if kv.Status != "active" || kv.User != "kim" || kv.RevokedAt != nil {
			t.Errorf("listed %+v", kv)
		}
	}
	// The user's view lists them too, and never a secret.
	raw = e.call("GET", "/llm_gate/users/kim", nil, 200, nil)
	if bytes.Contains(raw, []byte(k.Key)) || !bytes.Contains(raw, []byte(k.ID)) {
		t.Errorf("user view %s", raw)
	}
	var one admin.KeyView
	e.call("GET", "/llm_gate/keys/"+k.ID, nil, 200, &one)
	if one.ID != k.ID || one.Name != "laptop" || one.Prefix != k.Prefix {
		t.Errorf("get key %+v", one)
	}

	// Revoke: the very next lookup sees it revoked (the cache was warm).
	var rev admin.KeyView
	e.call("DELETE", "/llm_gate/keys/"+k.ID, nil, 200, &rev)
	if rev.Status != "revoked" || rev.RevokedAt == nil {
		t.Errorf("revoked %+v", rev)
	}
	found, err = st.KeyByHash(auth.HashKey(k.Key))
	if err == nil && found.Active(time.Now()) {
		t.Fatal("a revoked key is still active for the gate")
	}
	// Revoking again keeps the first time.
	var again admin.KeyView
	e.call("DELETE", "/llm_gate/keys/"+k.ID, nil, 200, &again)
	if !again.RevokedAt.Equal(*rev.RevokedAt) {
		t.Errorf("second revoke moved the time: %v → %v", rev.RevokedAt, again.RevokedAt)
	}

	// A key past its expiry shows as expired.
	var short admin.NewKey
	e.call("POST", "/llm_gate/users/kim/keys", `{"name":"brief","expires_in":"1ns"}`, 201, &short)
	e.call("GET", "/llm_gate/keys/"+short.ID, nil, 200, &one)
	if one.Status != "expired" || one.RevokedAt != nil {
		t.Errorf("expired key %+v", one)
	}

	// Errors.
	e.fails("DELETE", "/llm_gate/keys/key_doesnotexist", nil, 404)
	e.fails("GET", "/llm_gate/keys/key_doesnotexist", nil, 404)
	e.fails("DELETE", "/llm_gate/keys/"+strings.Repeat("k", 300), nil, 400)
	e.fails("POST", "/llm_gate/users/nobody/keys", `{"name":"x"}`, 404)
	e.fails("GET", "/llm_gate/users/nobody/keys", nil, 404)
	for _, body := range []string{
		`{"name":"x","expires":"1h"}`, // unknown field
		`{"expires_in":"soon"}`,
		`{"expires_in":"-1h"}`,
		`{"expires_in":"0s"}`,
		`{"name":5}`,
		`{"name":"a\u0001b"}`,
		`{"name":"` + strings.Repeat("n", 300) + `"}`,
		`{"name":"x"} trailing`,
	} {
		e.fails("POST", "/llm_gate/users/kim/keys", body, 400)
	}
	// Errors speak JSON, not Go.
	for body, want := range map[string]string{
		`{"name":5}`:   "bad request body: name must be a string, not a JSON number",
		`["x"]`:        "bad request body: the body must be an object, not a JSON array",
		`{"name":"x"`:  "bad request body: unexpected EOF",
		`{"name":x}`:   "bad request body: invalid character 'x' looking for beginning of value",
		`{"nmae":"x"}`: `bad request body: unknown field "nmae"`,
	} {
		if got := e.fails("POST", "/llm_gate/users/kim/keys", body, 400); got != want {
			t.Errorf("POST keys %s: %q; want %q", body, got, want)
		}
	}
	if got := e.fails("PUT", "/llm_gate/users/kim", `[1]`, 400); got != "request body must be a JSON object, not a JSON array" {
		t.Errorf("PUT user [1]: %q", got)
	}

	// Deleting the user revokes every key at once.
	found2, _ := st.KeyByHash(auth.HashKey(k2.Key)) // warm the cache
	if found2 == nil || !found2.Active(time.Now()) {
		t.Fatal("second key not active")
	}
	e.call("DELETE", "/llm_gate/users/kim", nil, 200, nil)
	for _, secret := range []string{k2.Key, k3.Key, short.Key} {
		if f, err := st.KeyByHash(auth.HashKey(secret)); err == nil && f.Active(time.Now()) {
			t.Errorf("key of a deleted user is still active: %+v", f)
		}
	}
	e.call("GET", "/llm_gate/keys/"+k2.ID, nil, 200, &one)
	if one.Status != "revoked" {
		t.Errorf("key of deleted user: %+v", one)
	}
}

func TestResetAndWindows(t *testing.T) {
	e := start(t)
	e.call("PUT", "/llm_gate/users/rita", `{"requests_per_minute":5}`, 201, nil)
	st := e.state()
	stored, _ := st.User("rita")
	eff := e.app().Resolve(stored, "", gate.Claims{})
	for range 3 {
		res, err := st.Engine.Admit(quota.Request{User: "rita", Limits: eff.Limits, Prompt: 10, Output: 20})
		if err != nil {
			t.Fatal(err)
		}
		res.Settle(10, 20)
	}
	held, err := st.Engine.Admit(quota.Request{User: "rita", Limits: eff.Limits, Prompt: 5, Output: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Cancel()

	var u admin.UserView
	e.call("GET", "/llm_gate/users/rita", nil, 200, &u)
	byKey := map[string]admin.Window{}
	for _, w := range u.Windows {
		byKey[w.Kind+"/"+w.Window] = w
	}
	day := byKey["tokens/day"]
	if day.Limit != 1000 || day.Used != 90 || day.Reserved != 10 || day.Remaining != 900 || day.ResetsAt.IsZero() {
		t.Errorf("day window %+v", day)
	}
	if rpm := byKey["requests/minute"]; rpm.Limit != 5 || rpm.Used != 4 || rpm.Remaining != 1 {
		t.Errorf("requests window %+v", rpm)
	}
	if u.InFlight != 1 || u.Used.Tokens.Day != 90 || u.Used.Tokens.Total != 90 || u.Used.Tokens.Minute != 90 || u.Used.Requests.Month != 4 {
		t.Errorf("in flight %d used %v", u.InFlight, u.Used)
	}

	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if tok, _, err := usedInFile(st, "rita"); err != nil || tok[quota.Day] != 90 {
		t.Fatalf("usage in the file before the reset: %v, %v; want 90 tokens today", tok, err)
	}
	e.call("POST", "/llm_gate/users/rita/reset", nil, 200, &u)
	for _, w := range u.Windows {
		if w.Used != 0 {
			t.Errorf("after reset %+v", w)
		}
	}
	if u.InFlight != 1 {
		t.Errorf("reset dropped the request in flight: %d", u.InFlight)
	}
	// The reset is in the file when it is answered: a crash right after it
	// must not bring the usage back.
	if tok, req, err := usedInFile(st, "rita"); err != nil || tok[quota.Day] != 0 || req[quota.Month] != 0 {
		t.Errorf("usage in the file after the reset: tokens %v requests %v, %v; want none", tok, req, err)
	}
	e.fails("POST", "/llm_gate/users/nobody/reset", nil, 404)
}

// usedInFile reads a user's usage from the store's file, as the gate would
// after a restart.
func usedInFile(st *gate.State, user string) (tokens, requests [quota.NumWindows]int64, err error) {
	db, err := st.DB()
	if err != nil {
		return tokens, requests, err
	}
	return quota.NewEngine(quota.Options{Load: db.LoadCounters}).Usage(user)
}

func TestUsersPagination(t *testing.T) {
	// 1,050 users written straight to the file (no fsync) before Caddy
	// opens it.
	path := filepath.Join(t.TempDir(), "many.db")
	db, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1050
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("user-%04d", i)
		if err := db.PutUser(&store.User{ID: want[i], Source: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	e := start(t, path)

	type page struct {
		Users      []store.User `json:"users"`
		NextCursor string       `json:"next_cursor"`
	}
	for _, c := range []struct {
		limit     string
		pageSizes []int
	}{
		{"", repeatSizes(100, n)},
		{"1000", []int{1000, 50}},
		{"5000", []int{1000, 50}}, // clamped
		{"333", []int{333, 333, 333, 51}},
	} {
		seen := map[string]bool{}
		var order []string
		cursor := ""
		for i := 0; ; i++ {
			q := url.Values{}
			if c.limit != "" {
				q.Set("limit", c.limit)
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var p page
			e.call("GET", "/llm_gate/users?"+q.Encode(), nil, 200, &p)
			if i >= len(c.pageSizes) || len(p.Users) != c.pageSizes[i] {
				t.Fatalf("limit %q page %d: %d users", c.limit, i, len(p.Users))
			}
			for _, u := range p.Users {
				if seen[u.ID] {
					t.Fatalf("limit %q: %s seen twice", c.limit, u.ID)
				}
				seen[u.ID] = true
				order = append(order, u.ID)
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if !slices.Equal(order, want) {
			t.Errorf("limit %q: %d users, not every one once in order", c.limit, len(order))
		}
	}
	for _, q := range []string{"limit=0", "limit=-3", "limit=ten", "cursor=!!!", "page=2", "limit=1&limit=2"} {
		e.fails("GET", "/llm_gate/users?"+q, nil, 400)
	}
}

func repeatSizes(size, total int) []int {
	var out []int
	for total > 0 {
		out = append(out, min(size, total))
		total -= size
	}
	return out
}

// seedRecords commits records through the gate's state, the way the handler
// does.
func seedRecords(t *testing.T, st *gate.State, recs []store.Record) {
	t.Helper()
	for _, r := range recs {
		if err := st.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	// Not flushed: the admin API must commit pending usage itself.
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

var testRecords = []store.Record{
	{Time: at("2025-06-01T10:05:00Z"), User: "ann", KeyID: "key_a", Model: "llama", Endpoint: "/v1/chat/completions", Status: 200, PromptTokens: 10, CompletionTokens: 5, Duration: 1500 * time.Microsecond},
	{Time: at("2025-06-01T10:30:00Z"), User: "ann", Model: "qwen", Endpoint: "/v1/completions", Status: 200, PromptTokens: 20, CompletionTokens: 7, CachedTokens: 4},
	{Time: at("2025-06-01T11:00:00Z"), User: "ben", Model: "llama", Endpoint: "/v1/chat/completions", Status: 200, PromptTokens: 100, CompletionTokens: 50, Estimated: true},
	{Time: at("2025-06-02T09:00:00Z"), User: "ann", Model: "llama", Endpoint: "/v1/chat/completions", Status: 429, PromptTokens: 1, CompletionTokens: 2},
	{Time: at("2025-06-03T23:59:59Z"), User: "ben", Model: "qwen,\"odd\"", Endpoint: "/v1/embeddings", Status: 200, PromptTokens: 1000},
}

func TestUsage(t *testing.T) {
	e := start(t)
	seedRecords(t, e.state(), testRecords)

	type rows struct {
		Rows []store.UsageRow `json:"rows"`
	}
	var r rows
	e.call("GET", "/llm_gate/usage", nil, 200, &r)
	if len(r.Rows) != 1 || r.Rows[0].Requests != 5 || r.Rows[0].PromptTokens != 1131 || r.Rows[0].CompletionTokens != 64 ||
		r.Rows[0].TotalTokens != 1195 || r.Rows[0].CachedTokens != 4 || r.Rows[0].EstimatedRequests != 1 {
		t.Fatalf("totals %+v", r.Rows)
	}

	e.call("GET", "/llm_gate/usage?group_by=user,day", nil, 200, &r)
	got := []string{}
	for _, row := range r.Rows {
		got = append(got, fmt.Sprintf("%s %s %d %d", row.User, row.Day, row.Requests, row.TotalTokens))
	}
	want := []string{"ann 2025-06-01 2 42", "ann 2025-06-02 1 3", "ben 2025-06-01 1 150", "ben 2025-06-03 1 1000"}
	if !slices.Equal(got, want) {
		t.Errorf("group_by user,day:\n got %q\nwant %q", got, want)
	}

	// Filters; a date as until includes that day; RFC 3339 bounds.
	cases := []struct {
		query    string
		requests int64
	}{
		{"user=ann", 3},
		{"model=llama", 3},
		{"user=ann&model=llama", 2},
		{"since=2025-06-02", 2},
		{"until=2025-06-01", 3},
		{"since=2025-06-01&until=2025-06-01", 3},
		{"since=2025-06-03&until=2025-06-03", 1},
		{"since=2025-06-01T11:00:00Z", 3},
		{"until=2025-06-01T11:00:00Z", 2},
		{"since=2025-06-01T12:00:00%2B02:00&until=2025-06-01T11:00:00Z", 2}, // 10:00Z to 11:00Z
		{"user=nobody", 0},
		{"until=0001-01-01T00:00:00Z", 0},
		{"until=1969-12-31", 0},
	}
	for _, c := range cases {
		e.call("GET", "/llm_gate/usage?"+c.query, nil, 200, &r)
		var n int64
		for _, row := range r.Rows {
			n += row.Requests
		}
		if n != c.requests {
			t.Errorf("usage?%s: %d requests, want %d (%+v)", c.query, n, c.requests, r.Rows)
		}
	}

	// CSV: a header row, then one row per group, parseable.
	status, hdr, data := e.do("GET", "/llm_gate/usage?group_by=model,user&format=csv", nil)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %q %s", status, hdr.Get("Content-Type"), data)
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("csv does not parse: %v\n%s", err, data)
	}
	wantCSV := [][]string{
		{"model", "user", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "estimated_requests"},
		{"llama", "ann", "2", "11", "7", "18", "0", "0"},
		{"llama", "ben", "1", "100", "50", "150", "0", "1"},
		{"qwen", "ann", "1", "20", "7", "27", "4", "0"},
		{"qwen,\"odd\"", "ben", "1", "1000", "0", "1000", "0", "0"},
	}
	if fmt.Sprint(recs) != fmt.Sprint(wantCSV) {
		t.Errorf("csv:\n got %q\nwant %q", recs, wantCSV)
	}
	// Hours, and a CSV without grouping.
	e.call("GET", "/llm_gate/usage?group_by=hour&user=ann&since=2025-06-01&until=2025-06-01", nil, 200, &r)
	if len(r.Rows) != 1 || r.Rows[0].Hour != "2025-06-01T10:00:00Z" || r.Rows[0].Requests != 2 {
		t.Errorf("by hour %+v", r.Rows)
	}
	_, _, data = e.do("GET", "/llm_gate/usage?format=CSV", nil)
	if recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll(); err != nil || len(recs) != 2 || recs[1][0] != "5" {
		t.Errorf("plain csv %q %v", recs, err)
	}

	for _, q := range []string{
		"group_by=user,week", "since=yesterday", "until=2025-13-01", "since=2025-06-03&until=2025-06-01",
		"since=2025-06-02&until=2025-06-01", // a day before since: until's day ends where since's starts
		"format=xml", "users=ann", "user=%20x", "user=a&user=b",
		"user=", // empty: it must not widen the report to everyone
	} {
		e.fails("GET", "/llm_gate/usage?"+q, nil, 400)
	}
	e.fails("GET", "/llm_gate/requests?user=", nil, 400)

	// A user id (a JWT's subject) shaped like a spreadsheet formula is
	// written as text.
	seedRecords(t, e.state(), []store.Record{{Time: time.Date(2025, 6, 4, 9, 0, 0, 0, time.UTC), User: `=HYPERLINK("x")`, Model: "@m", Endpoint: "chat", Status: 200, PromptTokens: 1}})
	_, _, data = e.do("GET", "/llm_gate/usage?group_by=user,model&since=2025-06-04&format=csv", nil)
	if recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll(); err != nil || len(recs) != 2 || recs[1][0] != `'=HYPERLINK("x")` || recs[1][1] != "'@m" {
		t.Errorf("formula cells %q %v", recs, err)
	}
	if msg := e.fails("GET", "/llm_gate/usage?since=2025-06-03&until=2025-06-01", nil, 400); msg != "since 2025-06-03 is after until 2025-06-01" {
		t.Errorf("reversed range: %q names other bounds than those sent", msg)
	}
	// Bounds inside an hour are refused, naming the hours around them:
	// [10:00, 10:20) and [10:20, 11:00) would each count all of 10:00's
	// requests.
	for _, q := range []string{"until=2025-06-01T10:20:00Z", "since=2025-06-01T10:20:00Z", "since=2025-06-01T10:00:00.5Z", "since=2025-06-01T10:00:00%2B05:30"} {
		status, _, data := e.do("GET", "/llm_gate/usage?"+q, nil)
		if status != 400 || !bytes.Contains(data, []byte("not on the hour")) || !bytes.Contains(data, []byte("T10:00:00Z or")) && !bytes.Contains(data, []byte("T04:00:00Z or")) {
			t.Errorf("usage?%s: %d %s; want 400 naming the hours around the bound", q, status, data)
		}
	}
}

func TestRequests(t *testing.T) {
	e := start(t)
	seedRecords(t, e.state(), testRecords)
	type page struct {
		Requests   []store.Record `json:"requests"`
		NextCursor string         `json:"next_cursor"`
	}
	var p page
	raw := e.call("GET", "/llm_gate/requests", nil, 200, &p)
	if len(p.Requests) != 5 || p.NextCursor != "" {
		t.Fatalf("requests %s", raw)
	}
	for i := 1; i < len(p.Requests); i++ {
		if p.Requests[i].Time.After(p.Requests[i-1].Time) {
			t.Errorf("not newest first: %v after %v", p.Requests[i].Time, p.Requests[i-1].Time)
		}
	}
	first := p.Requests[len(p.Requests)-1]
	if first.User != "ann" || first.KeyID != "key_a" || first.Duration != 1500*time.Microsecond || first.Endpoint != "/v1/chat/completions" {
		t.Errorf("oldest record %+v", first)
	}
	if !bytes.Contains(raw, []byte(`"duration_ms":1.5`)) || !bytes.Contains(raw, []byte(`"estimated":true`)) {
		t.Errorf("record JSON %s", raw)
	}

	// Paging, two at a time, sees every record once.
	var times []time.Time
	cursor := ""
	for {
		q := "limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		e.call("GET", "/llm_gate/requests?"+q, nil, 200, &p)
		for _, r := range p.Requests {
			times = append(times, r.Time)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if len(times) != 5 || !times[0].Equal(at("2025-06-03T23:59:59Z")) || !times[4].Equal(at("2025-06-01T10:05:00Z")) {
		t.Errorf("paged times %v", times)
	}

	e.call("GET", "/llm_gate/requests?user=ben", nil, 200, &p)
	if len(p.Requests) != 2 {
		t.Errorf("ben's requests %+v", p.Requests)
	}
	e.call("GET", "/llm_gate/requests?since=2025-06-02&until=2025-06-02", nil, 200, &p)
	if len(p.Requests) != 1 || p.Requests[0].Status != 429 {
		t.Errorf("one day %+v", p.Requests)
	}
	// An until at the zero time selects nothing (not everything), and is
	// still compared with since.
	e.call("GET", "/llm_gate/requests?until=0001-01-01T00:00:00Z", nil, 200, &p)
	if len(p.Requests) != 0 {
		t.Errorf("until the year 1: %+v", p.Requests)
	}
	for _, q := range []string{"cursor=xyz", "limit=0", "since=bad", "model=llama", "user=%01", "since=2025-06-01&until=0001-01-01T00:00:00Z", "since=2025-06-02&until=2025-06-01"} {
		e.fails("GET", "/llm_gate/requests?"+q, nil, 400)
	}
}

func TestPlans(t *testing.T) {
	e := start(t)
	var out struct {
		DefaultPlan string           `json:"default_plan"`
		Plans       []admin.PlanView `json:"plans"`
	}
	e.call("GET", "/llm_gate/plans", nil, 200, &out)
	if out.DefaultPlan != "free" || len(out.Plans) != 2 {
		t.Fatalf("plans %+v", out)
	}
	free, pro := out.Plans[0], out.Plans[1]
	if free.Name != "free" || !free.Default || free.MaxParallel != 2 ||
		!slices.Equal(free.Tokens, []admin.WindowLimit{{"minute", 100}, {"day", 1000}}) ||
		!slices.Equal(free.Requests, []admin.WindowLimit{{"minute", 10}}) || !slices.Equal(free.Models, []string{"llama-*"}) {
		t.Errorf("free %+v", free)
	}
	if pro.Name != "pro" || pro.Default || !slices.Equal(pro.Tokens, []admin.WindowLimit{{"month", 500000}}) || len(pro.Models) != 0 {
		t.Errorf("pro %+v", pro)
	}
	e.fails("GET", "/llm_gate/plans?x=1", nil, 400)
}

func TestConcurrentPatches(t *testing.T) {
	e := start(t)
	e.call("PUT", "/llm_gate/users/busy", nil, 201, nil)
	const writers = 8
	const rounds = 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				v := int64(g*100 + i)
				// Writers 0-3 set token_limit and tokens_per_minute together;
				// writers 4-7 set max_parallel and models together.
				var body string
				if g < writers/2 {
					body = fmt.Sprintf(`{"token_limit":%d,"tokens_per_minute":%d}`, v, v)
				} else {
					body = fmt.Sprintf(`{"max_parallel":%d,"models":["m-%d"]}`, v, v)
				}
				req, _ := http.NewRequest("PATCH", e.in.Admin+"/llm_gate/users/busy", strings.NewReader(body))
				resp, err := e.http.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("PATCH %s: %d", body, resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var u admin.UserView
	e.call("GET", "/llm_gate/users/busy", nil, 200, &u)
	o := u.Overrides
	if o.TokenLimit == nil || o.TokensPerMinute == nil || *o.TokenLimit != *o.TokensPerMinute {
		t.Errorf("token fields torn apart: %v %v", o.TokenLimit, o.TokensPerMinute)
	}
	if o.MaxParallel == nil || len(o.Models) != 1 || o.Models[0] != fmt.Sprintf("m-%d", *o.MaxParallel) {
		t.Errorf("parallel fields torn apart: %v %v", o.MaxParallel, o.Models)
	}
	// Both groups of writers landed: neither erased the other.
	if *o.TokenLimit >= 400 || *o.MaxParallel < 400 {
		t.Errorf("final %d / %d", *o.TokenLimit, *o.MaxParallel)
	}
}

// With no llm_gate app in the config, the API runs on one with defaults,
// whose file lives in Caddy's data directory.
func TestWithoutGateApp(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	in := testcaddy.Start(t, "{\n\tadmin 127.0.0.1:{ADMIN}\n\thttp_port {HTTP}\n}\n", nil)
	e := &env{t: t, in: in, http: http.DefaultClient}
	e.call("PUT", "/llm_gate/users/solo", `{"token_limit":10,"period":"week"}`, 201, nil)
	var u admin.UserView
	e.call("GET", "/llm_gate/users/solo", nil, 200, &u)
	if u.Plan != "" || !slices.Equal(u.Limits.Tokens, []admin.WindowLimit{{"week", 10}}) {
		t.Errorf("no-plan user %+v", u)
	}
	e.fails("PUT", "/llm_gate/users/solo", `{"plan":"free"}`, 400)
	var plans struct {
		Plans []admin.PlanView `json:"plans"`
	}
	e.call("GET", "/llm_gate/plans", nil, 200, &plans)
	if plans.Plans == nil || len(plans.Plans) != 0 {
		t.Errorf("plans %+v", plans)
	}
	if _, err := os.Stat(filepath.Join(data, "caddy", "llm_gate", "llm_gate.db")); err != nil {
		t.Errorf("default DB file: %v", err)
	}
}

// A reload keeps the state the API sees: same file, same counters.
func TestReload(t *testing.T) {
	e := start(t)
	e.call("PUT", "/llm_gate/users/stay", `{"token_limit":42}`, 201, nil)
	if err := e.in.Load(strings.Replace(gateConfig, "tokens 500000 per month", "tokens 600000 per month", 1)); err != nil {
		t.Fatal(err)
	}
	var u admin.UserView
	e.call("GET", "/llm_gate/users/stay", nil, 200, &u)
	if *u.Overrides.TokenLimit != 42 {
		t.Errorf("after reload %+v", u.Overrides)
	}
	var plans struct {
		Plans []admin.PlanView `json:"plans"`
	}
	e.call("GET", "/llm_gate/plans", nil, 200, &plans)
	if len(plans.Plans) != 2 || plans.Plans[1].Tokens[0].Limit != 600000 {
		t.Errorf("the API serves the old config's plans: %+v", plans.Plans)
	}
}

// TestStoreUnavailable: a config whose store cannot be opened is refused
// when it loads, naming the file and the reason, and the running config
// (and its API) go on.
func TestStoreUnavailable(t *testing.T) {
	e := start(t)
	e.call("PUT", "/llm_gate/users/x", "{}", 201, nil)
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(file, "gate.db") // a directory that is a file
	err := e.in.Load(strings.ReplaceAll(gateConfig, "{DB}", bad))
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a config with an unusable store loaded: %v", err)
	}
	e.call("GET", "/llm_gate/users/x", nil, 200, nil)
}

// BenchmarkGetUser measures GET /llm_gate/users/{id} through Caddy's admin
// listener: resolve, window status, keys.
func BenchmarkGetUser(b *testing.B) {
	in := testcaddy.Start(b, gateConfig, map[string]string{"{DB}": filepath.Join(b.TempDir(), "gate.db")})
	client := &http.Client{}
	req, _ := http.NewRequest("PUT", in.Admin+"/llm_gate/users/bench", strings.NewReader(`{"plan":"pro","token_limit":1000}`))
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 201 {
		b.Fatalf("PUT: %v %v", resp, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(in.Admin + "/llm_gate/users/bench")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

// BenchmarkListUsers measures a full page of 1,000 users.
func BenchmarkListUsers(b *testing.B) {
	path := filepath.Join(b.TempDir(), "many.db")
	db, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if err := db.PutUser(&store.User{ID: fmt.Sprintf("user-%04d", i), Source: "admin"}); err != nil {
			b.Fatal(err)
		}
	}
	db.Close()
	in := testcaddy.Start(b, gateConfig, map[string]string{"{DB}": path})
	b.ReportAllocs()
	for b.Loop() {
		resp, err := http.Get(in.Admin + "/llm_gate/users?limit=1000")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
