package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/tokenizer"
)

// smallPrompt is the prompt of the non-streaming scenarios: a typical short
// chat turn, so that the measurement is dominated by per-request costs. It is
// shorter than tokenizer.TextCacheMin, so the gate counts it afresh on every
// request, as it would a new message.
const smallPrompt = "Write one short sentence about the sea."

// chatBody renders an OpenAI chat completion request (without max_tokens
// if maxTokens is 0).
func chatBody(model, prompt string, maxTokens int, stream bool) []byte {
	return mustMarshal(chatFields(model, prompt, maxTokens, stream))
}

// bigPromptBody is the bigprompt scenario's streamed chat request, with
// include_usage (so that every path's answer carries the usage).
func bigPromptBody(model, prompt string, maxTokens int) []byte {
	m := chatFields(model, prompt, maxTokens, true)
	m["stream_options"] = map[string]bool{"include_usage": true}
	return mustMarshal(m)
}

func chatFields(model, prompt string, maxTokens int, stream bool) map[string]any {
	m := map[string]any{
		"model":    model,
		"messages": []map[string]string{{"role": "user", "content": prompt}},
		"stream":   stream,
	}
	if maxTokens > 0 {
		m["max_tokens"] = maxTokens
	}
	return m
}

func mustMarshal(m map[string]any) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // maps of strings, bools and ints always marshal
	}
	return b
}

// pathRun is one path of a scenario: where the requests go and which process
// the CPU and memory figures are read from (0 for none).
type pathRun struct {
	t   *Target
	pid int
}

// names returns the runs' path names in order: the table's columns.
func names(runs []pathRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.t.Name
	}
	return out
}

// rotate returns runs starting at index r mod len: round r of an
// alternation starts with a different path than round r-1, so no path is
// always the one that runs first (after a pause) or last.
func rotate(runs []pathRun, r int) []pathRun {
	n := len(runs)
	out := make([]pathRun, n)
	for i := range n {
		out[i] = runs[(i+r)%n]
	}
	return out
}

// cpuOf reads pid's CPU time; 0 for pid 0 or when /proc cannot be read.
func cpuOf(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, err := ProcCPU(pid)
	if err != nil {
		return 0
	}
	return d
}

// alternate runs measure on every path, rounds times, rotating the order,
// after an unmeasured warm-up of each path (when warm is not nil). It
// returns each path's windows, one per round.
func alternate[W any](ctx context.Context, b *Bench, label string, runs []pathRun, rounds int, warm func(pathRun), measure func(pathRun) W, show func(W) string) (map[string][]W, error) {
	if warm != nil {
		for _, r := range runs {
			warm(r)
		}
	}
	out := map[string][]W{}
	for round := range rounds {
		var parts []string
		for _, r := range rotate(runs, round) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			w := measure(r)
			out[r.t.Name] = append(out[r.t.Name], w)
			parts = append(parts, r.t.Name+" "+show(w))
		}
		b.log("%s round %d/%d: %s", label, round+1, rounds, strings.Join(parts, ", "))
	}
	return out, ctx.Err()
}

// closedRounds alternates closed-loop windows of conc workers over runs.
// warmup is the unmeasured load per path before the first round.
func (b *Bench) closedRounds(ctx context.Context, label string, runs []pathRun, body []byte, conc, maxReq int, warmup time.Duration) (map[string][]Window, error) {
	warm := func(r pathRun) {
		if warmup <= 0 {
			return
		}
		n := 0
		if maxReq > 0 {
			n = 1 // a request-count scenario warms up with one request
		}
		ClosedLoop(ctx, r.t, body, conc, warmup, n, &b.errs, label+" "+r.t.Name)
	}
	measure := func(r pathRun) Window {
		c0 := cpuOf(r.pid)
		w := ClosedLoop(ctx, r.t, body, conc, b.o.Window, maxReq, &b.errs, label+" "+r.t.Name)
		if r.pid != 0 {
			w.CPU = cpuOf(r.pid) - c0
		}
		return w
	}
	show := func(w Window) string {
		s := fmt.Sprintf("%.0f req/s p50 %s", w.Rate(), Percentile(w.Lat, 50).Round(time.Microsecond))
		if w.Errors > 0 {
			s += fmt.Sprintf(" (%d errors)", w.Errors)
		}
		return s
	}
	return alternate(ctx, b, label, runs, b.o.Rounds, warm, measure, show)
}

// slicedRounds runs rounds of Sliced over runs, each as long as a round of
// the windows in res, with slices sliceFor the plain path's median latency
// there. Each path's CPU is read from its own process over its slices,
// and with it the emulator's, the load generator's and the machine's.
func (b *Bench) slicedRounds(ctx context.Context, label string, runs []pathRun, body []byte, conc int, res map[string][]Window) (map[string][]Window, time.Duration, error) {
	slice := sliceFor(Percentile(pooled(res)[pathPlain], 50))
	self := os.Getpid()
	use := func(i int) Usage {
		u := Usage{Proc: cpuOf(runs[i].pid), Self: cpuOf(self)}
		if b.sim != nil {
			u.Sim = cpuOf(b.sim.Pid())
		}
		u.Busy, u.Total, _ = MachineCPU() // zeros if /proc/stat cannot be read: the rows show NaN
		return u
	}
	ts := targets(runs)
	label += " sliced"
	out, err := sideBySide(ctx, b, label, ts, b.o.Rounds,
		func() []Window {
			return Sliced(ctx, ts, body, conc, b.o.Window*time.Duration(len(ts)), slice, use, &b.errs, label)
		},
		func(w Window) string { return fmt.Sprintf("%.0f req/s", w.Rate()) })
	return out, slice, err
}

// sliceFor is the slice of a sliced run whose requests take lat: 25 times
// as long, so that what is still in flight when a slice ends is a few
// percent of it, but at least 100 ms and at most 1 s.
func sliceFor(lat time.Duration) time.Duration {
	return min(max(25*lat, 100*time.Millisecond), time.Second).Round(10 * time.Millisecond)
}

