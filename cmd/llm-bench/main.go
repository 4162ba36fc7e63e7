// Command llm-bench measures what the llm_gate plugin costs: it runs the
// vLLM emulator and Caddy as child processes, drives the same OpenAI
// requests through Caddy with reverse_proxy only (plain), through Caddy
// with llm_gate in front of reverse_proxy (gate) and straight to the
// emulator (direct), in alternation, and writes a Markdown report and a
// latency chart.
//
//	llm-bench -caddy bin/caddy -sim bin/vllm-sim -out bench
//	llm-bench -caddy bin/caddy -sim bin/vllm-sim -quick -out bench/out
//	llm-bench ... -scenarios nonstream,stream
//
// Scenarios: nonstream (c=1,16,128 over HTTP/1.1), h2 (h2c), stream (many
// concurrent SSE streams), bigprompt (admission of a 100,000-token
// prompt), users (10,000 API-key users round-robin), store (flush_interval
// 1s vs 0), split (plain and gate in two Caddy processes, with -split-b a
// third for another build's gate, and with -profile their CPU profiles).
// Every child process is killed when the benchmark ends, however it ends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options are the command line.
type Options struct {
	CaddyBin, SimBin, Out string
	Quick                 bool
	Scenarios             []string
	Model                 string

	Rounds int           // rounds of every closed-loop scenario
	Window time.Duration // length of one path's measurement in a round
	Warmup time.Duration // unmeasured load before a scenario's rounds

	Conc   []int // nonstream concurrencies
	H2Conc []int // h2 concurrencies; empty skips the h2 scenario

	Streams      int
	StreamTokens int
	StreamTPS    float64
	Chunks       []int
	StreamRounds int
	StreamUsers  int // JWT users the gate's streams are spread over
	Ramp         time.Duration

	PromptTokens int
	PromptReqs   int // per path and round

	ConvTurns int // turns of each conversation of the conversation scenario
	ConvConc  int

	Users     int
	UsersConc int
	StoreConc int

	SplitConc int    // concurrency of the split scenario
	SplitB    string // a second Caddy binary for the split scenario's gate B path ("": none)
	SplitKeys int    // API-key users the split scenario's gates are driven with (0: one JWT user)
	Profile   bool   // the split scenario records each process's CPU profile

	// GateTransport is the reverse_proxy transport of the gate's sites
	// (llm_gate or http; plain's is always http), SplitBTransport gate B's.
	GateTransport, SplitBTransport string

	Keep bool // keep the temp dir (Caddyfiles, logs, bbolt files)

	// settle and flushWait override Bench's pauses (tests shorten them).
	settle, flushWait time.Duration
}

// allScenarios in run order.
var allScenarios = []string{"nonstream", "h2", "conversation", "stream", "bigprompt", "users", "store", "split"}

