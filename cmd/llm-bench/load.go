package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one path under test: the endpoint URL, the client that reaches
// it, and how each request authenticates.
type Target struct {
	Name   string
	URL    string
	Client *http.Client
	// Auth returns the Authorization header of the next request; nil means
	// none. It is called once per request, so it may rotate credentials.
	Auth func() string
	// Header holds extra request headers (the emulator's X-Sim-* knobs).
	Header http.Header
	// vary, set by VaryAt, is the offset in the body of varyDigits ASCII
	// digits that each request replaces with its number from seq.
	vary int
	seq  *atomic.Int64
	// turns, set by Converse, are the bodies of a conversation's requests.
	turns []Turn
}

// Turn is the body of one request of a conversation, with the offsets of
// the varyDigits digits that number the conversation.
type Turn struct {
	Body []byte
	Offs []int
}

// Converse makes t send conversations: request n (from 0, counted across
// t's copies) is turn n mod len(turns) of conversation n / len(turns),
// whose number it writes at each of that turn's offsets. The body passed to
// the load functions is ignored.
func (t *Target) Converse(turns []Turn) {
	t.turns, t.seq = turns, new(atomic.Int64)
}

// VaryAt makes every request write its own sequence number over the
// varyDigits digits at offset off of (a copy of) the body, so that no
// request repeats an earlier one's text and no cache on the server can
// answer for the work measured. Copies of t share the sequence.
func (t *Target) VaryAt(off int) {
	t.vary, t.seq = off, new(atomic.Int64)
}

// varyDigits is the width of the number VaryAt has each request write.
const varyDigits = 8

// NewClient returns a keep-alive client sized for conns concurrent
// connections to one host. With h2c it speaks HTTP/2 over cleartext TCP
// with prior knowledge and nothing else, so a server that cannot do it
// fails instead of silently falling back to HTTP/1.1.
func NewClient(conns int, h2c bool) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no global cap
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
		// Streams are read event by event: no read-ahead beyond a few
		// chunks.
		ReadBufferSize:  8 << 10,
		WriteBufferSize: 8 << 10,
	}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	return &http.Client{Transport: tr}
}

// newRequest builds a POST of body to t with t's headers and credential.
func (t *Target) newRequest(ctx context.Context, body []byte) (*http.Request, error) {
	switch {
	case t.turns != nil:
		n := t.seq.Add(1) - 1
		turn := &t.turns[n%int64(len(t.turns))]
		body = bytes.Clone(turn.Body)
		for _, off := range turn.Offs {
			writeNumber(body[off:off+varyDigits], n/int64(len(t.turns)))
		}
	case t.seq != nil && t.vary >= 0 && t.vary+varyDigits <= len(body):
		body = bytes.Clone(body)
		writeNumber(body[t.vary:t.vary+varyDigits], t.seq.Add(1))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range t.Header {
		req.Header[k] = v
	}
	if t.Auth != nil {
		if a := t.Auth(); a != "" {
			req.Header.Set("Authorization", a)
		}
	}
	return req, nil
}

// writeNumber writes n in decimal over dst, zero-padded on the left (the
// lowest digits when n has more than len(dst)).
func writeNumber(dst []byte, n int64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
}

// Window is what one measurement window of request/response load saw.
type Window struct {
	OK      int             // requests answered 200 with a complete body
	Errors  int             // every other outcome
	Elapsed time.Duration   // from the first request to the last answer
	Lat     []time.Duration // latencies of the OK requests, sorted
	CPU     time.Duration   // CPU the measured process spent in the window
	// Use is what the CPU counters of a sliced run moved by over the
	// window's slices (zero for other windows); Use.Proc is CPU.
	Use Usage
}

// Usage is a reading of the CPU counters a sliced run follows, or what they
// moved by: the path's own process (0 for a path without one), the
// emulator, this load generator, and the whole machine, busy and in total
// (all CPUs summed, idle included).
type Usage struct {
	Proc, Sim, Self, Busy, Total time.Duration
}

// Sub returns what the counters moved by from v to u.
func (u Usage) Sub(v Usage) Usage {
	return Usage{u.Proc - v.Proc, u.Sim - v.Sim, u.Self - v.Self, u.Busy - v.Busy, u.Total - v.Total}
}

// Add sums two movements.
func (u Usage) Add(v Usage) Usage {
	return Usage{u.Proc + v.Proc, u.Sim + v.Sim, u.Self + v.Self, u.Busy + v.Busy, u.Total + v.Total}
}

// Rate is the window's throughput in successful requests per second.
func (w Window) Rate() float64 {
	if w.Elapsed <= 0 {
		return 0
	}
	return float64(w.OK) / w.Elapsed.Seconds()
}

// ErrorLog counts failures by label and message across the whole run, so
// the report can show what went wrong, not only how often.
type ErrorLog struct {
	mu     sync.Mutex
	counts map[string]int
	total  int
}

// Add records one failure.
func (e *ErrorLog) Add(label string, err error) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[string]int{}
	}
	e.counts[label+": "+msg]++
	e.total++
}