// slicedRows summarises sliced runs comparing subj with base; rate, when
// not nil, is the target of the subj/base throughput.
func slicedRows(res map[string][]Window, base, subj string, cpuPaths []string, rate *Goal) []*Row {
	return []*Row{
		(&Row{Metric: "throughput, sliced (req/s)", Vals: perRound(res, Window.Rate)}).Ratio(subj, base, rate),
		(&Row{Metric: "latency p50, sliced (µs)", Vals: perRound(res, func(w Window) float64 { return Micros(Percentile(w.Lat, 50)) })}).Delta(subj, base, nil),
		(&Row{Metric: "Caddy CPU, sliced (s per 1,000 req)", Vals: only(perRound(res, cpuPer1k), cpuPaths...)}).Ratio(subj, base, nil),
		// Where the rest of the machine's time goes: what the throughput
		// ratio owes to Caddy, to the other processes, and to idle CPUs.
		(&Row{Metric: "machine CPU busy, sliced (µs per req)", Vals: perRound(res, usePerReq(func(u Usage) time.Duration { return u.Busy }))}).Delta(subj, base, nil),
		(&Row{Metric: "load generator CPU, sliced (µs per req)", Vals: perRound(res, usePerReq(func(u Usage) time.Duration { return u.Self }))}).Delta(subj, base, nil),
		(&Row{Metric: "emulator CPU, sliced (µs per req)", Vals: perRound(res, usePerReq(func(u Usage) time.Duration { return u.Sim }))}).Delta(subj, base, nil),
		(&Row{Metric: "machine idle, sliced (%)", Vals: perRound(res, idleShare)}).Delta(subj, base, nil),
		{Metric: "errors, sliced", Vals: perRound(res, func(w Window) float64 { return float64(w.Errors) })},
	}
}

// slicedNote explains the sliced rows of a table whose slices were slice,
// the throughput target's rows.
func slicedNote(slice time.Duration) string {
	return "The throughput target applies to the sliced rows: " + slicedHow(slice)
}

// slicedHow says how the sliced rows were measured, with slices of slice.
func slicedHow(slice time.Duration) string {
	return fmt.Sprintf("after the windows, the same workers move from path to path every %v (the order rotating) for as long as the windows last together, "+
		"so that every path meets the machine in the same state, where windows seconds apart meet its drift. "+
		"A slice is 25 times the median latency: the requests still in flight when it ends, a few percent of it, run into the next path's slice. "+
		"The machine, load generator and emulator rows, read over the same slices, say where the throughput gap comes from: CPU every request costs (Caddy's or the others'), or CPUs left idle.", slice)
}

// sideBySide runs rounds of run, which measures every target of ts at once
// and returns their windows in ts's order (Interleaved, MixedStreams), and
// returns each target's windows, one per round. show sums a window up for
// the progress log.
func sideBySide[W any](ctx context.Context, b *Bench, label string, ts []*Target, rounds int, run func() []W, show func(W) string) (map[string][]W, error) {
	out := map[string][]W{}
	for round := range rounds {
		ws := run()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		parts := make([]string, len(ws))
		for i, w := range ws {
			out[ts[i].Name] = append(out[ts[i].Name], w)
			parts[i] = ts[i].Name + " " + show(w)
		}
		b.log("%s round %d/%d: %s", label, round+1, rounds, strings.Join(parts, ", "))
	}
	return out, nil
}

// targets returns the runs' targets in order.
func targets(runs []pathRun) []*Target {
	ts := make([]*Target, len(runs))
	for i, r := range runs {
		ts[i] = r.t
	}
	return ts
}

// perRound maps every window of every path through f.
func perRound[W any](res map[string][]W, f func(W) float64) map[string][]float64 {
	out := make(map[string][]float64, len(res))
	for name, ws := range res {
		vals := make([]float64, len(ws))
		for i, w := range ws {
			vals[i] = f(w)
		}
		out[name] = vals
	}
	return out
}

// only keeps the named paths of vals.
func only(vals map[string][]float64, paths ...string) map[string][]float64 {
	out := map[string][]float64{}
	for _, p := range paths {
		if v, ok := vals[p]; ok {
			out[p] = v
		}
	}
	return out
}

// closedTable turns closed-loop windows into a table comparing subj with
// base. cpuPaths are the paths whose CPU was measured. Its rows hold no
// target: windows seconds apart meet the machine in different states
// (targets go to the side-by-side rows).
func closedTable(title string, cols []string, res map[string][]Window, base, subj string, cpuPaths []string) *Table {
	t := &Table{Title: title, Columns: cols}
	t.Rows = append(t.Rows,
		(&Row{Metric: "throughput (req/s)", Vals: perRound(res, Window.Rate)}).Ratio(subj, base, nil),
		(&Row{Metric: "latency p50 (µs)", Vals: perRound(res, func(w Window) float64 { return Micros(Percentile(w.Lat, 50)) })}).Delta(subj, base, nil),
		(&Row{Metric: "latency p99 (µs)", Vals: perRound(res, func(w Window) float64 { return Micros(Percentile(w.Lat, 99)) })}).Delta(subj, base, nil),
		(&Row{Metric: "Caddy CPU (s per 1,000 req)", Vals: only(perRound(res, cpuPer1k), cpuPaths...)}).Ratio(subj, base, nil),
		&Row{Metric: "errors", Vals: perRound(res, func(w Window) float64 { return float64(w.Errors) })},
	)
	return t
}

// cpuPer1k is a window's CPU in seconds per 1,000 answered requests.
func cpuPer1k(w Window) float64 {
	if w.OK == 0 {
		return math.NaN()
	}
	return w.CPU.Seconds() / float64(w.OK) * 1000
}

// usePerReq returns the counter of Usage that of picks, per successful
// request of a sliced window, in µs; NaN when the window has none or the
// machine's counters were not read.
func usePerReq(of func(Usage) time.Duration) func(Window) float64 {
	return func(w Window) float64 {
		if w.OK == 0 || w.Use.Total <= 0 {
			return math.NaN()
		}
		return Micros(of(w.Use)) / float64(w.OK)
	}
}

// idleShare is the percentage of the machine's CPU time that was idle over
// a sliced window's slices; NaN when it was not read.
func idleShare(w Window) float64 {
	if w.Use.Total <= 0 {
		return math.NaN()
	}
	return 100 * float64(w.Use.Total-w.Use.Busy) / float64(w.Use.Total)
}

// pooled merges the latencies of every round of each path.
func pooled(res map[string][]Window) map[string][]time.Duration {
	out := map[string][]time.Duration{}
	for name, ws := range res {
		var all []time.Duration
		for _, w := range ws {
			all = append(all, w.Lat...)
		}
		out[name] = SortDurations(all)
	}
	return out
}

