package itest

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/internal/vllmsim"
)

// redactAPIKey is the access-log filter the README documents: Caddy redacts
// Authorization by itself, not x-api-key.
const redactAPIKey = "format filter {\n\t\t\trequest>headers>X-Api-Key replace REDACTED\n\t\t\twrap json\n\t\t}"

// TestMetricsAndLogs: Caddy's /metrics carries the gate's counters, the
// access log carries the caller's identity and token counts, and no log line
// at any level carries a credential.
func TestMetricsAndLogs(t *testing.T) {
	dir := t.TempDir()
	access, debug := filepath.Join(dir, "access.log"), filepath.Join(dir, "debug.log")
	file := strings.NewReplacer(
		"\t\t{GLOBAL}", "\t\tmetrics_per_user",
		"\thttp_port {HTTP}", "\thttp_port {HTTP}\n\tlog {\n\t\toutput file "+debug+"\n\t\tlevel DEBUG\n\t}\n\tmetrics",
		"\treverse_proxy {UPSTREAM}", "\tlog_append llm_user {http.llm_gate.user}\n\tlog_append llm_key {http.llm_gate.key_id}\n"+
			"\tlog_append llm_model {http.llm_gate.model}\n\tlog_append llm_prompt {http.llm_gate.prompt_tokens}\n"+
			"\tlog_append llm_completion {http.llm_gate.completion_tokens}\n\tlog {\n\t\toutput file "+access+"\n\t\t"+redactAPIKey+"\n\t}\n\treverse_proxy {UPSTREAM}",
	).Replace(gateCaddyfile)
	e := newEnv(t, envOpts{file: file})
	e.admin("PUT", "/llm_gate/users/olga", map[string]any{}, nil)
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	e.admin("POST", "/llm_gate/users/olga/keys", map[string]any{"name": "k"}, &key)
	before := scrape(t, e.caddy.Admin)
	tk := token(t, "nina", nil)
	mustStatus(t, e.post("/v1/chat/completions", tk, chatBody("sim-model", true, nil)), 200)
	mustStatus(t, e.post("/v1/chat/completions", key.Key, chatBody("sim-model", false, nil)), 200)
	mustStatus(t, e.post("/v1/chat/completions", "", chatBody("sim-model", false, nil), "X-Api-Key", key.Key), 200)
	mustStatus(t, e.post("/v1/chat/completions", tk+"x", chatBody("sim-model", false, nil)), 401)
	mustStatus(t, e.post("/v1/chat/completions", key.Key+"x", chatBody("sim-model", false, nil)), 401)
	// vLLM refusing a request is the client's error; its 5xx is upstream's.
	vera := token(t, "vera", nil)
	mustStatus(t, e.post("/v1/chat/completions", vera, chatBody("sim-model", false, nil), "X-Sim-Status", "400"), 400)
	mustStatus(t, e.post("/v1/chat/completions", vera, chatBody("sim-model", false, nil), "X-Sim-Status", "503"), 503)
	recs := append(e.waitRecords("nina", 1), e.waitRecords("olga", 2)...)
	e.waitRecords("vera", 2)

	after := scrape(t, e.caddy.Admin)
	var prompt, completion int64
	for _, r := range recs {
		prompt += r.PromptTokens
		completion += r.CompletionTokens
	}
	// Counters are process-wide (they survive reloads), so compare deltas.
	for name, want := range map[string]float64{
		`caddy_llm_gate_tokens_total{kind="prompt",model="sim-model"}`:     float64(prompt),
		`caddy_llm_gate_tokens_total{kind="completion",model="sim-model"}`: float64(completion),
		`caddy_llm_gate_requests_total{outcome="ok"}`:                      3,
		`caddy_llm_gate_requests_total{outcome="unauthorized"}`:            2,
		`caddy_llm_gate_requests_total{outcome="bad_request"}`:             1,
		`caddy_llm_gate_requests_total{outcome="upstream_error"}`:          1,
		// Of the three requests, admitted without counting (no token limit
		// here), the first, counted after its answer.
		`caddy_llm_gate_prompt_estimate_error_ratio_count`: 1,
	} {
		if got := after.values[name] - before.values[name]; got != want {
			t.Errorf("%s grew by %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"caddy_llm_gate_active_requests", "caddy_llm_gate_reservations", "caddy_llm_gate_store_commit_seconds_count"} {
		if _, ok := after.values[name]; !ok {
			t.Errorf("metrics lack %s", name)
		}
	}
	if after.values["caddy_llm_gate_active_requests"] != 0 || after.values["caddy_llm_gate_reservations"] != 0 {
		t.Errorf("requests or reservations still held after every response ended")
	}
	// metrics_per_user is on here: a series per user.
	if got := after.values[`caddy_llm_gate_user_tokens_total{kind="prompt",user="nina"}`] - before.values[`caddy_llm_gate_user_tokens_total{kind="prompt",user="nina"}`]; got != float64(recs[0].PromptTokens) {
		t.Errorf("per-user prompt tokens of nina grew by %v, want %d", got, recs[0].PromptTokens)
	}
	if regexp.MustCompile(`caddy_llm_gate_(tokens|requests)_total\{[^}]*user=`).MatchString(after.text) {
		t.Error("the default metrics carry a per-user label")
	}

	// A stream the upstream cuts: Caddy aborts the client's connection with
	// a panic that skips log_append; the access log still names the caller
	// (user_id) and the gate's own line says what was charged.
	cut := e.post("/v1/chat/completions", token(t, "cut", nil), chatBody("sim-model", true, nil), "X-Sim-Crash-After", "3")
	io.Copy(io.Discard, cut.Body)
	cut.Body.Close()
	cutRec := e.waitRecords("cut", 1)[0]
	// A disabled user's 403 names them in the access log.
	e.admin("PUT", "/llm_gate/users/dora", map[string]any{"disabled": true}, nil)
	mustStatus(t, e.post("/v1/chat/completions", token(t, "dora", nil), chatBody("sim-model", false, nil)), 403)

	// Logs are written asynchronously by zap's file writer: wait for them.
	var accessLog, debugLog string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		a, _ := os.ReadFile(access)
		d, _ := os.ReadFile(debug)
		accessLog, debugLog = string(a), string(d)
		if strings.Count(accessLog, "\n") >= 7 && strings.Contains(debugLog, "credential refused") && strings.Contains(debugLog, "upstream cut") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{`"llm_user":"nina"`, `"llm_user":"olga"`, `"llm_key":"` + key.ID + `"`, `"llm_model":"sim-model"`, `"llm_prompt":` + strconv.FormatInt(recs[0].PromptTokens, 10)} {
		if !strings.Contains(accessLog, want) {
			t.Errorf("access log lacks %s:\n%s", want, accessLog)
		}
	}
	if !strings.Contains(debugLog, "credential refused") {
		t.Errorf("the debug log does not say why a credential was refused")
	}
	for _, want := range []string{`"user_id":"nina"`, `"user_id":"olga"`, `"user_id":"cut"`, `"user_id":"dora"`, `"llm_user":"dora"`} {
		if !strings.Contains(accessLog, want) {
			t.Errorf("access log lacks %s:\n%s", want, accessLog)
		}
	}
	cutLine := regexp.MustCompile(`.*upstream cut the response.*`).FindString(debugLog)
	for _, want := range []string{`"user":"cut"`, `"model":"sim-model"`, `"prompt_tokens":` + strconv.FormatInt(cutRec.PromptTokens, 10),
		`"completion_tokens":` + strconv.FormatInt(cutRec.CompletionTokens, 10), `"estimated":true`} {
		if !strings.Contains(cutLine, want) {
			t.Errorf("the cut stream's log line lacks %s: %q", want, cutLine)
		}
	}
	secretParts := []string{tk, strings.Split(tk, ".")[2], key.Key, key.Key[10:], testSecret}
	for _, s := range secretParts {
		if strings.Contains(accessLog, s) || strings.Contains(debugLog, s) {
			t.Fatalf("a credential appears in the logs: %.20s…", s)
		}
	}
}

// TestStopDuringStreams: `caddy stop` while streams are running lets them
// finish and commits their usage before the process exits.
func TestStopDuringStreams(t *testing.T) {
	sim := vllmsim.New(vllmsim.Config{TokensPerSecond: 40, DefaultLength: 40})
	srv := newSimServer(t, sim)
	db := filepath.Join(t.TempDir(), "gate.db")
	p := startProc(t, strings.NewReplacer("{DB}", db, "{FLUSH}", "10s", "{SECRET}", testSecret, "{UPSTREAM}", srv,
		"{GLOBAL}", "", "{SITE}", "").Replace(gateCaddyfile))
	e := &env{t: t, base: p.base}
	tk := token(t, "paul", nil)
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	bodies := make([][]byte, 6)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", e.base+"/v1/chat/completions", strings.NewReader(mustJSON(t, chatBody("sim-model", true, nil))))
			req.Header.Set("Authorization", "Bearer "+tk)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			statuses[i] = resp.StatusCode
			bodies[i], _ = readAllErr(resp)
		}()
	}
	// Let the streams start, then stop Caddy through its admin API.
	deadline := time.Now().Add(10 * time.Second)
	for sim.Counters().Requests < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Post(p.admin+"/stop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wg.Wait()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("caddy exited with %v\n%s", err, p.log)
	}
	done := 0
	for i, b := range bodies {
		if statuses[i] == 200 && strings.HasSuffix(string(b), "data: [DONE]\n\n") {
			done++
		}
	}
	if done != 6 {
		t.Fatalf("%d of 6 streams finished cleanly during the stop", done)
	}
	recs := openRecords(t, db, "paul")
	var completion int64
	for _, r := range recs {
		completion += r.CompletionTokens
	}
	if len(recs) != 6 || completion != sim.Counters().GenerationTokens {
		t.Fatalf("after stop: %d records, %d completion tokens; emulator generated %d", len(recs), completion, sim.Counters().GenerationTokens)
	}
}

