package cli_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	// The admin module the commands talk to.
	_ "github.com/llmgate/llmgate/admin"
	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/cli"
	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/internal/testcaddy"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

const config = `{
	admin 127.0.0.1:{ADMIN}
	http_port {HTTP}
	https_port {HTTPS}
	llm_gate {
		db {DB}
		# The records of the tests are dated 2025: keep them, or the
		# background pruner drops them within a second.
		retention 0
		plan free {
			tokens 1000 per day
		}
		plan pro {
			tokens 500000 per month
			max_parallel 4
		}
		default_plan free
	}
}
`

type env struct {
	t  *testing.T
	in *testcaddy.Instance
}

func start(t *testing.T) *env {
	t.Helper()
	in := testcaddy.Start(t, config, map[string]string{"{DB}": filepath.Join(t.TempDir(), "gate.db")})
	return &env{t: t, in: in}
}

// run executes `caddy llm-gate args...` in-process against the test's
// admin listener, through the command caddycmd registered.
func (e *env) run(args ...string) (string, error) {
	e.t.Helper()
	return runCommand(e.t, append(args, "--address", e.in.AdminAddr)...)
}

// runCommand builds the registered llm-gate command the way Caddy's root
// command does, and executes it.
func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["llm-gate"]
	if !ok {
		t.Fatal("the llm-gate command is not registered")
	}
	cmd := &cobra.Command{Use: reg.Name, Short: reg.Short, SilenceUsage: true, SilenceErrors: true}
	reg.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// mustRun runs and decodes the JSON printed into out.
func (e *env) mustRun(out any, args ...string) string {
	e.t.Helper()
	s, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("llm-gate %s: %v", strings.Join(args, " "), err)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(s), out); err != nil {
			e.t.Fatalf("llm-gate %s printed %q: %v", strings.Join(args, " "), s, err)
		}
	}
	return s
}

// apiError checks that err is the admin API's answer with status.
func apiError(t *testing.T, err error, status int, msg string) {
	t.Helper()
	var e *cli.Error
	if !errors.As(err, &e) || e.Status != status || !strings.Contains(e.Message, msg) {
		t.Fatalf("error %v, want HTTP %d mentioning %q", err, status, msg)
	}
}

func (e *env) state() *gate.State {
	v, err := caddy.ActiveContext().App("llm_gate")
	if err != nil {
		e.t.Fatal(err)
	}
	return v.(*gate.App).State()
}

type user struct {
	ID        string `json:"id"`
	Plan      string `json:"plan"`
	Disabled  bool   `json:"disabled"`
	Overrides struct {
		Plan        *string  `json:"plan"`
		TokenLimit  *int64   `json:"token_limit"`
		Period      *string  `json:"period"`
		TPM         *int64   `json:"tokens_per_minute"`
		RPM         *int64   `json:"requests_per_minute"`
		MaxParallel *int     `json:"max_parallel"`
		Models      []string `json:"models"`
	} `json:"overrides"`
	Windows []struct {
		Window string `json:"window"`
		Used   int64  `json:"used"`
	} `json:"windows"`
}