// latencyChart draws the percentiles of each path's pooled latencies.
func latencyChart(title string, cols []string, lat map[string][]time.Duration, rounds int) *BarChart {
	pcts := []float64{50, 90, 99, 99.9}
	n := 0
	for _, l := range lat {
		n += len(l)
	}
	c := &BarChart{Title: title, Unit: "µs", Groups: []string{"p50", "p90", "p99", "p99.9"},
		Note: fmt.Sprintf("%d requests pooled over %d rounds", n, rounds)}
	top := 0.0
	for _, name := range cols {
		s := Series{Name: name}
		for _, p := range pcts {
			v := Micros(Percentile(lat[name], p))
			top = math.Max(top, v)
			s.Values = append(s.Values, v)
		}
		c.Series = append(c.Series, s)
	}
	if top >= 10000 {
		c.Unit = "ms"
		for i := range c.Series {
			for j := range c.Series[i].Values {
				c.Series[i].Values[j] /= 1000
			}
		}
	}
	return c
}

// scenarioNonStream: small non-streaming chat requests over HTTP/1.1 at
// each concurrency of -conc.
func (b *Bench) scenarioNonStream(ctx context.Context) error {
	body := chatBody(b.o.Model, smallPrompt, 16, false)
	auth := bearer(b.Token("bench")) // every path gets the same request, as from one OpenAI SDK
	chartConc := b.o.Conc[len(b.o.Conc)-1]
	for _, c := range b.o.Conc {
		if c == 16 {
			chartConc = 16
		}
	}
	for _, conc := range b.o.Conc {
		runs := []pathRun{
			{target(pathPlain, b.plainBase, conc, false, auth, nil), b.caddy.Pid()},
			{target(pathGate, b.gateBase, conc, false, auth, nil), b.caddy.Pid()},
			{target(pathDirect, b.simBase, conc, false, auth, nil), 0},
		}
		label := fmt.Sprintf("nonstream c=%d", conc)
		res, err := b.closedRounds(ctx, label, runs, body, conc, 0, b.o.Warmup)
		if err != nil {
			return err
		}
		notes := []string{}
		var inter, sliced map[string][]Window
		if conc == 1 {
			// Unloaded: latency is the gate's own work. Loaded, latency is
			// mostly queueing for the 2 CPUs the load generator shares.
			// As long as one round of the windows above, for every path.
			ts := targets(runs)
			inter, err = sideBySide(ctx, b, label+" interleaved", ts, b.o.Rounds,
				func() []Window {
					return Interleaved(ctx, ts, body, b.o.Window*time.Duration(len(ts)), &b.errs, label+" interleaved")
				},
				func(w Window) string { return "p50 " + Percentile(w.Lat, 50).Round(time.Microsecond).String() })
			if err != nil {
				return err
			}
			notes = append(notes, "The added-latency targets apply at concurrency 1, where latency is the gate's own work rather than queueing for CPU, "+
				"and there to the interleaved rows: one client sends a request to each path in turn (the order rotating) for as long as the windows above last together, "+
				"so that every path meets the machine in the same state, where separate windows meet its drift.")
		} else {
			var slice time.Duration
			sliced, slice, err = b.slicedRounds(ctx, label, runs, body, conc, res)
			if err != nil {
				return err
			}
			notes = append(notes, "Under load (concurrency > 1) req/s measures what each request costs. "+slicedNote(slice))
		}
		t := closedTable(fmt.Sprintf("Non-streaming chat, HTTP/1.1, concurrency %d", conc), names(runs), res, pathPlain, pathGate, []string{pathPlain, pathGate})
		if sliced != nil {
			t.Rows = append(t.Rows, slicedRows(sliced, pathPlain, pathGate, []string{pathPlain, pathGate}, AtLeast(0.95, ""))...)
		}
		if inter != nil {
			t.Rows = append(t.Rows,
				(&Row{Metric: "latency p50, interleaved (µs)", Vals: perRound(inter, func(w Window) float64 { return Micros(Percentile(w.Lat, 50)) })}).Delta(pathGate, pathPlain, AtMost(50, " µs")),
				(&Row{Metric: "latency p99, interleaved (µs)", Vals: perRound(inter, func(w Window) float64 { return Micros(Percentile(w.Lat, 99)) })}).Delta(pathGate, pathPlain, AtMost(250, " µs")),
				&Row{Metric: "errors, interleaved", Vals: perRound(inter, func(w Window) float64 { return float64(w.Errors) })},
			)
		}
		t.Notes = notes
		b.tables = append(b.tables, t)
		if conc == chartConc {
			b.chart = latencyChart(fmt.Sprintf("non-streaming chat, concurrency %d: latency", conc), names(runs), pooled(res), b.o.Rounds)
		}
	}
	return nil
}

// scenarioH2: the non-streaming scenario over HTTP/2 cleartext (h2c, prior
// knowledge) to Caddy. The emulator speaks HTTP/1.1 only unless it accepts
// h2c, so direct falls back to HTTP/1.1 when a probe fails.
func (b *Bench) scenarioH2(ctx context.Context) error {
	if len(b.o.H2Conc) == 0 {
		return nil
	}
	body := chatBody(b.o.Model, smallPrompt, 16, false)
	auth := bearer(b.Token("bench"))
	directH2 := true
	if _, err := target(pathDirect, b.simBase, 1, true, nil, nil).do(ctx, body); err != nil {
		directH2 = false
	}
	for _, conc := range b.o.H2Conc {
		runs := []pathRun{
			{target(pathPlain, b.plainBase, conc, true, auth, nil), b.caddy.Pid()},
			{target(pathGate, b.gateBase, conc, true, auth, nil), b.caddy.Pid()},
			{target(pathDirect, b.simBase, conc, directH2, auth, nil), 0},
		}
		label := fmt.Sprintf("h2 c=%d", conc)
		res, err := b.closedRounds(ctx, label, runs, body, conc, 0, b.o.Warmup)
		if err != nil {
			return err
		}
		sliced, slice, err := b.slicedRounds(ctx, label, runs, body, conc, res)
		if err != nil {
			return err
		}
		t := closedTable(fmt.Sprintf("Non-streaming chat, HTTP/2 (h2c) to Caddy, concurrency %d", conc), names(runs), res, pathPlain, pathGate,
			[]string{pathPlain, pathGate})
		t.Rows = append(t.Rows, slicedRows(sliced, pathPlain, pathGate, []string{pathPlain, pathGate}, AtLeast(0.95, ""))...)
		t.Notes = append(t.Notes, "Clients speak h2c with prior knowledge to Caddy; Caddy speaks HTTP/1.1 to the emulator.", slicedNote(slice))
		if !directH2 {
			t.Notes = append(t.Notes, "direct uses HTTP/1.1: the emulator does not accept h2c.")
		}
		b.tables = append(b.tables, t)
	}
	return nil
}

