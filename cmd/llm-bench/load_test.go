package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/llmgate/llmgate/internal/vllmsim"
	"github.com/llmgate/llmgate/tokenizer"
)

func TestReadStream(t *testing.T) {
	ev := func(s string) string { return "data: " + s + "\n\n" }
	long := strings.Repeat("x", 10<<10) // longer than the 4 KiB read buffer
	tests := []struct {
		name      string
		body      string
		minEvents int
		events    int
		gaps      int
		wantErr   string
	}{
		{"complete", ev(`{"a":1}`) + ev(`{"a":2}`) + ev(`{"a":3}`) + ev("[DONE]"), 3, 3, 2, ""},
		{"CRLF and comments", ": ping\r\n\r\n" + "data: {}\r\n\r\n" + "event: x\r\ndata: {}\r\n\r\n" + "data: [DONE]\r\n\r\n", 2, 2, 1, ""},
		{"no space after colon", "data:{}\n\ndata:[DONE]\n\n", 1, 1, 0, ""},
		{"line longer than the buffer counts once", ev(`{"t":"`+long+`"}`) + ev(`{}`) + ev("[DONE]"), 2, 2, 1, ""},
		{"data inside a long line is not an event", ev(`{"t":"`+long+`data: x"}`) + ev("[DONE]"), 1, 1, 0, ""},
		{"cut before DONE", ev(`{}`) + ev(`{}`), 1, 2, 1, "without [DONE] after 2 events"},
		{"too few events", ev(`{}`) + ev("[DONE]"), 3, 1, 0, "had 1 events, want >= 3"},
		{"empty", "", 0, 0, 0, "without [DONE] after 0 events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			firsts := 0
			r := readStream(iotest.OneByteReader(strings.NewReader(tt.body)), time.Now(), tt.minEvents, func() { firsts++ })
			if tt.wantErr == "" && r.err != nil || tt.wantErr != "" && (r.err == nil || !strings.Contains(r.err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", r.err, tt.wantErr)
			}
			if r.events != tt.events || len(r.gaps) != tt.gaps {
				t.Errorf("%d events, %d gaps; want %d, %d", r.events, len(r.gaps), tt.events, tt.gaps)
			}
			if want := min(tt.events, 1); firsts != want {
				t.Errorf("first called %d times, want %d", firsts, want)
			}
			if tt.events > 0 && r.ttft <= 0 {
				t.Errorf("ttft %v", r.ttft)
			}
		})
	}
	// A read error mid-stream is reported as such.
	r := readStream(io.MultiReader(strings.NewReader(ev("{}")), iotest.ErrReader(io.ErrClosedPipe)), time.Now(), 1, nil)
	if r.err == nil || !strings.Contains(r.err.Error(), "after 1 events") {
		t.Errorf("read error: %v", r.err)
	}
}

// simServer runs the emulator in this process.
func simServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(vllmsim.New(vllmsim.Config{}))
	t.Cleanup(srv.Close)
	return srv
}

// twoAndBroken returns targets "a" and "b" on one emulator and "bad" on a
// server that answers 500, each with conns connections.
func twoAndBroken(t *testing.T, conns int) []*Target {
	t.Helper()
	srv := simServer(t)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	return []*Target{
		target("a", srv.URL, conns, false, nil, nil),
		target("b", srv.URL, conns, false, nil, nil),
		target("bad", broken.URL, conns, false, nil, nil),
	}
}

