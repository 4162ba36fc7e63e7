package itest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/testcaddy"
	"github.com/llmgate/llmgate/internal/vllmsim"
	"github.com/llmgate/llmgate/store"
)

var (
	buildOnce sync.Once
	caddyBin  string
	buildErr  error
)

// binary builds ./cmd/caddy once per test run: crash tests need a process
// of their own to kill.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llmgate-itest")
		if err != nil {
			buildErr = err
			return
		}
		caddyBin = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", caddyBin, "github.com/llmgate/llmgate/cmd/caddy").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return caddyBin
}

// proc is Caddy running as a child process.
type proc struct {
	cmd   *exec.Cmd
	admin string
	base  string
	log   *strings.Builder
}

func startProc(t *testing.T, caddyfile string) *proc {
	t.Helper()
	dir := t.TempDir()
	adminPort, httpPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
	caddyfile = strings.NewReplacer("{ADMIN}", fmt.Sprint(adminPort), "{HTTP}", fmt.Sprint(httpPort), "{HTTPS}", fmt.Sprint(testcaddy.FreePort(t))).Replace(caddyfile)
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proc{admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort), base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), log: &strings.Builder{}}
	p.cmd = exec.Command(binary(t), "run", "--config", cfgPath, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.admin + "/config/")
		if err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not start: %v\n%s", err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKill9LosesNothing: with flush_interval 0, every request whose
// response ended is in the file, even after kill -9.
func TestKill9LosesNothing(t *testing.T) {
	sim := vllmsim.New(vllmsim.Config{})
	srv := newSimServer(t, sim)
	db := filepath.Join(t.TempDir(), "gate.db")
	p := startProc(t, strings.NewReplacer("{DB}", db, "{FLUSH}", "0", "{SECRET}", testSecret, "{UPSTREAM}", srv,
		"{GLOBAL}", "", "{SITE}", "").Replace(gateCaddyfile))
	e := &env{t: t, base: p.base}
	const n = 40
	for i := range n {
		mustStatus(t, e.post("/v1/chat/completions", token(t, "ivan", nil), chatBody("sim-model", i%2 == 0, nil)), 200)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	recs := openRecords(t, db, "ivan")
	var prompt, completion int64
	for _, r := range recs {
		prompt += r.PromptTokens
		completion += r.CompletionTokens
	}
	c := sim.Counters()
	if len(recs) != n || prompt != c.PromptTokens || completion != c.GenerationTokens {
		t.Fatalf("after kill -9: %d records, %d+%d tokens; want %d records, %d+%d tokens", len(recs), prompt, completion, n, c.PromptTokens, c.GenerationTokens)
	}
	st, err := store.Open(db, store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.Usage(store.UsageQuery{User: "ivan", Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Hour)})
	if err != nil || len(rows) != 1 || rows[0].Requests != n || rows[0].PromptTokens != prompt {
		t.Fatalf("aggregates after kill -9: %+v %v", rows, err)
	}
}

// TestKill9KeepsStreamsInFlight: a stream still running when Caddy is
// killed has its tokens so far in the committed counters: each commit
// charges what the streams in flight have produced. (They used to be charged
// only when they ended, so a crash lost all of a long stream.)
func TestKill9KeepsStreamsInFlight(t *testing.T) {
	// With flush_interval 0 the streams are checkpointed once a second.
	for _, flush := range []string{"1s", "0"} {
		t.Run("flush_interval "+flush, func(t *testing.T) { kill9MidStream(t, flush) })
	}
}

func kill9MidStream(t *testing.T, flush string) {
	sim := vllmsim.New(vllmsim.Config{TokensPerSecond: 400, DefaultLength: 8000})
	srv := newSimServer(t, sim)
	db := filepath.Join(t.TempDir(), "gate.db")
	file := strings.NewReplacer("{DB}", db, "{FLUSH}", flush, "{SECRET}", testSecret, "{UPSTREAM}", srv,
		"{GLOBAL}", "plan p {\n\t\t\ttokens 1000000 per day\n\t\t}", "{SITE}", "plan p").Replace(gateCaddyfile)
	p := startProc(t, file)
	e := &env{t: t, base: p.base}
	tk := token(t, "long", nil)
	resp := e.post("/v1/chat/completions", tk, chatBody("sim-model", true, nil))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	deadline := time.Now().Add(3500 * time.Millisecond) // three commits and more
	buf := make([]byte, 4096)
	for time.Now().Before(deadline) {
		if _, err := resp.Body.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	resp.Body.Close()
	generated := sim.Counters().GenerationTokens // the aborted stream's, counted at its abort
	for i := 0; generated == 0 && i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
		generated = sim.Counters().GenerationTokens
	}

	p = startProc(t, file)
	e = &env{t: t, base: p.base}
	var me struct {
		Windows []struct {
			Kind string `json:"kind"`
			Used int64  `json:"used"`
		} `json:"windows"`
	}
	if err := jsonDecode(e.get("/llm_gate/me", tk), &me); err != nil || len(me.Windows) != 1 {
		t.Fatalf("%+v %v", me, err)
	}
	// The counters hold the last commit's checkpoint: at least a second
	// before the kill, and up to a few KiB of text estimated at four bytes
	// a token, against ~1,400 tokens generated.
	used := me.Windows[0].Used
	t.Logf("after kill -9: %d tokens used; the emulator generated %d for the stream", used, generated)
	if used < generated/3 || used > generated+1100 {
		t.Fatal("the stream's tokens so far are not in the counters")
	}
	// The usage reports hold it too: the open record the last commit wrote
	// became an incomplete record, with the counts the counters hold.
	var reqs struct {
		Requests []struct {
			store.Record
			DurationMS float64 `json:"duration_ms"`
		} `json:"requests"`
	}
	if err := jsonDecode(mustGet(t, p.admin+"/llm_gate/requests?user=long"), &reqs); err != nil {
		t.Fatal(err)
	}
	if len(reqs.Requests) != 1 {
		t.Fatalf("after kill -9: %d records of the stream: %+v", len(reqs.Requests), reqs.Requests)
	}
	r := reqs.Requests[0]
	if !r.Incomplete || !r.Estimated || r.Status != 200 || r.PromptTokens+r.CompletionTokens != used || r.PromptTokens == 0 || r.DurationMS < 2000 {
		t.Fatalf("after kill -9: record %+v; want incomplete, estimated, status 200, %d tokens, 2 s or more", r, used)
	}
	var usage struct {
		Rows []store.UsageRow `json:"rows"`
	}
	if err := jsonDecode(mustGet(t, p.admin+"/llm_gate/usage?user=long"), &usage); err != nil {
		t.Fatal(err)
	}
	if len(usage.Rows) != 1 || usage.Rows[0].Requests != 1 || usage.Rows[0].PromptTokens+usage.Rows[0].CompletionTokens != used {
		t.Fatalf("after kill -9: usage %+v; want 1 request of %d tokens", usage.Rows, used)
	}
	if !strings.Contains(p.log.String(), "as incomplete") {
		t.Errorf("no log of the recovery:\n%s", p.log)
	}
}

func mustGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return resp
}