// streamSample is one path's measurement of the stream scenario.
type streamSample struct {
	w StreamWindow
	// Per open stream, one value per memory sample taken while every
	// stream was open: RSS and Go heap+stacks in KiB, goroutines.
	rss, live, goroutines []float64
}

// memSamples is how many times memory is sampled while all streams are
// open (their median is reported): one sample can catch a burst of
// transient buffers or a GC cycle half done.
const memSamples = 3

// sampleOpenMemory samples pid's memory while streams are open, against
// the idle figures taken before they started, and appends per-stream
// values to s. It stops early when a stream ends, since the count of open
// streams would no longer be exact.
func (b *Bench) sampleOpenMemory(ctx context.Context, pid int, idleRSS float64, idle GoMem, okRSS, okMem bool, open func() int, s *streamSample) {
	for i := range memSamples {
		if i > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		n := open()
		if n == 0 || (i > 0 && n != s.w.Open) {
			return
		}
		if v, err := ProcRSS(pid); err == nil && okRSS {
			s.rss = append(s.rss, (float64(v)-idleRSS)/float64(n)/1024)
		}
		if !okMem || b.admin.ForceGC(ctx) != nil {
			continue
		}
		if m, err := b.admin.Mem(ctx); err == nil {
			s.live = append(s.live, (m.Live()-idle.Live())/float64(n)/1024)
			s.goroutines = append(s.goroutines, (m.Goroutines-idle.Goroutines)/float64(n))
		}
	}
}

// median is the median of vals, NaN when there are none.
func median(vals []float64) float64 { return SpreadOf(vals).Median }

// scenarioStream: many concurrent SSE streams at a realistic decode rate,
// once per -chunks size.
func (b *Bench) scenarioStream(ctx context.Context) error {
	o := b.o
	tokens := make([]string, o.StreamUsers)
	for i := range tokens {
		tokens[i] = "Bearer " + b.Token(fmt.Sprintf("bench-stream-%04d", i))
	}
	var rr atomic.Uint64
	streamAuth := func() string { return tokens[int((rr.Add(1)-1)%uint64(len(tokens)))] }
	// One client per path for every chunk size and round, with its
	// connections opened before the first round: a storm of new
	// connections would otherwise dominate the first round's TTFT.
	runs := []pathRun{
		{target(pathPlain, b.plainBase, o.Streams, false, streamAuth, nil), b.caddy.Pid()},
		{target(pathGate, b.gateBase, o.Streams, false, streamAuth, nil), b.caddy.Pid()},
		{target(pathDirect, b.simBase, o.Streams, false, streamAuth, nil), 0},
	}
	for _, r := range runs {
		if err := b.openConns(ctx, r.t, o.Streams); err != nil {
			return err
		}
	}
	split, err := b.streamProcs(ctx, streamAuth)
	if err != nil {
		return err
	}
	defer func() {
		for _, sp := range split {
			sp.c.stop() // idle from here on, but holding a thousand connections each
		}
	}()
	for _, chunk := range o.Chunks {
		hdr := http.Header{
			"X-Sim-Tps":    {fmt.Sprint(o.StreamTPS)},
			"X-Sim-Chunk":  {fmt.Sprint(chunk)},
			"X-Sim-Length": {fmt.Sprint(o.StreamTokens)},
		}
		for _, r := range runs {
			r.t.Header = hdr
		}
		body := chatBody(o.Model, smallPrompt, o.StreamTokens, true)
		minEvents := (o.StreamTokens + chunk - 1) / chunk
		label := fmt.Sprintf("stream chunk=%d", chunk)
		measure := func(r pathRun) streamSample {
			var s streamSample
			var allOpen func(int, func() int)
			if r.pid != 0 {
				idleRSS, idleMem, okRSS, okMem := b.idleMemory(ctx, r.pid)
				allOpen = func(n int, open func() int) {
					s.w.Open = n // Streams sets it too, but only when it returns
					b.sampleOpenMemory(ctx, r.pid, idleRSS, idleMem, okRSS, okMem, open, &s)
				}
			}
			c0 := cpuOf(r.pid)
			w := Streams(ctx, r.t, body, o.Streams, o.Ramp, minEvents, allOpen, &b.errs, label+" "+r.t.Name)
			if r.pid != 0 {
				w.CPU = cpuOf(r.pid) - c0
			}
			s.w = w
			return s
		}
		show := func(s streamSample) string {
			str := fmt.Sprintf("TTFT p99 %s gap p99 %s", Percentile(s.w.TTFT, 99).Round(10*time.Microsecond), Percentile(s.w.Gaps, 99).Round(10*time.Microsecond))
			if s.w.Errors > 0 {
				str += fmt.Sprintf(" (%d errors)", s.w.Errors)
			}
			return str
		}
		// Warm-up: every path serves the full number of short streams once,
		// so that no path pays for growing its buffer pools in round 1.
		warmTokens := min(o.StreamTokens, 16)
		warmBody := chatBody(o.Model, smallPrompt, warmTokens, true)
		warm := func(r pathRun) {
			wt := *r.t
			wt.Header = hdr.Clone()
			wt.Header.Set("X-Sim-Length", fmt.Sprint(warmTokens))
			Streams(ctx, &wt, warmBody, o.Streams, o.Ramp, 1, nil, &b.errs, label+" warm-up "+r.t.Name)
		}
		res, err := alternate(ctx, b, label, runs, o.StreamRounds, warm, measure, show)
		if err != nil {
			return err
		}
		// Then plain's and gate's streams together, started in turn: the
		// TTFT target is held to this, where both meet the same load.
		pair := targets(runs[:2]) // plain, gate
		mixed, err := sideBySide(ctx, b, label+" mixed", pair, o.StreamRounds,
			func() []StreamWindow {
				return MixedStreams(ctx, pair, body, o.Streams, o.Ramp, minEvents, &b.errs, label+" mixed")
			},
			func(w StreamWindow) string {
				return "TTFT p99 " + Percentile(w.TTFT, 99).Round(10*time.Microsecond).String()
			})
		if err != nil {
			return err
		}
		// And once more in two Caddy processes, plain's and gate's, so
		// that each path's CPU is a process's own over the same seconds:
		// the CPU target is held to this.
		splitMixed, err := b.streamSplitRounds(ctx, label, chunk, hdr, split, body, minEvents)
		if err != nil {
			return err
		}
		t := streamTable(o, chunk, names(runs), res, mixed, splitMixed)
		if o.Profile {
			for _, sp := range split {
				t.Notes = append(t.Notes, sp.profileNote(b, chunk))
			}
		}
		b.tables = append(b.tables, t)
	}
	return nil
}