// TestInterleaved: one client takes the targets in turn, so each gets its
// share of the requests, and a failing one costs the others nothing.
func TestInterleaved(t *testing.T) {
	var errs ErrorLog
	ts := twoAndBroken(t, 1)
	ws := Interleaved(context.Background(), ts, chatBody("sim-model", smallPrompt, 4, false), 100*time.Millisecond, &errs, "i")
	if len(ws) != 3 {
		t.Fatalf("%d windows", len(ws))
	}
	a, b, bad := ws[0], ws[1], ws[2]
	if a.OK == 0 || a.Errors != 0 || b.Errors != 0 || len(a.Lat) != a.OK || a.Elapsed <= 0 {
		t.Fatalf("good targets: %+v %+v", a, b)
	}
	if d := a.OK - b.OK; d < -1 || d > 1 {
		t.Errorf("unequal shares: %d and %d requests", a.OK, b.OK)
	}
	if bad.OK != 0 || bad.Errors < a.OK-1 || errs.Total() != bad.Errors || !strings.Contains(errs.Lines()[0], "i bad: status 500") {
		t.Errorf("failing target: %+v, errors %q", bad, errs.Lines())
	}
	if !slices.IsSorted(a.Lat) {
		t.Fatal("latencies not sorted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, w := range Interleaved(ctx, ts, nil, time.Hour, &errs, "i") {
		if w.OK+w.Errors != 0 {
			t.Errorf("cancelled run sent requests: %+v", w)
		}
	}
}

// TestSliced: the workers move from target to target slice by slice, so
// each target gets its share of the time and of the requests, and the CPU
// read over its slices.
func TestSliced(t *testing.T) {
	var errs ErrorLog
	ts := twoAndBroken(t, 4)
	// One clock per target, each moving by 1 ms per read, so a slice read
	// from another target's clock would show; every counter of a reading
	// moves by its own multiple of it, so a counter read as another would
	// show too.
	var ticks [3]atomic.Int64
	use := func(i int) Usage {
		d := time.Duration(ticks[i].Add(1)) * time.Millisecond
		return Usage{Proc: d, Sim: 2 * d, Self: 3 * d, Busy: 4 * d, Total: 5 * d}
	}
	const d, slice = 600 * time.Millisecond, 20 * time.Millisecond
	start := time.Now()
	ws := Sliced(context.Background(), ts, chatBody("sim-model", smallPrompt, 4, false), 4, d, slice, use, &errs, "s")
	if took := time.Since(start); took < d {
		t.Errorf("returned after %v, before its %v", took, d)
	}
	if len(ws) != 3 {
		t.Fatalf("%d windows", len(ws))
	}
	a, b, bad := ws[0], ws[1], ws[2]
	if a.OK == 0 || b.OK == 0 || a.Errors != 0 || b.Errors != 0 || len(a.Lat) != a.OK {
		t.Fatalf("good targets: %+v %+v", a, b)
	}
	// Each target held the load a third of the time, in slices of 20 ms.
	for _, w := range ws {
		if w.Elapsed < d/3-2*slice || w.Elapsed > d/3+2*slice {
			t.Errorf("a target held the load %v of %v", w.Elapsed, d)
		}
		// Each of its slices read the clock twice, one tick apart.
		if n := int(w.CPU / time.Millisecond); n < 5 || n > 20 {
			t.Errorf("CPU over its slices %v: not one tick per slice", w.CPU)
		}
		if u := w.Use; u.Proc != w.CPU || u.Sim != 2*w.CPU || u.Self != 3*w.CPU || u.Busy != 4*w.CPU || u.Total != 5*w.CPU {
			t.Errorf("counters over its slices %+v: not each its own multiple of %v", u, w.CPU)
		}
	}
	if r := a.Rate() / b.Rate(); r < 0.5 || r > 2 {
		t.Errorf("rates %.0f and %.0f req/s for the same server", a.Rate(), b.Rate())
	}
	if bad.OK != 0 || bad.Errors == 0 || errs.Total() != bad.Errors || !strings.Contains(errs.Lines()[0], "s bad: status 500") {
		t.Errorf("failing target: %+v, errors %q", bad, errs.Lines())
	}
	if !slices.IsSorted(a.Lat) {
		t.Fatal("latencies not sorted")
	}
	// A run shorter than one cycle (slices are long when the latency is)
	// still gives every target a slice of its own.
	body := chatBody("sim-model", smallPrompt, 4, false)
	for i, w := range Sliced(context.Background(), ts, body, 4, slice, 2*slice, use, &errs, "s") {
		if w.Elapsed < slice || w.Use.Total == 0 || (i < 2 && w.OK == 0) {
			t.Errorf("target %d in a run shorter than a cycle: held the load %v, %d answers", i, w.Elapsed, w.OK)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, w := range Sliced(ctx, ts, nil, 4, time.Hour, slice, nil, &errs, "s") {
		if w.OK+w.Errors != 0 {
			t.Errorf("cancelled run sent requests: %+v", w)
		}
	}
}

func TestSliceFor(t *testing.T) {
	for _, c := range []struct{ lat, want time.Duration }{
		{0, 100 * time.Millisecond},
		{time.Millisecond, 100 * time.Millisecond},
		{5 * time.Millisecond, 130 * time.Millisecond},
		{32 * time.Millisecond, 800 * time.Millisecond},
		{time.Second, time.Second},
	} {
		if got := sliceFor(c.lat); got != c.want {
			t.Errorf("sliceFor(%v) = %v, want %v", c.lat, got, c.want)
		}
	}
}

func TestClosedLoop(t *testing.T) {
	srv := simServer(t)
	var errs ErrorLog
	tg := target("direct", srv.URL, 4, false, nil, nil)
	body := chatBody("sim-model", smallPrompt, 4, false)

	w := ClosedLoop(context.Background(), tg, body, 4, 0, 37, &errs, "x")
	if w.OK != 37 || w.Errors != 0 || len(w.Lat) != 37 || errs.Total() != 0 {
		t.Fatalf("count-limited loop: %+v, errors %q", w, errs.Lines())
	}
	for i := 1; i < len(w.Lat); i++ {
		if w.Lat[i] < w.Lat[i-1] || w.Lat[0] <= 0 {
			t.Fatal("latencies not sorted and positive")
		}
	}
	if w.Rate() <= 0 {
		t.Errorf("rate %v", w.Rate())
	}

	w = ClosedLoop(context.Background(), tg, body, 2, 50*time.Millisecond, 0, &errs, "x")
	if w.OK == 0 || w.Errors != 0 || w.Elapsed < 50*time.Millisecond {
		t.Fatalf("time-limited loop: OK %d errors %d elapsed %v", w.OK, w.Errors, w.Elapsed)
	}

	// A bad model is a 404 from the emulator: every request is an error.
	w = ClosedLoop(context.Background(), tg, chatBody("no-such-model", "hi", 1, false), 2, 0, 5, &errs, "bad")
	if w.OK != 0 || w.Errors != 5 || errs.Total() != 5 || !strings.Contains(errs.Lines()[0], "bad: status 404") {
		t.Errorf("errors: %+v %q", w, errs.Lines())
	}

	// A cancelled context stops the loop without counting errors.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if w := ClosedLoop(ctx, tg, body, 3, time.Hour, 0, &errs, "x"); w.OK+w.Errors != 0 {
		t.Errorf("cancelled loop ran: %+v", w)
	}
	if (Window{}).Rate() != 0 {
		t.Error("rate of an empty window")
	}
}

// TestDoChecks sends requests to a handler that misbehaves in each way the
// load generator must notice.
func TestDoChecks(t *testing.T) {
	var seen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Clone())
		switch r.URL.Path {
		case "/ok/v1/chat/completions":
			fmt.Fprint(w, `{"usage":{"completion_tokens":1}}`)
		case "/nousage/v1/chat/completions":
			fmt.Fprint(w, `{"choices":[]}`)
		case "/cut/v1/chat/completions":
			w.Header().Set("Content-Length", "100")
			fmt.Fprint(w, `{"usage"`)
		default:
			http.Error(w, "nope", http.StatusTeapot)
		}
	}))
	defer srv.Close()
	hdr := http.Header{"X-Sim-Length": {"3"}}
	for _, tt := range []struct{ path, wantErr string }{
		{"/ok", ""}, {"/nousage", "200 without usage"}, {"/cut", "reading body"}, {"/other", "status 418: nope"},
	} {
		tg := target("t", srv.URL+tt.path, 1, false, bearer("tok"), hdr)
		_, err := tg.do(context.Background(), []byte(`{}`))
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: err %v, want %q", tt.path, err, tt.wantErr)
		}
	}
	h := seen.Load().(http.Header)
	if h.Get("Authorization") != "Bearer tok" || h.Get("X-Sim-Length") != "3" || h.Get("Content-Type") != "application/json" {
		t.Errorf("request headers %v", h)
	}
	srv.Close()
	if _, err := target("t", srv.URL, 1, false, nil, nil).do(context.Background(), nil); err == nil {
		t.Error("request to a closed server succeeded")
	}
}