// TestReloadUnderLoadLosesNothing: config reloads while streams are running
// neither block on the bbolt lock nor lose or reset any count.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 200, DefaultLength: 30}, flush: "1s",
		global: "plan big {\n\t\t\ttokens 100000000 per day\n\t\t}", site: "plan big"})
	tk := token(t, "judy", nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, failed := 0, 0
	stop := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// A keep-alive connection the old server closes at a reload
				// fails before it reaches the gate; clients retry those.
				status, err := e.tryPost("/v1/chat/completions", tk, chatBody("sim-model", true, nil))
				mu.Lock()
				if err != nil {
					failed++
				} else if status == 200 {
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	file := strings.NewReplacer("{GLOBAL}", "plan big {\n\t\t\ttokens 100000000 per day\n\t\t}", "{SITE}", "plan big").Replace(gateCaddyfile)
	for i := range 4 {
		time.Sleep(150 * time.Millisecond)
		// Each reload changes the config so Caddy really reloads.
		if err := e.caddy.Load(strings.Replace(file, "max_parallel 1000", fmt.Sprintf("max_parallel %d", 1000+i), 1)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	c := e.sim.Counters()
	t.Logf("%d requests answered, %d connection errors, %d reached the emulator", ok, failed, c.Requests)
	recs := e.waitRecords("judy", int(c.Requests))
	var prompt, completion int64
	for _, r := range recs {
		prompt += r.PromptTokens
		completion += r.CompletionTokens
	}
	if int64(len(recs)) != c.Requests || ok == 0 || prompt != c.PromptTokens || completion != c.GenerationTokens {
		t.Fatalf("%d records of %d requests; %d+%d tokens recorded, emulator counted %d+%d", len(recs), c.Requests, prompt, completion, c.PromptTokens, c.GenerationTokens)
	}
	// The counters survived the reloads too.
	var me struct {
		Windows []struct {
			Window string `json:"window"`
			Used   int64  `json:"used"`
		} `json:"windows"`
	}
	req, _ := http.NewRequest("GET", e.base+"/llm_gate/me", nil)
	req.Header.Set("Authorization", "Bearer "+tk)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonDecode(resp, &me); err != nil || len(me.Windows) != 1 || me.Windows[0].Used != prompt+completion {
		t.Fatalf("self-service after reloads: %+v %v (want used %d)", me, err, prompt+completion)
	}
}

// openRecords reads a user's records straight from a bbolt file no process
// holds any more.
func openRecords(t *testing.T, db, user string) []store.Record {
	t.Helper()
	st, err := store.Open(db, store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, _, err := st.Records(store.RecordQuery{User: user, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func newSimServer(t *testing.T, sim *vllmsim.Server) string {
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return srv.URL
}

func readAllErr(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// TestBinary: the Caddy that `go build ./cmd/caddy` makes lists the three
// modules, and `caddy validate` of a config whose bbolt file a running Caddy
// holds neither blocks nor fails (the store opens lazily, never in
// provisioning).
func TestBinary(t *testing.T) {
	out, err := exec.Command(binary(t), "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, m := range []string{"llm_gate", "http.handlers.llm_gate", "admin.api.llm_gate", "http.reverse_proxy.transport.llm_gate"} {
		if !strings.Contains("\n"+string(out), "\n"+m+"\n") {
			t.Errorf("list-modules lacks %s", m)
		}
	}
	srv := newSimServer(t, vllmsim.New(vllmsim.Config{}))
	db := filepath.Join(t.TempDir(), "gate.db")
	file := strings.NewReplacer("{DB}", db, "{FLUSH}", "0", "{SECRET}", testSecret, "{UPSTREAM}", srv, "{GLOBAL}", "", "{SITE}", "").Replace(gateCaddyfile)
	p := startProc(t, file)
	e := &env{t: t, base: p.base}
	mustStatus(t, e.post("/v1/chat/completions", token(t, "vera", nil), chatBody("sim-model", false, nil)), 200) // the file is open now
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	os.WriteFile(cfg, []byte(strings.NewReplacer("{ADMIN}", "2998", "{HTTP}", "18999", "{HTTPS}", "18998").Replace(file)), 0o600)
	// Were the file opened, bbolt's lock timeout would fail the validation.
	cmd := exec.Command(binary(t), "validate", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
}