// streamProc is a Caddy process of the stream scenario's split rounds: it
// serves one path's streams, plain's or gate's.
type streamProc struct {
	run   pathRun
	c     *Child
	admin *Admin
	err   error // of its CPU profile, when -profile
}

// streamProcs starts the split rounds' two Caddy processes, plain's and
// gate's, each configured as the main one, and opens their connections.
func (b *Bench) streamProcs(ctx context.Context, auth func() string) ([]*streamProc, error) {
	var out []*streamProc
	for _, path := range []string{pathPlain, pathGate} {
		name := "stream-" + path
		cfg, err := b.newCaddyConfig(name, "1s", path == pathPlain)
		if err != nil {
			return nil, err
		}
		c, admin, err := b.startCaddy(ctx, name, cfg)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		port := cfg.GatePort
		if path == pathPlain {
			port = cfg.PlainPort
		}
		t := target(path, fmt.Sprintf("http://127.0.0.1:%d", port), b.o.Streams, false, auth, nil)
		if err := b.openConns(ctx, t, b.o.Streams); err != nil {
			return nil, err
		}
		out = append(out, &streamProc{run: pathRun{t, c.Pid()}, c: c, admin: admin})
	}
	return out, nil
}

// streamSplitRounds runs the stream scenario's split rounds for one chunk
// size (hdr sets the emulator's pace): plain's and gate's streams started
// in turn, each path served by a process of its own, the CPU of each read
// over the same window. With -profile, both processes are profiled over
// the first round.
func (b *Bench) streamSplitRounds(ctx context.Context, label string, chunk int, hdr http.Header, split []*streamProc, body []byte, minEvents int) (map[string][]StreamWindow, error) {
	o := b.o
	ts := make([]*Target, len(split))
	for i, sp := range split {
		ts[i] = sp.run.t
		ts[i].Header = hdr
	}
	round := 0
	return sideBySide(ctx, b, label+" split", ts, o.StreamRounds,
		func() []StreamWindow {
			var wg sync.WaitGroup
			if o.Profile && round == 0 {
				// As long as the streams last: the ramp and the decode.
				d := o.Ramp + time.Duration(float64(o.StreamTokens)/o.StreamTPS*float64(time.Second))
				for _, sp := range split {
					wg.Add(1)
					go func() {
						defer wg.Done()
						sp.err = sp.admin.CPUProfile(ctx, d, b.streamProfilePath(sp.run.t.Name, chunk))
					}()
				}
			}
			round++
			c0 := make([]time.Duration, len(split))
			for i, sp := range split {
				c0[i] = cpuOf(sp.run.pid)
			}
			ws := MixedStreams(ctx, ts, body, o.Streams, o.Ramp, minEvents, &b.errs, label+" split")
			for i, sp := range split {
				ws[i].CPU = cpuOf(sp.run.pid) - c0[i]
			}
			wg.Wait()
			return ws
		},
		func(w StreamWindow) string {
			return fmt.Sprintf("CPU %s", w.CPU.Round(time.Millisecond))
		})
}

// streamProfilePath is where the stream scenario's split rounds write
// path's CPU profile for chunk tokens a chunk.
func (b *Bench) streamProfilePath(path string, chunk int) string {
	return filepath.Join(b.o.Out, fmt.Sprintf("stream-%d-%s.pprof", chunk, path))
}

// profileNote tells where sp's profile of chunk's first split round is.
func (sp *streamProc) profileNote(b *Bench, chunk int) string {
	if sp.err != nil {
		return fmt.Sprintf("CPU profile of %s, split: %v", sp.run.t.Name, sp.err)
	}
	return fmt.Sprintf("CPU profile of %s over the first split round: `go tool pprof %s %s`.", sp.run.t.Name, b.o.CaddyBin, b.streamProfilePath(sp.run.t.Name, chunk))
}

// openConns makes t's client open n keep-alive connections (and the proxy
// as many to the emulator): n overlapping requests that the emulator holds
// for a moment before answering with one token.
func (b *Bench) openConns(ctx context.Context, t *Target, n int) error {
	warm := *t
	warm.Header = http.Header{"X-Sim-Ttft": {"300ms"}, "X-Sim-Length": {"1"}}
	w := ClosedLoop(ctx, &warm, chatBody(b.o.Model, smallPrompt, 1, false), n, 0, n, &b.errs, "stream connection warm-up "+t.Name)
	if w.Errors > 0 && ctx.Err() == nil {
		return fmt.Errorf("opening %d connections via %s: %d requests failed", n, t.Name, w.Errors)
	}
	return ctx.Err()
}

// idleMemory samples pid's memory before a stream window: after a forced
// collection and a pause, so that the previous window's garbage is gone
// and the runtime has had time to return freed pages.
func (b *Bench) idleMemory(ctx context.Context, pid int) (rss float64, mem GoMem, okRSS, okMem bool) {
	if err := b.admin.ForceGC(ctx); err == nil {
		select {
		case <-ctx.Done():
		case <-time.After(b.settle):
		}
		if m, err := b.admin.Mem(ctx); err == nil {
			mem, okMem = m, true
		}
	}
	if v, err := ProcRSS(pid); err == nil {
		rss, okRSS = float64(v), true
	}
	return rss, mem, okRSS, okMem
}