// TestMixedStreams: the streams go to the targets in turn, each target's
// window holds its own, and a failing target's errors carry its name.
func TestMixedStreams(t *testing.T) {
	srv := simServer(t)
	var errs ErrorLog
	const n, tokens = 9, 4
	hdr := http.Header{"X-Sim-Tps": {"400"}, "X-Sim-Length": {fmt.Sprint(tokens)}}
	ts := []*Target{
		target("a", srv.URL, n, false, nil, hdr),
		target("b", srv.URL, n, false, nil, hdr),
		target("bad", srv.URL, n, false, nil, http.Header{"X-Sim-Status": {"500"}}),
	}
	ws := MixedStreams(context.Background(), ts, chatBody("sim-model", smallPrompt, tokens, true), n, 5*time.Millisecond, tokens, &errs, "m")
	if len(ws) != 3 {
		t.Fatalf("%d windows", len(ws))
	}
	for _, w := range ws[:2] {
		if w.OK != n/3 || w.Errors != 0 || len(w.TTFT) != n/3 || w.Events < n/3*tokens {
			t.Errorf("good target: %+v", w)
		}
	}
	if bad := ws[2]; bad.OK != 0 || bad.Errors != n/3 || errs.Total() != n/3 || !strings.Contains(errs.Lines()[0], "m bad: status 500") {
		t.Errorf("failing target: %+v, errors %q", bad, errs.Lines())
	}
}

