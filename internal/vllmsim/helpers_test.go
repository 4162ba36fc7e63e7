package vllmsim

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// start serves a new emulator on a real loopback socket.
func start(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	sim := New(cfg)
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	return sim, ts
}

// call sends a request; hdr is alternating header names and values. A body
// gets Content-Type: application/json unless hdr sets one.
func call(t testing.TB, ts *httptest.Server, method, path, body string, hdr ...string) *http.Response {
	t.Helper()
	return callCtx(context.Background(), t, ts, method, path, body, hdr...)
}

func callCtx(ctx context.Context, t testing.TB, ts *httptest.Server, method, path, body string, hdr ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// post sends a JSON POST and returns status and body.
func post(t testing.TB, ts *httptest.Server, path, body string, hdr ...string) (int, string) {
	t.Helper()
	resp := call(t, ts, http.MethodPost, path, body, hdr...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func get(t testing.TB, ts *httptest.Server, path string, hdr ...string) (int, string) {
	t.Helper()
	resp := call(t, ts, http.MethodGet, path, "", hdr...)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// events splits an SSE body into its events (without the blank lines).
func events(body string) []string {
	var out []string
	for _, ev := range strings.Split(body, "\n\n") {
		if ev != "" {
			out = append(out, ev)
		}
	}
	return out
}

// payloads returns the JSON of every data: event before [DONE].
func payloads(t testing.TB, body string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ev := range events(body) {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok {
			t.Fatalf("event without data: %q", ev)
		}
		if data == "[DONE]" {
			break
		}
		out = append(out, decode(t, data))
	}
	return out
}

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
	return m
}

var (
	createdRE = regexp.MustCompile(`"created(_at)?":\d+`)
	idRE      = regexp.MustCompile(`"(id|item_id)":"(chatcmpl-|cmpl-|resp_|msg_|embd-|score-|rerank-)[0-9a-f]+"`)
)

// normalize blanks what legitimately differs between two identical requests.
func normalize(s string) string {
	s = createdRE.ReplaceAllString(s, `"created$1":0`)
	return idRE.ReplaceAllString(s, `"${1}":"${2}X"`)
}

// usageOf returns prompt and completion tokens of a usage object.
func usageOf(t testing.TB, v any) (int, int) {
	t.Helper()
	u, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("usage is %T %v", v, v)
	}
	p, c := int(u["prompt_tokens"].(float64)), int(u["completion_tokens"].(float64))
	if tot := int(u["total_tokens"].(float64)); tot != p+c {
		t.Fatalf("total_tokens %d != %d + %d", tot, p, c)
	}
	return p, c
}

// waitCounters polls until cond holds (the server books aborts after the
// client left, so tests must wait for it) or fails after 5 s.
func waitCounters(t testing.TB, sim *Server, cond func(Counters) bool) Counters {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := sim.Counters()
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters never matched: %+v", c)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metrics scrapes /metrics into "name{labels}" → value.
func metrics(t testing.TB, ts *httptest.Server) map[string]float64 {
	t.Helper()
	resp := call(t, ts, http.MethodGet, "/metrics", "")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("metrics content type %q", ct)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

const modelLabels = `model_name="sim-model",engine="0"`

// chatBody builds a chat request with one user message.
func chatBody(content string, extra string) string {
	c, _ := json.Marshal(content)
	b := `{"model":"sim-model","messages":[{"role":"user","content":` + string(c) + `}]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

// chatText concatenates the content deltas of a chat stream per index.
func chatText(chunks []map[string]any) map[int]string {
	out := map[int]string{}
	for _, ch := range chunks {
		for _, c := range ch["choices"].([]any) {
			c := c.(map[string]any)
			d := c["delta"].(map[string]any)
			if s, ok := d["content"].(string); ok {
				out[int(c["index"].(float64))] += s
			}
		}
	}
	return out
}