// streamTable summarises the stream scenario for one chunk size.
func streamTable(o Options, chunk int, cols []string, res map[string][]streamSample, mixed, split map[string][]StreamWindow) *Table {
	mixedTTFT := func(p float64) map[string][]float64 {
		return perRound(mixed, func(w StreamWindow) float64 { return Micros(Percentile(w.TTFT, p)) })
	}
	ttft := func(p float64) map[string][]float64 {
		return perRound(res, func(s streamSample) float64 { return Micros(Percentile(s.w.TTFT, p)) })
	}
	gap := func(p float64) map[string][]float64 {
		return perRound(res, func(s streamSample) float64 { return Micros(Percentile(s.w.Gaps, p)) })
	}
	// added returns each proxied path's figure minus direct's, round by
	// round.
	added := func(v map[string][]float64) map[string][]float64 {
		return map[string][]float64{
			pathPlain: Deltas(v[pathPlain], v[pathDirect]),
			pathGate:  Deltas(v[pathGate], v[pathDirect]),
		}
	}
	// Caddy CPU per 1,000 streamed tokens (cpuPer1k is per 1,000 requests).
	cpuPerKTokens := func(w StreamWindow) float64 {
		tokens := float64(w.OK * o.StreamTokens)
		if tokens == 0 {
			return math.NaN()
		}
		return w.CPU.Seconds() * 1000 / tokens * 1000 // ms per 1,000 tokens
	}
	cpu := perRound(res, func(s streamSample) float64 { return cpuPerKTokens(s.w) })
	rss := perRound(res, func(s streamSample) float64 { return median(s.rss) })
	live := perRound(res, func(s streamSample) float64 { return median(s.live) })
	gor := perRound(res, func(s streamSample) float64 { return median(s.goroutines) })
	proxied := []string{pathPlain, pathGate}
	// A stream's first token comes at once, the others at the decode rate.
	nominal := float64(o.StreamTokens-1) / o.StreamTPS
	t := &Table{
		Title:   fmt.Sprintf("Streaming chat, %d concurrent streams × %d tokens at %g tokens/s, %d token(s) per chunk", o.Streams, o.StreamTokens, o.StreamTPS, chunk),
		Columns: cols,
		Rows: []*Row{
			(&Row{Metric: "TTFT p50 (µs)", Vals: ttft(50)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "TTFT p99 (µs)", Vals: ttft(99)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "added TTFT p50 vs direct (µs)", Vals: added(ttft(50))}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "added TTFT p99 vs direct (µs)", Vals: added(ttft(99))}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "TTFT p50, mixed (µs)", Vals: mixedTTFT(50)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "TTFT p99, mixed (µs)", Vals: mixedTTFT(99)}).Delta(pathGate, pathPlain, AtMost(1000, " µs")),
			(&Row{Metric: "inter-chunk delay p50 (µs)", Vals: gap(50)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "inter-chunk delay p99 (µs)", Vals: gap(99)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "added inter-chunk delay p99 vs direct (µs)", Vals: added(gap(99))}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "Caddy CPU (ms per 1,000 tokens)", Vals: only(cpu, proxied...)}).Ratio(pathGate, pathPlain, nil),
			(&Row{Metric: "Caddy CPU, split mixed (ms per 1,000 tokens)", Vals: perRound(split, cpuPerKTokens)}).Ratio(pathGate, pathPlain, AtMost(1.10, "")),
			(&Row{Metric: "Caddy RSS per open stream (KiB)", Vals: only(rss, proxied...)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "Caddy Go heap+stacks per open stream (KiB)", Vals: only(live, proxied...)}).Delta(pathGate, pathPlain, AtMost(8, " KiB")),
			(&Row{Metric: "Caddy goroutines per open stream", Vals: only(gor, proxied...)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: fmt.Sprintf("stream duration p50 (s; nominal %.2f)", nominal), Vals: perRound(res, func(s streamSample) float64 {
				return Percentile(s.w.Total, 50).Seconds()
			})}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "stream duration p99 (s)", Vals: perRound(res, func(s streamSample) float64 {
				return Percentile(s.w.Total, 99).Seconds()
			})}).Delta(pathGate, pathPlain, nil),
			&Row{Metric: "streams open at the memory sample", Vals: perRound(res, func(s streamSample) float64 { return float64(s.w.Open) })},
			&Row{Metric: "errors", Vals: perRound(res, func(s streamSample) float64 { return float64(s.w.Errors) })},
			&Row{Metric: "errors, mixed", Vals: perRound(mixed, func(w StreamWindow) float64 { return float64(w.Errors) })},
			&Row{Metric: "errors, split mixed", Vals: perRound(split, func(w StreamWindow) float64 { return float64(w.Errors) })},
		},
	}
	t.Notes = []string{
		"TTFT is the time from sending the request to the first SSE data event; inter-chunk delay is the time between consecutive data events of a stream. " +
			"\"added … vs direct\" is the proxied path's figure minus direct's in the same round. " +
			fmt.Sprintf("The mixed rows come from rounds of their own: %d streams, plain's and gate's started in turn (which of a pair starts first alternating), running side by side, so that both meet the same load; ", o.Streams) +
			"the TTFT target is held to what the gate adds there on top of plain Caddy. " +
			"The split mixed rows come from as many rounds again, the same streams served by two Caddy processes, plain's and gate's, " +
			"so that each path's Caddy CPU is a process's own over the same seconds; the CPU target is held to them " +
			"(the per-path rounds above read one process's CPU over windows seconds apart, which meet the machine in different states). " +
			"A stream lasting well beyond its nominal duration, or inter-chunk delays near 0 at p50 (events arriving in bursts), mean the machine could not keep up: " +
			"the load generator, Caddy and the emulator share its CPUs.",
		fmt.Sprintf("Memory per open stream: Caddy's VmRSS (and, from its /metrics after a forced GC, Go heap in use + stacks) while every stream is open, "+
			"minus the same figure sampled idle just before the window (after a forced GC and a pause), divided by the streams open; the median of %d samples 200 ms apart. "+
			"Connections are opened before the first round and kept alive, so this is what an active stream adds to an idle keep-alive connection. "+
			"RSS lags frees (the runtime returns pages lazily, and pages freed by an earlier window are reused without growing it), "+
			"so the memory target is held to the steadier heap+stacks row, gate − plain.", memSamples),
	}
	return t
}

// bigPromptMark starts the big prompt; its digits are the request's number
// (Target.VaryAt), so that each request's prompt is new to the gate's
// tokenizer cache. Any eight digits count as the same three tokens.
const bigPromptMark = "Request 00000000:"

// bigPrompt builds a prompt of about n cl100k tokens from common words in
// a seeded random order, in sentences and lines (ordinary text for the
// tokenizer, no repetition it could shortcut) after bigPromptMark, then trims or pads it to n tokens
// exactly where the word boundaries allow. It returns the prompt and its
// token count.
func bigPrompt(n int) (string, int, error) {
	tok, err := tokenizer.Get("cl100k_base")
	if err != nil {
		return "", 0, err
	}
	words := strings.Fields("the of and to in is was for on that with as by at from his her they which this have are were not but had be one all their has more been also when there would who its about into time after first two new only some other most than over such may these people could years many very then them world state can should any between each since our great while well where before under both during through life part day still same being three without good high another")
	rng := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	sb.WriteString(bigPromptMark)
	add := func(k int) {
		for range k {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(words[rng.IntN(len(words))])
			switch rng.IntN(24) {
			case 0:
				sb.WriteByte('.')
			case 1:
				sb.WriteString(".\n") // real prompts have line breaks: escapes to decode
			}
		}
	}
	add(n)
	s := sb.String()
	for range 8 {
		c := tok.Count(s)
		if c == n {
			return s, c, nil
		}
		if c < n {
			sb.Reset()
			sb.WriteString(s)
			add(n - c)
			s = sb.String()
			continue
		}
		// Too long: cut words from the end, about one token each.
		cut := s
		for range c - n {
			if i := strings.LastIndexByte(cut, ' '); i > 0 {
				cut = cut[:i]
			}
		}
		s = cut
	}
	return s, tok.Count(s), nil
}