// TestTurnOf: streams started in turn alternate the order of the targets, so
// that over every two turns each target's streams start on average at the
// same index (in a fixed order the last target's would start paths−1 later).
func TestTurnOf(t *testing.T) {
	var got []int
	for i := range 8 {
		got = append(got, turnOf(i, 2))
	}
	if want := []int{0, 1, 1, 0, 0, 1, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("two targets: %v, want %v", got, want)
	}
	for _, paths := range []int{1, 2, 3, 4} {
		n := 2 * paths * 50
		count, sum := make([]int, paths), make([]int, paths)
		for i := range n {
			k := turnOf(i, paths)
			count[k]++
			sum[k] += i
		}
		for k := range paths {
			if count[k] != n/paths || sum[k] != sum[0] {
				t.Errorf("%d targets: target %d has %d streams, indexes summing to %d; target 0 %d, %d", paths, k, count[k], sum[k], count[0], sum[0])
			}
		}
	}
}

func TestStreams(t *testing.T) {
	srv := simServer(t)
	var errs ErrorLog
	const n, tokens = 12, 6
	hdr := http.Header{"X-Sim-Tps": {"400"}, "X-Sim-Length": {fmt.Sprint(tokens)}, "X-Sim-Chunk": {"2"}}
	tg := target("direct", srv.URL, n, false, nil, hdr)
	var sampled atomic.Int64
	w := Streams(context.Background(), tg, chatBody("sim-model", smallPrompt, tokens, true), n, 5*time.Millisecond, tokens/2,
		func(open int, now func() int) {
			if now() > open {
				t.Errorf("open now %d > open at the start %d", now(), open)
			}
			sampled.Add(int64(open) + 1000)
		}, &errs, "s")
	if w.OK != n || w.Errors != 0 || errs.Total() != 0 {
		t.Fatalf("streams: %+v %q", w, errs.Lines())
	}
	if len(w.TTFT) != n || len(w.Gaps) != w.Events-n || w.Events < n*tokens/2 {
		t.Errorf("%d TTFTs, %d gaps, %d events", len(w.TTFT), len(w.Gaps), w.Events)
	}
	// The sampler ran exactly once, before Streams returned, with every
	// stream open or a few already done.
	if s := sampled.Load(); s < 1000 || s > 1000+n || w.Open != int(s-1000) {
		t.Errorf("sampler saw %d (Open %d)", s-1000, w.Open)
	}
	// Streams the server refuses are errors, and the sampler never runs
	// when not every stream started.
	bad := target("direct", srv.URL, n, false, nil, nil)
	sampled.Store(0)
	w = Streams(context.Background(), bad, chatBody("nope", "x", 1, true), 3, 0, 1, func(int, func() int) { sampled.Add(1) }, &errs, "bad")
	if w.OK != 0 || w.Errors != 3 || errs.Total() != 3 || sampled.Load() != 0 {
		t.Errorf("refused streams: %+v, %q, sampled %d", w, errs.Lines(), sampled.Load())
	}
	// Cancelled before the ramp releases them: errors, but not logged.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := errs.Total()
	w = Streams(ctx, tg, chatBody("sim-model", "x", 1, true), 3, time.Hour, 1, nil, &errs, "c")
	if w.OK != 0 || errs.Total() != before {
		t.Errorf("cancelled streams: %+v, log %q", w, errs.Lines())
	}
}

