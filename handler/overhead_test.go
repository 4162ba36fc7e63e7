package handler_test

// The gate's own cost per request, measured without an upstream: one Caddy
// with two sites that answer a non-streaming chat completion from a handler
// standing for reverse_proxy, one with llm_gate in front and one without.
// Calling each site's caddyhttp.Server directly leaves only the work of
// Caddy's handler chain, so the difference between the two benchmarks is
// the gate's (identify, parse, count, admit, meter, settle, record).
// BenchmarkOverheadSocket goes through the sites' listeners instead, as a
// client does.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/llmgate/llmgate/internal/testcaddy"
)

func TestMain(m *testing.M) { testcaddy.Main(m) }

func init() {
	caddy.RegisterModule(overheadAnswerer{})
	httpcaddyfile.RegisterHandlerDirective("overhead_answer", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return new(overheadAnswerer), nil
	})
}

// overheadAnswerer stands for the upstream: it answers every request with
// overheadAnswer, as reverse_proxy would relay it (`respond` would spend its
// time looking for placeholders in the JSON's braces).
type overheadAnswerer struct{}

func (overheadAnswerer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.overhead_answer", New: func() caddy.Module { return new(overheadAnswerer) }}
}

func (*overheadAnswerer) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// reverse_proxy sends the body on; on a real connection, reading it to
	// its end is work of its own for net/http (a read of the next request
	// starts in the background).
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return err
	}
	if v := r.Header["X-Overhead-Events"]; len(v) == 1 {
		n, err := strconv.Atoi(v[0])
		if err != nil {
			return err
		}
		return serveOverheadStream(w, n)
	}
	w.Header()["Content-Type"] = []string{"application/json"}
	w.Header()["Content-Length"] = []string{overheadAnswerLen} // as vLLM sends it
	w.WriteHeader(http.StatusOK)
	_, err := io.WriteString(w, overheadAnswer)
	return err
}

// serveOverheadStream answers as vLLM streams a chat completion asked with
// include_usage, n chunks of four tokens, then the usage chunk and [DONE],
// each written and flushed as reverse_proxy relays an SSE stream.
func serveOverheadStream(w http.ResponseWriter, n int) error {
	w.Header()["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	for range n {
		if err := send(overheadChunkBytes); err != nil {
			return err
		}
	}
	if err := send(overheadUsageBytes); err != nil {
		return err
	}
	return send(overheadDoneBytes)
}

var (
	overheadChunkBytes = []byte(overheadChunk)
	overheadUsageBytes = []byte(overheadUsageChunk)
	overheadDoneBytes  = []byte("data: [DONE]\n\n")
)

// A chunk of the emulator's stream at four tokens a chunk, and its usage
// chunk for a stream of 64 of them.
const (
	overheadChunk         = `data: {"id":"chatcmpl-b446bd57ec03f20b","object":"chat.completion.chunk","created":1795603876,"model":"sim-model","choices":[{"index":0,"delta":{"content":" new river as one"},"logprobs":null,"finish_reason":null,"token_ids":null}]}` + "\n\n"
	overheadUsageChunk    = `data: {"id":"chatcmpl-b446bd57ec03f20b","object":"chat.completion.chunk","created":1795603876,"model":"sim-model","choices":[],"usage":{"prompt_tokens":15,"total_tokens":271,"completion_tokens":256}}` + "\n\n"
	overheadStreamRequest = `{"max_tokens":256,"messages":[{"content":"Write one short sentence about the sea.","role":"user"}],"model":"sim-model","stream":true,"stream_options":{"include_usage":true}}`
)

const overheadSecret = "overhead-secret-0123456789abcdef0123456789"

var overheadAnswerLen = strconv.Itoa(len(overheadAnswer))

// The emulator's answer to the benchmark's small chat request.
const overheadAnswer = `{"id":"chatcmpl-b446bd57ec03f20b","object":"chat.completion","created":1795603876,"model":"sim-model","choices":[{"index":0,"message":{"role":"assistant","content":" new river as one some story by will data and at we server is not time","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":15,"total_tokens":31,"completion_tokens":16,"prompt_tokens_details":null,"completion_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`