// scenarioBigPrompt: a huge prompt with max_tokens 1, one request at a
// time, each with its own number in the prompt; then one prompt repeated.
// The emulator tokenizes the prompt too, identically on every path, so
// gate − plain is the gate's admission work (counting the prompt,
// reserving) plus reading the larger body.
func (b *Bench) scenarioBigPrompt(ctx context.Context) error {
	prompt, n, err := bigPrompt(b.o.PromptTokens)
	if err != nil {
		return err
	}
	// Without max_tokens, so that the gate counts every prompt before
	// forwarding it: under a token budget an uncapped request's cap comes
	// from what the model can still produce after its prompt. (A request
	// with its own cap, from a user as far from every limit as the bench
	// plan's, is admitted on a bound of its prompt without counting it:
	// measured last.) Streamed with include_usage, so that every path
	// answers the usage the load generator checks for.
	body := bigPromptBody(b.o.Model, prompt, 0)
	auth := bearer(b.Token("bench-big"))
	runs := []pathRun{
		{target(pathPlain, b.plainBase, 1, false, auth, nil), b.caddy.Pid()},
		{target(pathGate, b.gateBase, 1, false, auth, nil), b.caddy.Pid()},
		{target(pathDirect, b.simBase, 1, false, auth, nil), 0},
	}
	// Every request's prompt is new: the gate counts each one in full.
	mark := bytes.Index(body, []byte(bigPromptMark))
	if mark < 0 {
		return fmt.Errorf("bigprompt: %q not found in the request body", bigPromptMark)
	}
	for _, r := range runs {
		r.t.VaryAt(mark + len("Request "))
	}
	res, err := b.closedRounds(ctx, "bigprompt", runs, body, 1, b.o.PromptReqs, b.o.Warmup)
	if err != nil {
		return err
	}
	// The same prompt sent again and again, as a conversation resends its
	// history or an agent its context: the gate's text cache answers.
	again := []pathRun{
		{target(pathPlain, b.plainBase, 1, false, auth, nil), b.caddy.Pid()},
		{target(pathGate, b.gateBase, 1, false, auth, nil), b.caddy.Pid()},
	}
	resAgain, err := b.closedRounds(ctx, "bigprompt again", again, body, 1, b.o.PromptReqs, b.o.Warmup)
	if err != nil {
		return err
	}
	capped := bigPromptBody(b.o.Model, prompt, 1)
	bound := []pathRun{
		{target(pathPlain, b.plainBase, 1, false, auth, nil), b.caddy.Pid()},
		{target(pathGate, b.gateBase, 1, false, auth, nil), b.caddy.Pid()},
	}
	for _, r := range bound {
		r.t.VaryAt(bytes.Index(capped, []byte(bigPromptMark)) + len("Request "))
	}
	resBound, err := b.closedRounds(ctx, "bigprompt capped", bound, capped, 1, b.o.PromptReqs, b.o.Warmup)
	if err != nil {
		return err
	}
	ms := func(p float64) map[string][]float64 {
		return perRound(res, func(w Window) float64 { return Micros(Percentile(w.Lat, p)) / 1000 })
	}
	t := &Table{
		Title:   fmt.Sprintf("Admission of a %d-token prompt (%d KiB body, streamed, one request at a time)", n, len(body)>>10),
		Columns: names(runs),
		Rows: []*Row{
			(&Row{Metric: "latency p50 (ms)", Vals: ms(50)}).Delta(pathGate, pathPlain, AtMost(20, " ms")),
			(&Row{Metric: "latency p50 (ms), as a ratio", Vals: ms(50)}).Ratio(pathGate, pathPlain, nil),
			(&Row{Metric: "latency min (ms)", Vals: ms(0)}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "Caddy CPU (ms per request)", Vals: only(perRound(res, func(w Window) float64 {
				if w.OK == 0 {
					return math.NaN()
				}
				return w.CPU.Seconds() * 1000 / float64(w.OK)
			}), pathPlain, pathGate)}).Delta(pathGate, pathPlain, nil),
			&Row{Metric: "errors", Vals: perRound(res, func(w Window) float64 { return float64(w.Errors) })},
			(&Row{Metric: "latency p50 (ms), the same prompt again", Vals: perRound(resAgain, func(w Window) float64 {
				return Micros(Percentile(w.Lat, 50)) / 1000
			})}).Delta(pathGate, pathPlain, nil),
			(&Row{Metric: "latency p50 (ms), max_tokens 1: admitted on a bound", Vals: perRound(resBound, func(w Window) float64 {
				return Micros(Percentile(w.Lat, 50)) / 1000
			})}).Delta(pathGate, pathPlain, nil),
		},
		Notes: []string{fmt.Sprintf("%d requests per path and round, streamed (with include_usage, on every path), without max_tokens (the emulator answers 16 tokens). "+
			"gate − plain is the admission time: the gate counts the prompt locally (prompt_count estimate) before forwarding, as it does for every request without a cap under a token budget. "+
			"Each request's prompt starts with its own number, so that every one is counted in full; the \"same prompt again\" row sends one prompt over and over, "+
			"as a conversation resends its history, where the gate's text cache counts it once. The last row sends the numbered prompts with max_tokens 1: "+
			"a request with its own cap from a user far from every limit is admitted on a bound of its prompt read from the body's size, and a stream's prompt is counted after its first chunk.", b.o.PromptReqs)},
	}
	b.tables = append(b.tables, t)
	return nil
}

// createUsers creates n users with one API key each through the admin
// API, several at a time, and returns the keys.
func (b *Bench) createUsers(ctx context.Context, admin *Admin, prefix string, n int) ([]string, error) {
	keys := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				id := fmt.Sprintf("%s%05d", prefix, i)
				err := admin.CreateUser(ctx, id, benchPlan)
				if err == nil {
					keys[i], err = admin.CreateKey(ctx, id)
				}
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return keys, ctx.Err()
}