func BenchmarkReadStream(b *testing.B) {
	var sb strings.Builder
	for range 256 {
		sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" tok"}}]}` + "\n\n")
	}
	sb.WriteString("data: [DONE]\n\n")
	body := sb.String()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if r := readStream(strings.NewReader(body), time.Now(), 256, nil); r.err != nil {
			b.Fatal(r.err)
		}
	}
}

// TestVaryAt: each request of a varying target carries its own number where
// the body's digits were, and the body itself is left alone.
func TestVaryAt(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[string(b)] = true
		mu.Unlock()
		io.WriteString(w, `{"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}))
	defer srv.Close()
	tg := target("x", srv.URL, 2, false, nil, nil)
	body := chatBody("m", bigPromptMark+" words", 1, false)
	off := bytes.Index(body, []byte(bigPromptMark)) + len("Request ")
	tg.VaryAt(off)
	copyOf := *tg // copies share the sequence
	var errs ErrorLog
	if w := ClosedLoop(context.Background(), tg, body, 2, 0, 5, &errs, "x"); w.OK != 5 {
		t.Fatalf("%+v %q", w, errs.Lines())
	}
	if w := ClosedLoop(context.Background(), &copyOf, body, 1, 0, 2, &errs, "x"); w.OK != 2 {
		t.Fatalf("%+v %q", w, errs.Lines())
	}
	if len(seen) != 7 {
		t.Fatalf("%d distinct bodies of 7", len(seen))
	}
	for b := range seen {
		if !strings.Contains(b, "Request 0000000") || len(b) != len(body) {
			t.Fatalf("body %s", b)
		}
	}
	if !bytes.Contains(body, []byte(bigPromptMark)) {
		t.Fatal("the shared body was written to")
	}
}

// TestSmallPromptIsCountedEveryTime: the repeated prompt of the request
// scenarios must not be answered from the gate's whole-text cache, or the
// bench would measure a cache rather than a new message's admission.
func TestSmallPromptIsCountedEveryTime(t *testing.T) {
	if len(smallPrompt) >= tokenizer.TextCacheMin {
		t.Fatalf("smallPrompt is %d bytes, at least tokenizer.TextCacheMin (%d)", len(smallPrompt), tokenizer.TextCacheMin)
	}
}