const overheadRequest = `{"max_tokens":16,"messages":[{"content":"Write one short sentence about the sea.","role":"user"}],"model":"sim-model","stream":false}`

const overheadCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	http_port {HTTP}
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	llm_gate {
		db {DB}
		flush_interval {FLUSH}
		plan bench {
			tokens 1000000000000000 per day
		}
		default_plan bench
	}
}

http://127.0.0.1:{PLAIN} {
	route {
		overhead_answer
	}
}

http://127.0.0.1:{GATE} {
	route {
		llm_gate {
			jwt {
				secret ` + overheadSecret + `
			}
			api_keys
			plan bench
		}
		overhead_answer
	}
}
`

// overheadSites are the benchmark's two sites, as handlers to call directly
// and as URLs of their listeners, and a JWT the gate accepts.
type overheadSites struct {
	plain, gated       http.Handler
	plainURL, gatedURL string
	token              string
	admin              string // the admin API's base URL
}

// overheadServers starts the Caddy of the benchmark and returns its plain
// and gate servers and a JWT the gate accepts.
func overheadServers(tb testing.TB) (plain, gated http.Handler, token string) {
	s := startOverhead(tb)
	return s.plain, s.gated, s.token
}

// startOverhead starts the Caddy of the benchmark, which commits usage
// every second.
func startOverhead(tb testing.TB) overheadSites {
	tb.Helper()
	return startOverheadFlush(tb, "1s")
}

// startOverheadFlush is startOverhead with the given flush_interval.
func startOverheadFlush(tb testing.TB, flush string) overheadSites {
	tb.Helper()
	plainPort, gatePort := testcaddy.FreePort(tb), testcaddy.FreePort(tb)
	in := testcaddy.Start(tb, overheadCaddyfile, map[string]string{
		"{DB}":    filepath.Join(tb.TempDir(), "gate.db"),
		"{FLUSH}": flush,
		"{PLAIN}": itoa(plainPort),
		"{GATE}":  itoa(gatePort),
	})
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		tb.Fatal(err)
	}
	var plain, gated http.Handler
	for _, srv := range app.(*caddyhttp.App).Servers {
		for _, l := range srv.Listen {
			switch {
			case strings.HasSuffix(l, ":"+itoa(plainPort)):
				plain = srv
			case strings.HasSuffix(l, ":"+itoa(gatePort)):
				gated = srv
			}
		}
	}
	if plain == nil || gated == nil {
		tb.Fatal("the benchmark's servers are not running")
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "bench", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(overheadSecret))
	if err != nil {
		tb.Fatal(err)
	}
	return overheadSites{
		plain: plain, gated: gated, token: token, admin: in.Admin,
		plainURL: "http://127.0.0.1:" + itoa(plainPort) + "/v1/chat/completions",
		gatedURL: "http://127.0.0.1:" + itoa(gatePort) + "/v1/chat/completions",
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// discard is a ResponseWriter that keeps the status, the size and the
// number of flushes.
type discard struct {
	hdr     http.Header
	status  int
	n       int
	flushes int
}

func (d *discard) Header() http.Header         { return d.hdr }
func (d *discard) WriteHeader(status int)      { d.status = status }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discard) Flush()                      { d.flushes++ }

// serveOne sends the benchmark's request through h.
func serveOne(h http.Handler, token string, d *discard) {
	serveBody(h, token, overheadRequest, d)
}

// serveBody sends a chat completion request with body through h.
func serveBody(h http.Handler, token, body string, d *discard) {
	serveRequest(h, token, body, 0, d)
}

// serveRequest sends a chat completion request with body through h; with
// events above 0, the answerer streams that many chunks.
func serveRequest(h http.Handler, token, body string, events int, d *discard) {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/v1/chat/completions", strings.NewReader(body))
	r.Header["Content-Type"] = []string{"application/json"}
	if events > 0 {
		r.Header["X-Overhead-Events"] = []string{itoa(events)}
	}
	if token != "" {
		r.Header["Authorization"] = []string{"Bearer " + token}
	}
	clear(d.hdr)
	d.status, d.n, d.flushes = 0, 0, 0
	h.ServeHTTP(d, r)
}

// The harness must measure what it claims: both sites answer the same
// body, and only the gate adds its rate-limit headers and needs the token.
func TestOverheadHarness(t *testing.T) {
	plain, gated, token := overheadServers(t)
	for _, c := range []struct {
		name  string
		h     http.Handler
		token string
		want  int
	}{{"plain", plain, "", 200}, {"gate", gated, token, 200}, {"gate without token", gated, "", 401}} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/v1/chat/completions", strings.NewReader(overheadRequest))
		r.Header.Set("Content-Type", "application/json")
		if c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		c.h.ServeHTTP(rec, r)
		if rec.Code != c.want {
			t.Fatalf("%s: status %d, want %d: %s", c.name, rec.Code, c.want, rec.Body)
		}
		if c.want == 200 && rec.Body.String() != overheadAnswer {
			t.Errorf("%s: body %q", c.name, rec.Body)
		}
		if got := rec.Header().Get("X-Ratelimit-Limit-Tokens"); (c.name == "gate") != (got != "") {
			t.Errorf("%s: x-ratelimit-limit-tokens %q", c.name, got)
		}
	}
	d := &discard{hdr: http.Header{}}
	serveOne(gated, token, d)
	if d.status != 200 || d.n != len(overheadAnswer) {
		t.Fatalf("serveOne: status %d, %d bytes", d.status, d.n)
	}
}

// The socket benchmark's path: both listeners answer the same body to the
// same request.
func TestOverheadSocketHarness(t *testing.T) {
	s := startOverhead(t)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, url := range []string{s.plainURL, s.gatedURL} {
		postOverhead(t, client, url, s.token)
	}
}

// BenchmarkOverhead/plain and /gate run the same request through the two
// sites, one at a time; /…-parallel on every core, so that the gate's
// background work (commits, GC) is part of the figure. gate − plain is
// what llm_gate costs per request.
func BenchmarkOverhead(b *testing.B) {
	benchSites(b, serveOne, func(d *discard) error {
		if d.status != 200 {
			return fmt.Errorf("status %d", d.status)
		}
		return nil
	}, 0)
}

// BenchmarkOverheadStream streams 64 chunks of four tokens through each
// site (the bench's stream scenario at its 4-token chunks), one stream at a
// time, and in parallel on every core; ns/event is a stream's time over its
// 66 events, allocs/op a whole stream's. gate − plain is what the gate's
// stream meter and writer cost.
func BenchmarkOverheadStream(b *testing.B) {
	const events = 64
	want := streamBytes(events)
	benchSites(b, func(h http.Handler, token string, d *discard) { serveStream(h, token, events, d) }, func(d *discard) error {
		if d.status != 200 || d.n != want {
			return fmt.Errorf("status %d, %d bytes of %d", d.status, d.n, want)
		}
		return nil
	}, events+2)
}

// benchSites runs serve through the plain and the gate site, one request at
// a time and in parallel on every core; ok checks an answer. With events
// set, each request's time is reported per event too.
func benchSites(b *testing.B, serve func(h http.Handler, token string, d *discard), ok func(*discard) error, events int) {
	plain, gated, token := overheadServers(b)
	perEvent := func(b *testing.B) {
		if events > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
		}
	}
	for _, c := range []struct {
		name  string
		h     http.Handler
		token string
	}{{"plain", plain, ""}, {"gate", gated, token}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			d := &discard{hdr: http.Header{}}
			for b.Loop() {
				serve(c.h, c.token, d)
			}
			if err := ok(d); err != nil {
				b.Fatal(err)
			}
			perEvent(b)
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				d := &discard{hdr: http.Header{}}
				for pb.Next() {
					serve(c.h, c.token, d)
					if err := ok(d); err != nil {
						b.Error(err)
						return
					}
				}
			})
			perEvent(b)
		})
	}
}

// serveStream sends the stream request through h, which the answerer
// answers with events chunks.
func serveStream(h http.Handler, token string, events int, d *discard) {
	serveRequest(h, token, overheadStreamRequest, events, d)
}

// streamBytes is the size of the answerer's stream of events chunks.
func streamBytes(events int) int {
	return events*len(overheadChunk) + len(overheadUsageChunk) + len(overheadDoneBytes)
}

// The gate relays and meters a stream's events without an allocation
// each, in the steady state: through the whole gate site (writer, meter,
// progress report, end search), a stream of 256 chunks allocates no more
// than one of 16, beyond what the same two streams allocate through the
// plain site.
func TestStreamAllocsPerEvent(t *testing.T) {
	plain, gated, token := overheadServers(t)
	allocs := func(h http.Handler, token string, events int) float64 {
		d := &discard{hdr: http.Header{}}
		// The least of three measurements: the gate's commits run
		// in the background once a second and allocate too.
		least := math.Inf(1)
		for range 3 {
			least = min(least, testing.AllocsPerRun(20, func() { serveStream(h, token, events, d) }))
		}
		if d.status != 200 || d.n != streamBytes(events) {
			t.Fatalf("status %d, %d bytes of %d", d.status, d.n, streamBytes(events))
		}
		return least
	}
	plainPerEvent := (allocs(plain, "", 256) - allocs(plain, "", 16)) / 240
	gatePerEvent := (allocs(gated, token, 256) - allocs(gated, token, 16)) / 240
	t.Logf("allocations an event: plain %.3f, gate %.3f", plainPerEvent, gatePerEvent)
	if gatePerEvent-plainPerEvent > 0.02 {
		t.Errorf("the gate allocates %.3f times an event more than plain", gatePerEvent-plainPerEvent)
	}
}

// conversation renders a chat request with a system prompt and turns
// earlier exchanges, each message starting with tag, then a new question.
func conversation(turns int, tag string) string {
	msgs := []map[string]string{{"role": "system", "content": tag + " You are the support assistant of a bank. Answer briefly, cite the relevant policy section, and never ask for a full card number or a password."}}
	for i := range turns {
		msgs = append(msgs,
			map[string]string{"role": "user", "content": tag + " Turn " + itoa(i) + ": how do I raise the daily limit of my card when I travel abroad next month?"},
			map[string]string{"role": "assistant", "content": tag + " In the app, open Cards, choose the card, then Limits; travel limits apply for up to 90 days (policy 4.2). A raise above 5,000 needs a call."})
	}
	msgs = append(msgs, map[string]string{"role": "user", "content": "And what about cash withdrawals?"})
	b, err := json.Marshal(map[string]any{"model": "sim-model", "max_tokens": 16, "messages": msgs})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// BenchmarkOverheadConversation runs a 10-turn conversation (about 3 KiB of
// messages) through the gate: "resent" sends the same history every time,
// as a client resends it turn after turn, and the tokenizer's text cache
// counts each message once; "new" tags every message with the request's
// number, so each one is counted in full. new − resent is what the cache
// saves per request.
func BenchmarkOverheadConversation(b *testing.B) {
	plain, gated, token := overheadServers(b)
	resent := conversation(10, "#0")
	b.Run("plain", func(b *testing.B) {
		d := &discard{hdr: http.Header{}}
		for b.Loop() {
			serveBody(plain, "", resent, d)
		}
	})
	b.Run("gate-resent", func(b *testing.B) {
		d := &discard{hdr: http.Header{}}
		for b.Loop() {
			serveBody(gated, token, resent, d)
		}
		if d.status != 200 {
			b.Fatalf("status %d", d.status)
		}
	})
	b.Run("gate-new", func(b *testing.B) {
		d := &discard{hdr: http.Header{}}
		bodies := make([]string, 1024) // built before the timer: rendering is not the gate's work
		n := 0
		for b.Loop() {
			if n%len(bodies) == 0 {
				b.StopTimer()
				for i := range bodies {
					bodies[i] = conversation(10, "#"+itoa(n+i+1))
				}
				b.StartTimer()
			}
			serveBody(gated, token, bodies[n%len(bodies)], d)
			n++
		}
		if d.status != 200 {
			b.Fatalf("status %d", d.status)
		}
	})
}

// BenchmarkOverheadSocket sends the request to each site's listener over
// HTTP/1.1 on loopback, one at a time, and reads the answer to its end: the
// latency a client sees, with the client, the connection and net/http's
// work included, which BenchmarkOverhead leaves out.
func BenchmarkOverheadSocket(b *testing.B) {
	s := startOverhead(b)
	for _, c := range []struct{ name, url string }{{"plain", s.plainURL}, {"gate", s.gatedURL}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			b.ReportAllocs()
			for b.Loop() {
				postOverhead(b, client, c.url, s.token)
			}
		})
	}
	// paired alternates the two sites request by request (which goes first
	// alternating too), so that both meet the machine in the same state, and
	// reports the median of the per-pair differences: a steadier gate −
	// plain than the difference of the two runs above. Its ns/op is a pair.
	b.Run("paired", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		var plain, added []float64
		timed := func(url string) time.Duration {
			t0 := time.Now()
			postOverhead(b, client, url, s.token)
			return time.Since(t0)
		}
		for i := 0; b.Loop(); i++ {
			var p, g time.Duration
			if i%2 == 0 {
				p, g = timed(s.plainURL), timed(s.gatedURL)
			} else {
				g, p = timed(s.gatedURL), timed(s.plainURL)
			}
			plain = append(plain, float64(p.Nanoseconds())/1e3)
			added = append(added, float64((g-p).Nanoseconds())/1e3)
		}
		b.ReportMetric(median(plain), "plain-µs")
		b.ReportMetric(median(added), "added-µs")
	})
}

// median returns the middle value of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// postOverhead sends the benchmark's request to url and reads the answer.
func postOverhead(tb testing.TB, client *http.Client, url, token string) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(overheadRequest))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || string(body) != overheadAnswer {
		tb.Fatalf("status %d, %d bytes, %v", res.StatusCode, len(body), err)
	}
}

// BenchmarkOverheadUsers sends the request of BenchmarkOverhead/gate-parallel
// with API keys: keys=1 with one user's key every time, keys=10000 round-robin
// through the keys of 10,000 users, as the bench's many-users scenario does.
// The difference is what per-user state costs: lookups in maps of 10,000
// entries, and a counter and an hourly aggregate per user in every commit
// (the background commits run on the same cores, so they are in ns/op).
// Usage is committed every 100ms: served here at 100,000 requests a
// second or so, a commit then holds about as many requests, and as many
// distinct users, as one of the bench's (a second of 5,000 to 8,000).
func BenchmarkOverheadUsers(b *testing.B) {
	s := startOverheadFlush(b, "100ms")
	keys := createKeys(b, s.admin, 10000)
	for _, n := range []int{1, len(keys)} {
		b.Run("keys="+itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				d := &discard{hdr: http.Header{}, status: 200}
				for pb.Next() {
					serveOne(s.gated, keys[int(next.Add(1))%n], d)
					if d.status != 200 {
						b.Errorf("status %d", d.status)
						return
					}
				}
			})
		})
	}
}

// createKeys creates n users, bench-0 to bench-(n-1), with one API key each
// through the admin API (a PUT and a POST each), and returns the keys in
// that order.
func createKeys(tb testing.TB, admin string, n int) []string {
	tb.Helper()
	keys := make([]string, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				user := admin + "/llm_gate/users/bench-" + itoa(i)
				put, _ := http.NewRequest(http.MethodPut, user, strings.NewReader(`{"plan":"bench"}`))
				res, err := http.DefaultClient.Do(put)
				if err == nil {
					res.Body.Close()
					if res.StatusCode >= 300 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err == nil {
					res, err = http.Post(user+"/keys", "application/json", strings.NewReader(`{"name":"bench"}`))
				}
				if err != nil {
					failed.Store(fmt.Sprintf("creating user bench-%d and its key: %v", i, err))
					return
				}
				var out struct{ Key string }
				err = json.NewDecoder(res.Body).Decode(&out)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusCreated || !strings.HasPrefix(out.Key, "sk-") {
					failed.Store(fmt.Sprintf("creating a key for bench-%d: status %d, %v", i, res.StatusCode, err))
					return
				}
				keys[i] = out.Key
			}
		})
	}
	wg.Wait()
	if msg := failed.Load(); msg != nil {
		tb.Fatal(msg)
	}
	return keys
}