// Total is the number of failures recorded.
func (e *ErrorLog) Total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}

// Lines returns "count × label: message" lines, most frequent first.
func (e *ErrorLog) Lines() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	keys := make([]string, 0, len(e.counts))
	for k := range e.counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if e.counts[keys[i]] != e.counts[keys[j]] {
			return e.counts[keys[i]] > e.counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d × %s", e.counts[k], k)
	}
	return out
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// usageMarker is what every complete non-streaming OpenAI answer carries;
// a 200 without it was cut short.
var usageMarker = []byte(`"completion_tokens"`)

// do sends one non-streaming request and checks the answer.
func (t *Target) do(ctx context.Context, body []byte) (time.Duration, error) {
	req, err := t.newRequest(ctx, body)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := t.Client.Do(req)
	if err != nil {
		return 0, err
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	switch {
	case err != nil:
		return 0, fmt.Errorf("reading body: %w", err)
	case resp.StatusCode != http.StatusOK:
		return 0, fmt.Errorf("status %d: %.120s", resp.StatusCode, bytes.TrimSpace(buf.Bytes()))
	case !bytes.Contains(buf.Bytes(), usageMarker):
		return 0, fmt.Errorf("200 without usage: %.120s", buf.Bytes())
	}
	return lat, nil
}

// ClosedLoop runs conc workers that each send body to t back to back for
// d (or, when maxReq > 0, until maxReq requests have been sent), and
// returns the window. Failures go to errs under label.
func ClosedLoop(ctx context.Context, t *Target, body []byte, conc int, d time.Duration, maxReq int, errs *ErrorLog, label string) Window {
	var (
		mu      sync.Mutex
		all     []time.Duration
		nerr    int
		started atomic.Int64
		wg      sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range max(conc, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			bad := 0
			for ctx.Err() == nil {
				if maxReq > 0 {
					if started.Add(1) > int64(maxReq) {
						break
					}
				} else if !time.Now().Before(deadline) {
					break
				}
				l, err := t.do(ctx, body)
				if err != nil {
					if ctx.Err() != nil {
						break // interrupted: not the server's fault
					}
					bad++
					errs.Add(label, err)
					continue
				}
				lat = append(lat, l)
			}
			mu.Lock()
			all = append(all, lat...)
			nerr += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return Window{OK: len(all), Errors: nerr, Elapsed: time.Since(start), Lat: SortDurations(all)}
}

// Interleaved sends body to each of ts in turn, one request at a time, for
// d, starting each cycle one target further on, and returns one window per
// target. Every target meets the machine in the same state (what ran just
// before, what the caches hold), which separate windows cannot promise on a
// shared machine whose speed drifts. A window's Elapsed is the time spent on
// its own requests. Failures go to errs under label and the target's name.
func Interleaved(ctx context.Context, ts []*Target, body []byte, d time.Duration, errs *ErrorLog, label string) []Window {
	out := make([]Window, len(ts))
	deadline := time.Now().Add(d)
	for cycle := 0; ctx.Err() == nil && time.Now().Before(deadline); cycle++ {
		for k := range ts {
			i := (cycle + k) % len(ts)
			start := time.Now()
			l, err := ts[i].do(ctx, body)
			out[i].Elapsed += time.Since(start)
			switch {
			case err == nil:
				out[i].OK++
				out[i].Lat = append(out[i].Lat, l)
			case ctx.Err() == nil: // interrupted is not the server's fault
				out[i].Errors++
				errs.Add(label+" "+ts[i].Name, err)
			}
		}
	}
	for i := range out {
		out[i].Lat = SortDurations(out[i].Lat)
	}
	return out
}

// Sliced runs conc workers for d against ts, one target at a time: the
// load moves to the next target every slice, and each worker sends its
// next request to the target of the moment, so every target meets the
// machine as it is within a fraction of a second of the others (separate
// windows of seconds meet its drift). Each cycle through ts starts one
// target further on, so no target always follows the same one. It returns
// one window per target: the requests sent to it (answered, possibly after
// its slice ended) and the time it held the load, and, when use is not nil,
// what the counters use(i) reads for target i moved by over i's slices.
// Requests still in flight when a slice ends run into the next target's
// slice, so slice should be long next to the latency. The run lasts at
// least one cycle, so that every target holds the load for a slice even
// when d is shorter than that. Failures go to errs under label and the
// target's name.
func Sliced(ctx context.Context, ts []*Target, body []byte, conc int, d, slice time.Duration, use func(i int) Usage, errs *ErrorLog, label string) []Window {
	out := make([]Window, len(ts))
	if ctx.Err() != nil {
		return out
	}
	d = max(d, slice*time.Duration(len(ts)))
	var (
		active atomic.Int32
		stop   atomic.Bool
		mu     sync.Mutex
		wg     sync.WaitGroup
	)
	for range max(conc, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([][]time.Duration, len(ts))
			bad := make([]int, len(ts))
			for ctx.Err() == nil && !stop.Load() {
				i := active.Load()
				l, err := ts[i].do(ctx, body)
				switch {
				case err == nil:
					lat[i] = append(lat[i], l)
				case ctx.Err() == nil: // interrupted is not the server's fault
					bad[i]++
					errs.Add(label+" "+ts[i].Name, err)
				}
			}
			mu.Lock()
			for i := range ts {
				out[i].Lat = append(out[i].Lat, lat[i]...)
				out[i].Errors += bad[i]
			}
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(d)
	timer := time.NewTimer(0)
	<-timer.C
	for cycle := 0; ctx.Err() == nil && time.Now().Before(deadline); cycle++ {
		for k := range ts {
			i := (cycle + k) % len(ts)
			active.Store(int32(i))
			start := time.Now()
			var u0 Usage
			if use != nil {
				u0 = use(i)
			}
			timer.Reset(min(slice, time.Until(deadline)))
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
			out[i].Elapsed += time.Since(start)
			if use != nil {
				out[i].Use = out[i].Use.Add(use(i).Sub(u0))
				out[i].CPU = out[i].Use.Proc
			}
			if ctx.Err() != nil || !time.Now().Before(deadline) {
				break
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	for i := range out {
		out[i].OK = len(out[i].Lat)
		out[i].Lat = SortDurations(out[i].Lat)
	}
	return out
}

// StreamWindow is what one window of concurrent streams saw.
type StreamWindow struct {
	OK      int             // streams that ended with [DONE] and enough events
	Errors  int             // every other outcome
	Events  int             // data events received by the OK streams
	Elapsed time.Duration   // from the first request to the last stream's end
	TTFT    []time.Duration // request sent → first data event, sorted
	Total   []time.Duration // request sent → last data event, sorted
	Gaps    []time.Duration // between consecutive data events of a stream, sorted
	// Open is how many streams were open when all of them had started
	// (less than requested when the first ended before the last started).
	Open int
	CPU  time.Duration
}

// streamResult is one stream's outcome.
type streamResult struct {
	ttft   time.Duration
	total  time.Duration // request sent → last data event
	gaps   []time.Duration
	events int
	err    error
}

// readStream reads an SSE response event by event, timing every data
// line's arrival. minEvents is the fewest data events (besides [DONE]) a
// complete stream has; first is called once when the first event arrives.
func readStream(body io.Reader, sent time.Time, minEvents int, first func()) streamResult {
	var r streamResult
	br := bufio.NewReaderSize(body, 4<<10)
	var prev time.Time
	done := false
	partial := false // inside a line longer than the buffer
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && !partial && bytes.HasPrefix(line, []byte("data:")) {
			now := time.Now()
			payload := bytes.TrimSpace(line[5:])
			if bytes.Equal(payload, []byte("[DONE]")) {
				done = true
			} else {
				if r.events == 0 {
					r.ttft = now.Sub(sent)
					if first != nil {
						first()
					}
				} else {
					r.gaps = append(r.gaps, now.Sub(prev))
				}
				prev = now
				r.total = now.Sub(sent)
				r.events++
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			partial = true
			continue
		case err == io.EOF:
			if !done {
				r.err = fmt.Errorf("stream ended without [DONE] after %d events", r.events)
			} else if r.events < minEvents {
				r.err = fmt.Errorf("stream had %d events, want >= %d", r.events, minEvents)
			}
			return r
		case err != nil:
			r.err = fmt.Errorf("reading stream after %d events: %w", r.events, err)
			return r
		}
		partial = false
	}
}

// Streams opens n streaming requests to t, started evenly over ramp, and
// waits for all of them to end. When the last stream has received its
// first event, allOpen is called once, in a goroutine of its own, with the
// number of streams open at that moment and a func that tells how many
// are open now (it samples the proxy's memory); Streams waits for it.
func Streams(ctx context.Context, t *Target, body []byte, n int, ramp time.Duration, minEvents int, allOpen func(n int, open func() int), errs *ErrorLog, label string) StreamWindow {
	return streams(ctx, []*Target{t}, body, n, ramp, minEvents, allOpen, errs, []string{label})[0]
}

// MixedStreams opens n streaming requests as Streams does, to the targets
// in turn (see turnOf), and returns one window per target: the targets'
// streams run side by side, so they meet the same load, where separate
// windows meet the machine in different states. Failures go to errs under
// label and the target's name.
func MixedStreams(ctx context.Context, ts []*Target, body []byte, n int, ramp time.Duration, minEvents int, errs *ErrorLog, label string) []StreamWindow {
	labels := make([]string, len(ts))
	for i, t := range ts {
		labels[i] = label + " " + t.Name
	}
	return streams(ctx, ts, body, n, ramp, minEvents, nil, errs, labels)
}

// streams runs n streams, the i-th to ts[turnOf(i, len(ts))], and returns
// each target's window; labels[k] names ts[k]'s failures.
func streams(ctx context.Context, ts []*Target, body []byte, n int, ramp time.Duration, minEvents int, allOpen func(n int, open func() int), errs *ErrorLog, labels []string) []StreamWindow {
	var (
		opened, finished atomic.Int64
		wg, sampler      sync.WaitGroup
		results          = make([]streamResult, n)
		openAtSample     atomic.Int64
	)
	openNow := func() int { return int(opened.Load() - finished.Load()) }
	onFirst := func() {
		if opened.Add(1) == int64(n) {
			open := openNow()
			openAtSample.Store(int64(open))
			if allOpen != nil {
				sampler.Add(1)
				go func() {
					defer sampler.Done()
					allOpen(open, openNow)
				}()
			}
		}
	}
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer finished.Add(1)
			if n > 1 && ramp > 0 {
				select {
				case <-time.After(ramp * time.Duration(i) / time.Duration(n-1)):
				case <-ctx.Done():
					results[i].err = ctx.Err()
					return
				}
			}
			results[i] = oneStream(ctx, ts[turnOf(i, len(ts))], body, minEvents, onFirst)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sampler.Wait()

	out := make([]StreamWindow, len(ts))
	for k := range out {
		out[k] = StreamWindow{Elapsed: elapsed, Open: int(openAtSample.Load())}
	}
	for i, r := range results {
		k := turnOf(i, len(ts))
		w := &out[k]
		if r.err != nil {
			w.Errors++
			if ctx.Err() == nil {
				errs.Add(labels[k], r.err)
			}
			continue
		}
		w.OK++
		w.Events += r.events
		w.TTFT = append(w.TTFT, r.ttft)
		w.Total = append(w.Total, r.total)
		w.Gaps = append(w.Gaps, r.gaps...)
	}
	for k := range out {
		SortDurations(out[k].TTFT)
		SortDurations(out[k].Total)
		SortDurations(out[k].Gaps)
	}
	return out
}

// turnOf returns the target of the i-th of streams started in turn over
// paths targets: in order, then in reverse, and so on (a, b, b, a, a, b, …).
// The streams ramp up over time and the load each meets changes with i; in a
// fixed order every target's stream would start a step after the one before
// it, and its time to first token would differ for that alone: an A/A run
// of the stream scenario's mixed rounds (1,000 streams over a second, one
// token a chunk, plain Caddy on both sides) read the second side's TTFT p50
// −0.42 and −0.67 ms against the first in that order, −0.31 and +0.05 ms in
// this one. In this order the targets' streams start on average at the
// same moment over every two turns.
func turnOf(i, paths int) int {
	k := i % paths
	if i/paths%2 == 1 {
		k = paths - 1 - k
	}
	return k
}

// oneStream sends one streaming request and reads it to the end.
func oneStream(ctx context.Context, t *Target, body []byte, minEvents int, first func()) streamResult {
	req, err := t.newRequest(ctx, body)
	if err != nil {
		return streamResult{err: err}
	}
	sent := time.Now()
	resp, err := t.Client.Do(req)
	if err != nil {
		return streamResult{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return streamResult{err: fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))}
	}
	r := readStream(resp.Body, sent, minEvents, first)
	if r.err != nil && errors.Is(r.err, context.Canceled) {
		r.err = context.Canceled
	}
	return r
}