type metrics struct {
	text   string
	values map[string]float64
}

// scrape reads Caddy's /metrics from the admin listener.
func scrape(t *testing.T, admin string) metrics {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics{text: string(readAll(t, resp.Body)), values: map[string]float64{}}
	for _, line := range strings.Split(m.text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m.values[line[:i]] = v
		}
	}
	return m
}

// TestStoreOpensAtStart: a config whose store file cannot be used is
// refused when it loads, with the file and the reason, and the running
// config goes on; a reload refused for any reason leaves the running
// config's flush_interval as it was (it used to take the refused one's).
func TestStoreOpensAtStart(t *testing.T) {
	e := newEnv(t, envOpts{})
	flushNow := func() time.Duration {
		t.Helper()
		app, err := caddy.ActiveContext().App("llm_gate")
		if err != nil {
			t.Fatal(err)
		}
		return app.(*gate.App).State().FlushInterval()
	}
	if got := flushNow(); got != 0 {
		t.Fatalf("flush_interval %v, want 0", got)
	}
	live := strings.NewReplacer("{GLOBAL}", "", "{SITE}", "").Replace(gateCaddyfile)

	// Refused after the llm_gate app is provisioned: by the handler's
	// Validate, which the Caddyfile adapter would have caught first.
	cfg, err := e.caddy.Adapt(strings.Replace(live, "flush_interval {FLUSH}", "flush_interval 1h", 1))
	if err != nil {
		t.Fatal(err)
	}
	refused := bytes.Replace(cfg, []byte(`"handler":"llm_gate"`), []byte(`"handler":"llm_gate","usage_chunk":"maybe"`), 1)
	if err := caddy.Load(refused, true); err == nil || !strings.Contains(err.Error(), "usage_chunk") {
		t.Fatalf("a config with a bad usage_chunk loaded: %v", err)
	}
	if got := flushNow(); got != 0 {
		t.Fatalf("after a refused reload flush_interval is %v, want the running 0", got)
	}

	foreign := filepath.Join(t.TempDir(), "notes.db")
	if err := os.WriteFile(foreign, bytes.Repeat([]byte("not a bolt file\n"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	err = e.caddy.Load(strings.Replace(live, "db {DB}", "db "+foreign, 1))
	if err == nil || !strings.Contains(err.Error(), foreign) {
		t.Fatalf("a config on a file that is not a store loaded: %v", err)
	}
	mustStatus(t, e.post("/v1/chat/completions", token(t, "still", nil), chatBody("sim-model", false, map[string]any{"max_tokens": 3})), 200)
}

// The db path takes {env.*} placeholders, as secret and public_key do:
// left as written, {env.X} named a directory of its own under the working
// directory, and a Caddy started elsewhere found an empty store. A path
// that is a directory is refused when the config loads, not when the
// store first opens.
func TestDBPathPlaceholders(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LLM_GATE_ITEST_DB_DIR", dir)
	file := strings.Replace(gateCaddyfile, "db {DB}", "db {env.LLM_GATE_ITEST_DB_DIR}/gate.db", 1)
	e := newEnv(t, envOpts{file: file})
	mustStatus(t, e.post("/v1/chat/completions", token(t, "envy", nil), chatBody("sim-model", false, map[string]any{"max_tokens": 3})), 200)
	if _, err := os.Stat(filepath.Join(dir, "gate.db")); err != nil {
		t.Fatalf("the store is not where {env.LLM_GATE_ITEST_DB_DIR} points: %v", err)
	}

	live := strings.NewReplacer("{GLOBAL}", "", "{SITE}", "").Replace(file)
	for _, c := range []struct{ db, want string }{
		{"{env.LLM_GATE_ITEST_UNSET}/gate.db", "LLM_GATE_ITEST_UNSET"},
		{dir, "is a directory"},
		{filepath.Join(dir, "gate.db", "sub", "gate.db"), "is a file, not a directory"}, // a file in the way
	} {
		err := e.caddy.Load(strings.Replace(live, "db {env.LLM_GATE_ITEST_DB_DIR}/gate.db", "db "+c.db, 1))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("db %s loaded or failed without saying %q: %v", c.db, c.want, err)
		}
	}
	mustStatus(t, e.post("/v1/chat/completions", token(t, "envy", nil), chatBody("sim-model", false, map[string]any{"max_tokens": 3})), 200)
}