func intList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseFlags reads the command line. -quick changes the defaults of the
// size flags; a size flag given explicitly wins over -quick.
func parseFlags(args []string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("llm-bench", flag.ContinueOnError)
	fs.StringVar(&o.CaddyBin, "caddy", "bin/caddy", "Caddy binary built with the llm_gate plugin")
	fs.StringVar(&o.SimBin, "sim", "bin/vllm-sim", "vLLM emulator binary")
	fs.StringVar(&o.Out, "out", "bench/out", "directory for results.md and latency.png")
	fs.BoolVar(&o.Quick, "quick", false, "small sizes for a smoke run of about two minutes")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "comma-separated subset of: "+strings.Join(allScenarios, ", "))
	fs.StringVar(&o.Model, "model", "sim-model", "model name served by the emulator")
	fs.IntVar(&o.Rounds, "rounds", 5, "rounds of alternation per closed-loop scenario")
	fs.DurationVar(&o.Window, "window", 3*time.Second, "measurement window per path and round")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured load per path before a scenario")
	conc := fs.String("conc", "1,16,128", "concurrencies of the nonstream scenario")
	h2conc := fs.String("h2-conc", "16,128", "concurrencies of the h2 (h2c) scenario")
	fs.IntVar(&o.Streams, "streams", 1000, "concurrent streams of the stream scenario")
	fs.IntVar(&o.StreamTokens, "stream-tokens", 256, "tokens per stream")
	fs.Float64Var(&o.StreamTPS, "stream-tps", 50, "decode rate of each stream in tokens/s")
	chunks := fs.String("chunks", "1,4", "tokens per chunk, one stream scenario each")
	fs.IntVar(&o.StreamRounds, "stream-rounds", 5, "rounds of the stream scenario (per path, then as many mixed)")
	fs.IntVar(&o.StreamUsers, "stream-users", 1, "JWT users the gate's streams are spread over, round-robin (1: every stream is the same user's)")
	fs.DurationVar(&o.Ramp, "ramp", time.Second, "streams start evenly spread over this time")
	fs.IntVar(&o.PromptTokens, "prompt-tokens", 100000, "prompt size of the bigprompt scenario")
	fs.IntVar(&o.PromptReqs, "prompt-reqs", 5, "bigprompt requests per path and round")
	fs.IntVar(&o.ConvTurns, "conv-turns", 10, fmt.Sprintf("turns of each conversation of the conversation scenario (1 to %d)", len(conversationQuestions)))
	fs.IntVar(&o.ConvConc, "conv-conc", 16, "concurrency of the conversation scenario")
	fs.IntVar(&o.Users, "users", 10000, "distinct API-key users of the users scenario")
	fs.IntVar(&o.UsersConc, "users-conc", 64, "concurrency of the users scenario")
	fs.IntVar(&o.StoreConc, "store-conc", 16, "concurrency of the store scenario")
	fs.IntVar(&o.SplitConc, "split-conc", 16, "concurrency of the split scenario (plain and gate in two Caddy processes)")
	fs.StringVar(&o.SplitB, "split-b", "", "another Caddy binary (an earlier build, say) whose gate runs as a third process of the split scenario, gate B")
	fs.IntVar(&o.SplitKeys, "split-keys", 0, "drive the split scenario's gates with this many API-key users, round-robin, created in each gate process (0: one JWT user)")
	fs.StringVar(&o.GateTransport, "gate-transport", "llm_gate", "reverse_proxy transport of the gate's sites: llm_gate (sends the body the gate read with the headers) or http (plain's)")
	fs.StringVar(&o.SplitBTransport, "split-b-transport", "", "reverse_proxy transport of gate B's site (default: -gate-transport)")
	fs.BoolVar(&o.Profile, "profile", false, "record each split process's CPU profile during the first sliced round, as <out>/split-<path>.pprof, and the stream scenario's during its first split round, as <out>/stream-<chunk>-<path>.pprof")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir with Caddyfiles, logs and bbolt files")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.Quick {
		quick := map[string]string{
			"rounds": "3", "window": "1s", "warmup": "300ms", "streams": "200", "stream-tokens": "64",
			"stream-rounds": "2", "ramp": "300ms", "prompt-reqs": "3", "users": "500", "h2-conc": "16",
		}
		for name, v := range quick {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return o, err
				}
			}
		}
	}
	var err error
	if o.Conc, err = intList(*conc); err != nil {
		return o, fmt.Errorf("-conc: %w", err)
	}
	if o.H2Conc, err = intList(*h2conc); err != nil {
		return o, fmt.Errorf("-h2-conc: %w", err)
	}
	if o.Chunks, err = intList(*chunks); err != nil {
		return o, fmt.Errorf("-chunks: %w", err)
	}
	for s := range strings.SplitSeq(*scen, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return o, fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", "))
		}
		if !slices.Contains(o.Scenarios, s) {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	switch {
	case len(o.Scenarios) == 0:
		return o, errors.New("-scenarios: nothing selected")
	case o.Rounds < 1 || o.StreamRounds < 1:
		return o, errors.New("-rounds and -stream-rounds must be at least 1")
	case o.Window <= 0:
		return o, errors.New("-window must be positive")
	case o.Streams < 1 || o.StreamTokens < 1 || o.StreamTPS <= 0 || o.StreamUsers < 1:
		return o, errors.New("-streams, -stream-tokens, -stream-tps and -stream-users must be positive")
	case o.PromptTokens < 1 || o.PromptReqs < 1 || o.Users < 1 || o.UsersConc < 1 || o.StoreConc < 1 || o.ConvConc < 1 || o.SplitConc < 1:
		return o, errors.New("-prompt-tokens, -prompt-reqs, -users, -users-conc, -store-conc, -conv-conc and -split-conc must be positive")
	case o.ConvTurns < 1 || o.ConvTurns > len(conversationQuestions):
		return o, fmt.Errorf("-conv-turns must be 1 to %d", len(conversationQuestions))
	case o.SplitKeys < 0:
		return o, errors.New("-split-keys must not be negative")
	}
	if o.SplitBTransport == "" {
		o.SplitBTransport = o.GateTransport
	}
	for _, t := range []string{o.GateTransport, o.SplitBTransport} {
		if t != "llm_gate" && t != "http" {
			return o, fmt.Errorf("transport %q: want llm_gate or http", t)
		}
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "llm-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, o)
	stop()
	os.Exit(code)
}

// run executes the benchmark and returns the exit status: 0 when every
// request succeeded, 1 when some failed (the report is written and
// flagged), 2 when the benchmark could not run or stopped early (the
// report of the scenarios done is written), 130 when interrupted.
func run(ctx context.Context, o Options) int {
	for _, bin := range []string{o.CaddyBin, o.SimBin, o.SplitB} {
		if bin == "" {
			continue // no -split-b
		}
		if _, err := os.Stat(bin); err != nil {
			fmt.Fprintf(os.Stderr, "llm-bench: %v (run `make build` first)\n", err)
			return 2
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "llm-bench:", err)
		return 2
	}
	b, err := NewBench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "llm-bench:", err)
		return 2
	}
	defer b.Close()

	started := time.Now()
	rep, err := b.Run(ctx)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "llm-bench: interrupted; child processes stopped")
		return 130
	}
	if rep == nil {
		fmt.Fprintln(os.Stderr, "llm-bench:", err)
		return 2
	}
	rep.Duration = time.Since(started)
	md := rep.Markdown()
	fmt.Print("\n" + md)
	if err := os.WriteFile(filepath.Join(o.Out, "results.md"), []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "llm-bench:", err)
		return 2
	}
	fmt.Printf("\nwrote %s\n", filepath.Join(o.Out, "results.md"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "llm-bench:", err)
		return 2
	}
	if rep.Errors.Total() > 0 {
		fmt.Fprintf(os.Stderr, "llm-bench: %d requests or streams failed; the results are flagged\n", rep.Errors.Total())
		return 1
	}
	return 0
}
