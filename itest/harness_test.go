// Package itest drives a real Caddy with the whole plugin, in this process,
// in front of the vLLM emulator on a real socket, with a real bbolt file.
package itest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/llmgate/llmgate/internal/testcaddy"
	"github.com/llmgate/llmgate/internal/vllmsim"
)

const testSecret = "itest-secret-0123456789abcdef0123456789"

// env is one test's world: an emulator, a Caddy with the gate in front of
// it, and the bbolt file behind the gate.
type env struct {
	t      *testing.T
	sim    *vllmsim.Server
	simURL string
	caddy  *testcaddy.Instance
	db     string
	base   string
}

// gateCaddyfile is the default test config; {GLOBAL} and {SITE} let a test
// add lines to the global llm_gate block and to the site's llm_gate block.
const gateCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	http_port {HTTP}
	https_port {HTTPS}
	llm_gate {
		db {DB}
		flush_interval {FLUSH}
		plan unlimited {
			max_parallel 1000
		}
		{GLOBAL}
	}
}

http://127.0.0.1:{HTTP} {
	llm_gate {
		jwt {
			secret {SECRET}
			plan_claim plan
			limit_claim token_limit
		}
		self_service /llm_gate/me
		{SITE}
	}
	reverse_proxy {UPSTREAM}
}
`

type envOpts struct {
	sim    vllmsim.Config
	flush  string
	global string
	site   string
	file   string // a whole Caddyfile instead of gateCaddyfile
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	if o.flush == "" {
		o.flush = "0"
	}
	e := &env{t: t, sim: vllmsim.New(o.sim), db: filepath.Join(t.TempDir(), "gate.db")}
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	e.simURL = srv.URL
	file := o.file
	if file == "" {
		file = gateCaddyfile
	}
	file = strings.ReplaceAll(file, "{GLOBAL}", o.global)
	file = strings.ReplaceAll(file, "{SITE}", o.site)
	e.caddy = testcaddy.Start(t, file, map[string]string{
		"{DB}": e.db, "{FLUSH}": o.flush, "{SECRET}": testSecret, "{UPSTREAM}": srv.URL,
	})
	e.base = e.caddy.HTTP
	return e
}

// token mints an HS256 JWT for user with extra claims.
func token(t testing.TB, user string, extra map[string]any) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for k, v := range extra {
		claims[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// post sends a JSON body with a bearer credential.
func (e *env) post(path, cred string, body any, hdr ...string) *http.Response {
	e.t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, e.base+path, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func readAll(t testing.TB, r io.ReadCloser) []byte {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// admin calls the gate's admin API and decodes the JSON answer into out.
func (e *env) admin(method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.caddy.Admin+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b := readAll(e.t, resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// record is the admin API's view of a per-request record.
type record struct {
	User             string  `json:"user"`
	KeyID            string  `json:"key_id"`
	Model            string  `json:"model"`
	Endpoint         string  `json:"endpoint"`
	Status           int     `json:"status"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	Estimated        bool    `json:"estimated"`
	TTFTms           float64 `json:"ttft_ms"`
}

func (e *env) records(user string) []record {
	e.t.Helper()
	var out struct {
		Requests []record `json:"requests"`
	}
	if st := e.admin("GET", "/llm_gate/requests?limit=1000&user="+user, nil, &out); st != 200 {
		e.t.Fatalf("GET /llm_gate/requests: %d", st)
	}
	return out.Requests
}

// sseEvent is one event as the client saw it, with its arrival time.
type sseEvent struct {
	data string
	at   time.Time
}

// readSSE reads a stream event by event.
func readSSE(t testing.TB, r io.Reader) []sseEvent {
	t.Helper()
	var out []sseEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if cur.Len() > 0 {
				out = append(out, sseEvent{data: cur.String(), at: time.Now()})
				cur.Reset()
			}
			continue
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			cur.WriteString(d)
		}
	}
	return out
}

func chatBody(model string, stream bool, extra map[string]any) map[string]any {
	b := map[string]any{
		"model":    model,
		"messages": []map[string]any{{"role": "user", "content": "Tell me a story about a cat."}},
		"stream":   stream,
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func mustStatus(t testing.TB, resp *http.Response, want int) []byte {
	t.Helper()
	b := readAll(t, resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, want, b)
	}
	return b
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// tryPost is post for goroutines: it returns the error instead of failing.
func (e *env) tryPost(path, cred string, body any) (int, error) {
	req, err := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(mustJSON(e.t, body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// assertUnbuffered checks that a stream's content events arrived as the
// emulator produced them, one every 50 ms at 20 tokens/s, rather than in
// one burst: their arrival must spread over >= 70% of the generation time.
func assertUnbuffered(t *testing.T, events []sseEvent) {
	t.Helper()
	var content []time.Time
	for _, ev := range events {
		if strings.Contains(ev.data, `"content":"`) && !strings.Contains(ev.data, `"content":""`) {
			content = append(content, ev.at)
		}
	}
	if len(content) < 9 {
		t.Fatalf("%d content events, want >= 9: %v", len(content), events)
	}
	gaps := make([]time.Duration, 0, len(content)-1)
	for i := 1; i < len(content); i++ {
		gaps = append(gaps, content[i].Sub(content[i-1]))
	}
	spread := content[len(content)-1].Sub(content[0])
	t.Logf("per-event gaps %v; spread %v", gaps, spread)
	if want := time.Duration(len(content)-1) * 50 * time.Millisecond * 7 / 10; spread < want {
		t.Fatalf("events arrived within %v, want them spread over >= %v (buffered?)", spread, want)
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	if med := gaps[len(gaps)/2]; med < 25*time.Millisecond {
		t.Fatalf("median gap between events %v; the emulator sends one every 50ms", med)
	}
	if last := events[len(events)-1].data; last != "[DONE]" {
		t.Fatalf("stream ends with %q, want [DONE]", last)
	}
}