// scenarioUsers: many distinct users, each with its own API key, used
// round-robin, so that every request looks up a different key and
// touches a different user's windows.
func (b *Bench) scenarioUsers(ctx context.Context) error {
	n, conc := b.o.Users, b.o.UsersConc
	start := time.Now()
	keys, err := b.createUsers(ctx, b.admin, "user", n)
	if err != nil {
		return fmt.Errorf("creating users: %w", err)
	}
	took := time.Since(start)
	b.log("created %d users with API keys in %v", n, took.Round(time.Millisecond))
	roundRobin := roundRobin(keys)
	gateKeys := fmt.Sprintf("gate %d keys", n)
	const gate1 = "gate 1 JWT"
	runs := []pathRun{
		{target(pathPlain, b.plainBase, conc, false, roundRobin, nil), b.caddy.Pid()},
		{target(gate1, b.gateBase, conc, false, bearer(b.Token("bench")), nil), b.caddy.Pid()},
		{target(gateKeys, b.gateBase, conc, false, roundRobin, nil), b.caddy.Pid()},
		{target(pathDirect, b.simBase, conc, false, roundRobin, nil), 0},
	}
	body := chatBody(b.o.Model, smallPrompt, 16, false)
	label := fmt.Sprintf("users n=%d c=%d", n, conc)
	res, err := b.closedRounds(ctx, label, runs, body, conc, 0, b.o.Warmup)
	if err != nil {
		return err
	}
	sliced, slice, err := b.slicedRounds(ctx, label, runs, body, conc, res)
	if err != nil {
		return err
	}
	cpuPaths := []string{pathPlain, gate1, gateKeys}
	t := closedTable(fmt.Sprintf("Many users: %d API keys round-robin, non-streaming, concurrency %d", n, conc), names(runs), res, pathPlain, gateKeys, cpuPaths)
	t.Rows = append(t.Rows, (&Row{Metric: "throughput (req/s), gate with 1 JWT user", Vals: only(perRound(res, Window.Rate), pathPlain, gate1)}).Ratio(gate1, pathPlain, nil))
	t.Rows = append(t.Rows, slicedRows(sliced, pathPlain, gateKeys, cpuPaths, AtLeast(0.95, ""))...)
	t.Rows = append(t.Rows, (&Row{Metric: "throughput, sliced (req/s), gate with 1 JWT user", Vals: only(perRound(sliced, Window.Rate), pathPlain, gate1)}).Ratio(gate1, pathPlain, nil))
	// What the many users cost beyond the gate's own work with one.
	t.Rows = append(t.Rows, (&Row{Metric: fmt.Sprintf("throughput, sliced (req/s), %d keys against 1 JWT user", n), Vals: only(perRound(sliced, Window.Rate), gate1, gateKeys)}).Ratio(gateKeys, gate1, nil))
	t.Notes = []string{slicedNote(slice), fmt.Sprintf("Setting up the %d users and keys through the admin API took %v (%.0f users/s, one PUT and one POST each).", n, took.Round(time.Millisecond), float64(n)/took.Seconds())}
	b.tables = append(b.tables, t)
	return nil
}

// roundRobin returns an Auth function that hands out keys as bearer
// credentials in turn, from the first.
func roundRobin(keys []string) func() string {
	var next atomic.Uint64
	return func() string {
		return "Bearer " + keys[int((next.Add(1)-1)%uint64(len(keys)))]
	}
}

// scenarioStore: the cost of committing usage: flush_interval 1s (the
// main Caddy) against flush_interval 0 (a second Caddy whose requests each
// wait for their commit), and a check that the store holds a record of
// every request answered.
func (b *Bench) scenarioStore(ctx context.Context) error {
	if err := b.startFlush0(ctx); err != nil {
		return err
	}
	const flush1, flush0 = "flush 1s", "flush 0"
	users := map[string]string{flush1: "store-flush-1s", flush0: "store-flush-0"}
	admins := map[string]*Admin{flush1: b.admin, flush0: b.admin0}
	conc := b.o.StoreConc
	runs := []pathRun{
		{target(pathPlain, b.plainBase, conc, false, bearer(b.Token(users[flush1])), nil), b.caddy.Pid()},
		{target(flush1, b.gateBase, conc, false, bearer(b.Token(users[flush1])), nil), b.caddy.Pid()},
		{target(flush0, b.gate0Base, conc, false, bearer(b.Token(users[flush0])), nil), b.caddy0.Pid()},
	}
	body := chatBody(b.o.Model, smallPrompt, 16, false)
	// Warm up first, and count what the store holds after it.
	for _, r := range runs {
		ClosedLoop(ctx, r.t, body, conc, b.o.Warmup, 0, &b.errs, "store warm-up "+r.t.Name)
	}
	flushWait := func() {
		select {
		case <-ctx.Done():
		case <-time.After(b.flushWait):
		}
	}
	flushWait()
	before := map[string]int64{}
	for name, user := range users {
		n, err := admins[name].UsageRequests(ctx, user)
		if err != nil {
			return fmt.Errorf("usage before: %w", err)
		}
		before[name] = n
	}
	res, err := b.closedRounds(ctx, fmt.Sprintf("store c=%d", conc), runs, body, conc, 0, 0)
	if err != nil {
		return err
	}
	flushWait()
	t := closedTable(fmt.Sprintf("Store: usage commits, flush_interval 1s vs 0, non-streaming, concurrency %d", conc), names(runs), res, flush1, flush0,
		names(runs))
	rate := perRound(res, Window.Rate)
	t.Rows = append(t.Rows,
		(&Row{Metric: "throughput (req/s), flush 1s vs plain", Vals: only(rate, pathPlain, flush1)}).Ratio(flush1, pathPlain, nil),
		(&Row{Metric: "throughput (req/s), flush 0 vs plain", Vals: only(rate, pathPlain, flush0)}).Ratio(flush0, pathPlain, nil),
	)
	committed := map[string][]float64{}
	for _, r := range runs[1:] {
		name := r.t.Name
		after, err := admins[name].UsageRequests(ctx, users[name])
		if err != nil {
			return fmt.Errorf("usage after: %w", err)
		}
		var ok int
		var elapsed time.Duration
		for _, w := range res[name] {
			ok += w.OK
			elapsed += w.Elapsed
		}
		got := after - before[name]
		if got != int64(ok) {
			b.errs.Add("store "+name, fmt.Errorf("store holds %d records for %d requests answered 200", got, ok))
		}
		committed[name] = []float64{float64(got) / elapsed.Seconds()}
	}
	t.Rows = append(t.Rows, (&Row{Metric: "usage records committed per second", Vals: committed}).Ratio(flush0, flush1, nil))
	t.Notes = []string{"plain is the main Caddy's reverse_proxy-only site, for reference. " +
		"flush_interval is a global option, so flush 0 runs in a second Caddy process (gate site only, its own bbolt file). " +
		"Records committed are read back through GET /llm_gate/usage after the last flush and must equal the requests answered 200."}
	b.tables = append(b.tables, t)
	return nil
}