func TestUserCommands(t *testing.T) {
	e := start(t)
	var u user
	// set creates a missing user (PUT).
	out := e.mustRun(&u, "user", "set", "alice@example.com", "--plan", "pro", "--token-limit", "500", "--period", "day",
		"--models", "llama-*,qwen-*", "--tokens-per-minute", "60", "--requests-per-minute", "5")
	if !strings.Contains(out, "\n  \"id\": \"alice@example.com\"") {
		t.Errorf("output is not indented JSON:\n%s", out)
	}
	if u.Plan != "pro" || *u.Overrides.TokenLimit != 500 || *u.Overrides.Period != "day" || len(u.Overrides.Models) != 2 ||
		*u.Overrides.TPM != 60 || *u.Overrides.RPM != 5 {
		t.Fatalf("created %+v", u)
	}
	// set on an existing user changes only what is given (PATCH).
	e.mustRun(&u, "user", "set", "alice@example.com", "--max-parallel", "3", "--disabled")
	if u.Plan != "pro" || *u.Overrides.TokenLimit != 500 || *u.Overrides.MaxParallel != 3 || !u.Disabled {
		t.Fatalf("patched %+v", u)
	}
	e.mustRun(&u, "user", "set", "alice@example.com", "--clear", "token_limit,tokens-per-minute", "--disabled=false", "--plan", "")
	if u.Plan != "free" || u.Overrides.TokenLimit != nil || u.Overrides.TPM != nil || *u.Overrides.RPM != 5 || u.Disabled {
		t.Fatalf("cleared %+v", u)
	}
	// The gate sees it.
	stored, err := e.state().User("alice@example.com")
	if err != nil || stored.MaxParallel == nil || *stored.MaxParallel != 3 {
		t.Fatalf("state: %+v %v", stored, err)
	}
	// set with nothing creates a plain user.
	e.mustRun(&u, "user", "set", "plain")
	if u.ID != "plain" || u.Plan != "free" {
		t.Errorf("plain %+v", u)
	}

	e.mustRun(&u, "user", "get", "alice@example.com")
	if u.ID != "alice@example.com" || *u.Overrides.MaxParallel != 3 {
		t.Errorf("get %+v", u)
	}

	// Reset zeroes the windows.
	st := e.state()
	lim := e.appResolve("alice@example.com")
	res, err := st.Engine.Admit(lim)
	if err != nil {
		t.Fatal(err)
	}
	res.Settle(10, 10)
	e.mustRun(&u, "user", "get", "alice@example.com")
	if u.Windows[0].Used == 0 {
		t.Fatalf("no usage before reset: %+v", u.Windows)
	}
	e.mustRun(&u, "user", "reset", "alice@example.com")
	for _, w := range u.Windows {
		if w.Used != 0 {
			t.Errorf("after reset %+v", u.Windows)
		}
	}

	var del struct {
		Deleted bool `json:"deleted"`
	}
	e.mustRun(&del, "user", "delete", "alice@example.com")
	if !del.Deleted {
		t.Error("delete")
	}
	_, err = e.run("user", "get", "alice@example.com")
	apiError(t, err, 404, "not found")
	_, err = e.run("user", "delete", "alice@example.com")
	apiError(t, err, 404, "not found")
	_, err = e.run("user", "reset", "alice@example.com")
	apiError(t, err, 404, "not found")

	// The API's refusals come back with its message.
	_, err = e.run("user", "set", "bob", "--plan", "gold")
	apiError(t, err, 400, `unknown plan "gold"`)
	_, err = e.run("user", "set", "plain", "--period", "fortnight")
	apiError(t, err, 400, "period")
	_, err = e.run("user", "set", "plain", "--token-limit", "-5")
	apiError(t, err, 400, "token_limit")
	_, err = e.run("user", "set", "plain", "--clear", "bogus")
	apiError(t, err, 400, `unknown field "bogus"`)
	if _, err = e.run("user", "set", "plain", "--token-limit", "5", "--clear", "token_limit"); err == nil || !strings.Contains(err.Error(), "contradicts") {
		t.Errorf("set and clear: %v", err)
	}
	if _, err = e.run("user", "get"); err == nil {
		t.Error("user get without an id")
	}
	if _, err = e.run("user", "set", " lead"); err == nil {
		t.Error("bad id accepted")
	} else {
		apiError(t, err, 400, "space")
	}
	// Help for the group commands is no error.
	for _, group := range []string{"user", "keys"} {
		if _, err := e.run(group); err != nil {
			t.Errorf("%s alone: %v", group, err)
		}
	}
}

