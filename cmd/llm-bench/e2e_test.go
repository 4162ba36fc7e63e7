package main

import (
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tinyOptions are sizes that run every scenario in a few seconds.
func tinyOptions(t *testing.T) Options {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("LLM_BENCH_FAKE", "1")
	return Options{
		CaddyBin: self, SimBin: self, Out: t.TempDir(), Model: "sim-model",
		Scenarios: allScenarios,
		Rounds:    2, Window: 150 * time.Millisecond, Warmup: 30 * time.Millisecond,
		Conc: []int{1, 16}, H2Conc: []int{4},
		Streams: 20, StreamTokens: 8, StreamTPS: 400, Chunks: []int{1, 4}, StreamRounds: 1, StreamUsers: 3, Ramp: 10 * time.Millisecond,
		PromptTokens: 3000, PromptReqs: 2, ConvTurns: 4, ConvConc: 3,
		Users: 30, UsersConc: 4, StoreConc: 4, SplitConc: 4, SplitB: self, SplitKeys: 5, Profile: true,
		GateTransport: "llm_gate", SplitBTransport: "http",
		settle: 10 * time.Millisecond, flushWait: 50 * time.Millisecond,
	}
}

// TestRunEndToEnd runs every scenario against the fake Caddy and the real
// emulator (both this test binary) and checks the report and the chart.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	o := tinyOptions(t)
	if code := run(context.Background(), o); code != 0 {
		t.Fatalf("run exited %d", code)
	}
	md, err := os.ReadFile(filepath.Join(o.Out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Non-streaming chat, HTTP/1.1, concurrency 1", "Non-streaming chat, HTTP/1.1, concurrency 16",
		"HTTP/2 (h2c) to Caddy, concurrency 4", "1 token(s) per chunk", "4 token(s) per chunk",
		"Admission of a 3000-token prompt", "Conversations of 4 turns, non-streaming, concurrency 3", "Many users: 30 API keys", "Store: usage commits",
		"Caddy: v2.11.9-fake", "## Errors\n\nnone", "gate/plain", "![latency percentiles",
		// The latency, TTFT and throughput targets are held to the side-by-side rows.
		"— latency p50, interleaved (µs) gate − plain", "— latency p99, interleaved (µs) gate − plain", "— TTFT p99, mixed (µs) gate − plain",
		"concurrency 16 — throughput, sliced (req/s) gate/plain", "concurrency 4 — throughput, sliced (req/s) gate/plain",
		"— throughput, sliced (req/s) gate 30 keys/plain",
		// What the many users cost beyond one user's gate.
		"| throughput, sliced (req/s), 30 keys against 1 JWT user", "gate 30 keys/gate 1 JWT: ",
		// plain, gate and gate B each in a process of its own, profiled.
		"Split: plain and gate in Caddy processes of their own, non-streaming, HTTP/1.1, concurrency 4, 5 API keys round-robin",
		"gate B/gate", "gate B − gate", "CPU profile of gate over the first sliced round",
		// Streams in two processes, plain's and gate's, hold the CPU target.
		"| Caddy CPU, split mixed (ms per 1,000 tokens)", "CPU profile of plain over the first split round",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	// The sliced rows read the machine's counters: every path's machine
	// CPU per request and idle share are figures, not n/a.
	for _, metric := range []string{"| machine CPU busy, sliced (µs per req)", "| machine idle, sliced (%)", "| load generator CPU, sliced (µs per req)"} {
		n := 0
		for line := range strings.Lines(string(md)) {
			if strings.HasPrefix(line, metric) {
				n++
				if strings.Contains(line, "n/a") {
					t.Errorf("row without figures: %s", line)
				}
			}
		}
		if n < 4 { // c=16, h2 c=4, users, split
			t.Errorf("%d rows %q, want one per sliced table", n, metric)
		}
	}
	for _, p := range []string{"split-plain.pprof", "split-gate.pprof", "split-gate-b.pprof", "stream-1-plain.pprof", "stream-4-gate.pprof"} {
		b, err := os.ReadFile(filepath.Join(o.Out, p))
		if err != nil || !strings.HasPrefix(string(b), "fake profile of ") {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if strings.Contains(string(md), "WARNING") {
		t.Errorf("run flagged with errors:\n%s", md)
	}
	f, err := os.Open(filepath.Join(o.Out, "latency.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatalf("latency.png: %v", err)
	}
}