func (e *env) appResolve(id string) quota.Request {
	e.t.Helper()
	v, _ := caddy.ActiveContext().App("llm_gate")
	app := v.(*gate.App)
	u, err := app.State().User(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return quota.Request{User: id, Limits: app.Resolve(u, "", gate.Claims{}).Limits, Prompt: 10, Output: 10}
}

func TestKeysCommands(t *testing.T) {
	e := start(t)
	e.mustRun(nil, "user", "set", "kim")
	var k struct {
		ID        string     `json:"id"`
		Key       string     `json:"key"`
		Name      string     `json:"name"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	e.mustRun(&k, "keys", "create", "kim", "--name", "laptop", "--expires-in", "24h")
	if !strings.HasPrefix(k.Key, "sk-") || k.Name != "laptop" || k.ExpiresAt == nil {
		t.Fatalf("key %+v", k)
	}
	// --quiet prints the secret alone.
	out := e.mustRun(nil, "keys", "create", "kim", "-q")
	secret := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(secret, "sk-") || strings.ContainsAny(secret, " \n{") {
		t.Fatalf("quiet output %q", out)
	}
	if got, err := e.state().KeyByHash(auth.HashKey(secret)); err != nil || got.UserID != "kim" {
		t.Fatalf("quiet key not stored: %+v %v", got, err)
	}

	var list struct {
		Keys []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"keys"`
	}
	out = e.mustRun(&list, "keys", "list", "kim")
	if len(list.Keys) != 2 || strings.Contains(out, k.Key) || strings.Contains(out, secret) {
		t.Fatalf("list %s", out)
	}

	var rev struct {
		Status string `json:"status"`
	}
	e.mustRun(&rev, "keys", "revoke", k.ID)
	if rev.Status != "revoked" {
		t.Errorf("revoke %+v", rev)
	}
	if got, err := e.state().KeyByHash(auth.HashKey(k.Key)); err == nil && got.Active(time.Now()) {
		t.Error("revoked key still active")
	}
	_, err := e.run("keys", "revoke", "key_unknown")
	apiError(t, err, 404, "not found")
	_, err = e.run("keys", "create", "nobody")
	apiError(t, err, 404, "not found")
	_, err = e.run("keys", "list", "nobody")
	apiError(t, err, 404, "not found")
	_, err = e.run("keys", "create", "kim", "--expires-in", "soon")
	apiError(t, err, 400, "expires_in")
}

func TestUsersCommand(t *testing.T) {
	e := start(t)
	for _, id := range []string{"u1", "u2", "u3", "u4", "u5"} {
		e.mustRun(nil, "user", "set", id)
	}
	type page struct {
		Users []struct {
			ID string `json:"id"`
		} `json:"users"`
		NextCursor string `json:"next_cursor"`
	}
	var p page
	e.mustRun(&p, "users", "--limit", "2")
	if len(p.Users) != 2 || p.NextCursor == "" {
		t.Fatalf("page %+v", p)
	}
	e.mustRun(&p, "users", "--limit", "2", "--cursor", p.NextCursor)
	if len(p.Users) != 2 || p.Users[0].ID != "u3" {
		t.Fatalf("second page %+v", p)
	}
	e.mustRun(&p, "users", "--all", "--limit", "2")
	if len(p.Users) != 5 || p.Users[4].ID != "u5" || p.NextCursor != "" {
		t.Fatalf("all %+v", p)
	}
	e.mustRun(&p, "users", "--all")
	if len(p.Users) != 5 {
		t.Fatalf("all, default page %+v", p)
	}
	e.mustRun(&p, "users")
	if len(p.Users) != 5 {
		t.Fatalf("default %+v", p)
	}
	_, err := e.run("users", "--cursor", "!!")
	apiError(t, err, 400, "cursor")
	_, err = e.run("users", "--limit", "0")
	apiError(t, err, 400, "limit")
	if _, err := e.run("users", "--all", "--cursor", "x"); err == nil {
		t.Error("--all with --cursor")
	}
}

func TestUsageAndRequestsCommands(t *testing.T) {
	e := start(t)
	st := e.state()
	day := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	for i, r := range []store.Record{
		{User: "ann", Model: "llama", PromptTokens: 10, CompletionTokens: 1},
		{User: "ann", Model: "qwen", PromptTokens: 20, CompletionTokens: 2},
		{User: "ben", Model: "llama", PromptTokens: 30, CompletionTokens: 3},
	} {
		r.Time = day.Add(time.Duration(i) * time.Hour)
		r.Endpoint, r.Status = "/v1/chat/completions", 200
		if err := st.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	out := e.mustRun(nil, "usage", "--group-by", "user", "--format", "csv", "--since", "2025-06-01", "--until", "2025-06-01")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("csv %q: %v", out, err)
	}
	if len(recs) != 3 || recs[0][0] != "user" || recs[1][0] != "ann" || recs[1][1] != "2" || recs[2][4] != "33" {
		t.Errorf("csv %q", recs)
	}
	var rows struct {
		Rows []store.UsageRow `json:"rows"`
	}
	e.mustRun(&rows, "usage", "--user", "ann", "--model", "qwen")
	if len(rows.Rows) != 1 || rows.Rows[0].TotalTokens != 22 {
		t.Errorf("rows %+v", rows)
	}
	_, err = e.run("usage", "--group-by", "week")
	apiError(t, err, 400, "group_by")

	var reqs struct {
		Requests   []store.Record `json:"requests"`
		NextCursor string         `json:"next_cursor"`
	}
	e.mustRun(&reqs, "requests", "--user", "ann", "--limit", "1")
	if len(reqs.Requests) != 1 || reqs.Requests[0].Model != "qwen" || reqs.NextCursor == "" {
		t.Fatalf("requests %+v", reqs)
	}
	e.mustRun(&reqs, "requests", "--user", "ann", "--limit", "1", "--cursor", reqs.NextCursor)
	if len(reqs.Requests) != 1 || reqs.Requests[0].Model != "llama" {
		t.Errorf("second page %+v", reqs)
	}
	e.mustRun(&reqs, "requests", "--since", "2025-06-01T11:00:00Z")
	if len(reqs.Requests) != 2 {
		t.Errorf("since %+v", reqs)
	}
	_, err = e.run("requests", "--since", "yesterday")
	apiError(t, err, 400, "since")
}

func TestPlansCommand(t *testing.T) {
	e := start(t)
	var out struct {
		DefaultPlan string `json:"default_plan"`
		Plans       []struct {
			Name        string `json:"name"`
			MaxParallel int    `json:"max_parallel"`
		} `json:"plans"`
	}
	e.mustRun(&out, "plans")
	if out.DefaultPlan != "free" || len(out.Plans) != 2 || out.Plans[1].Name != "pro" || out.Plans[1].MaxParallel != 4 {
		t.Errorf("plans %+v", out)
	}
}

// Without --address, the admin address comes from --config, as for
// `caddy reload`.
func TestAddressFromConfig(t *testing.T) {
	e := start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte("{\n\tadmin "+e.in.AdminAddr+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out struct {
		DefaultPlan string `json:"default_plan"`
	}
	s, err := runCommand(t, "plans", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil || out.DefaultPlan != "free" {
		t.Errorf("plans via --config: %q %v", s, err)
	}
	if _, err := runCommand(t, "plans", "--config", filepath.Join(dir, "missing"), "--adapter", "caddyfile"); err == nil {
		t.Error("a missing config file is no error")
	}
}

func TestAdminUnreachable(t *testing.T) {
	port := testcaddy.FreePort(t)
	_, err := runCommand(t, "plans", "--address", "127.0.0.1:"+strconv.Itoa(port))
	var e *cli.Error
	if err == nil || errors.As(err, &e) {
		t.Errorf("unreachable admin: %v", err)
	}
	if _, err := runCommand(t, "plans", "--address", "127.0.0.1:1-5"); err == nil {
		t.Error("a port range is no admin address")
	}
}

func TestErrorString(t *testing.T) {
	e := &cli.Error{Status: 404, Message: `user "x": not found`}
	if e.Error() != `admin API answered HTTP 404: user "x": not found` {
		t.Errorf("%q", e.Error())
	}
}
