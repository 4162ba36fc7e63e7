package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, o Options)
		wantErr string
	}{
		{name: "defaults are the full run", args: nil, check: func(t *testing.T, o Options) {
			if o.Rounds != 5 || o.Window != 3*time.Second || o.Streams != 1000 || o.StreamTokens != 256 || o.StreamTPS != 50 ||
				o.Users != 10000 || o.UsersConc != 64 || o.PromptTokens != 100000 || o.Out != "bench/out" || o.ConvTurns != 10 || o.ConvConc != 16 ||
				!slices.Equal(o.Conc, []int{1, 16, 128}) || !slices.Equal(o.Chunks, []int{1, 4}) || !slices.Equal(o.H2Conc, []int{16, 128}) ||
				!slices.Equal(o.Scenarios, allScenarios) {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{name: "quick shrinks the sizes", args: []string{"-quick"}, check: func(t *testing.T, o Options) {
			if !o.Quick || o.Rounds != 3 || o.Window != time.Second || o.Streams != 200 || o.Users != 500 || !slices.Equal(o.H2Conc, []int{16}) {
				t.Errorf("quick: %+v", o)
			}
		}},
		{name: "explicit sizes win over quick", args: []string{"-streams", "50", "-quick", "-rounds", "7", "-h2-conc", "8,9"}, check: func(t *testing.T, o Options) {
			if o.Streams != 50 || o.Rounds != 7 || o.Window != time.Second || !slices.Equal(o.H2Conc, []int{8, 9}) {
				t.Errorf("quick with overrides: %+v", o)
			}
		}},
		{name: "scenario subset in given order, deduplicated", args: []string{"-scenarios", "store, nonstream,store,"}, check: func(t *testing.T, o Options) {
			if !slices.Equal(o.Scenarios, []string{"store", "nonstream"}) {
				t.Errorf("scenarios %v", o.Scenarios)
			}
		}},
		{name: "paths", args: []string{"-caddy", "/x/caddy", "-sim", "/x/sim", "-out", "bench"}, check: func(t *testing.T, o Options) {
			if o.CaddyBin != "/x/caddy" || o.SimBin != "/x/sim" || o.Out != "bench" {
				t.Errorf("paths: %+v", o)
			}
		}},
		{name: "unknown scenario", args: []string{"-scenarios", "nonstream,warp"}, wantErr: `unknown scenario "warp"`},
		{name: "empty scenarios", args: []string{"-scenarios", " , "}, wantErr: "nothing selected"},
		{name: "bad concurrency", args: []string{"-conc", "1,x"}, wantErr: "-conc"},
		{name: "zero concurrency", args: []string{"-conc", "0"}, wantErr: "-conc"},
		{name: "bad h2 list", args: []string{"-h2-conc", "-1"}, wantErr: "-h2-conc"},
		{name: "bad chunks", args: []string{"-chunks", "a"}, wantErr: "-chunks"},
		{name: "zero rounds", args: []string{"-rounds", "0"}, wantErr: "-rounds"},
		{name: "zero window", args: []string{"-window", "0s"}, wantErr: "-window"},
		{name: "zero streams", args: []string{"-streams", "0"}, wantErr: "-streams"},
		{name: "zero users", args: []string{"-users", "0"}, wantErr: "-users"},
		{name: "too many turns", args: []string{"-conv-turns", "11"}, wantErr: "-conv-turns must be 1 to 10"},
		{name: "zero conversation concurrency", args: []string{"-conv-conc", "0"}, wantErr: "-conv-conc"},
		{name: "zero split concurrency", args: []string{"-split-conc", "0"}, wantErr: "-split-conc"},
		{name: "negative split keys", args: []string{"-split-keys", "-1"}, wantErr: "-split-keys"},
		{name: "split B and profile", args: []string{"-split-b", "/x/old-caddy", "-profile", "-split-conc", "8", "-split-keys", "10000"}, check: func(t *testing.T, o Options) {
			if o.SplitB != "/x/old-caddy" || !o.Profile || o.SplitConc != 8 || o.SplitKeys != 10000 || !slices.Contains(o.Scenarios, "split") {
				t.Errorf("%+v", o)
			}
		}},
		{name: "transports", args: []string{}, check: func(t *testing.T, o Options) {
			if o.GateTransport != "llm_gate" || o.SplitBTransport != "llm_gate" {
				t.Errorf("transports %q, %q; want llm_gate for both by default", o.GateTransport, o.SplitBTransport)
			}
		}},
		{name: "gate B's transport", args: []string{"-split-b-transport", "http"}, check: func(t *testing.T, o Options) {
			if o.GateTransport != "llm_gate" || o.SplitBTransport != "http" {
				t.Errorf("transports %q, %q", o.GateTransport, o.SplitBTransport)
			}
		}},
		{name: "unknown transport", args: []string{"-gate-transport", "fastcgi"}, wantErr: `transport "fastcgi"`},
		{name: "positional argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

// TestRunMissingBinaries: a binary that is not there stops run before it
// does anything, even creating the output directory.
func TestRunMissingBinaries(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	o := Options{CaddyBin: filepath.Join(t.TempDir(), "caddy"), SimBin: "/bin/true", Out: out}
	if code := run(context.Background(), o); code != 2 {
		t.Errorf("run without caddy = %d, want 2", code)
	}
	o.CaddyBin, o.SplitB = "/bin/true", filepath.Join(t.TempDir(), "old-caddy")
	if code := run(context.Background(), o); code != 2 {
		t.Errorf("run without the -split-b binary = %d, want 2", code)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory made before the binaries were checked (%v)", err)
	}
}

// TestRunBrokenCaddy: a "caddy" that exits at once makes run fail fast
// (status 2) with no report and no child left behind.
func TestRunBrokenCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	o := tinyOptions(t)
	o.CaddyBin = "/bin/false"
	if code := run(context.Background(), o); code != 2 {
		t.Errorf("run with a broken caddy = %d, want 2", code)
	}
	if _, err := os.Stat(filepath.Join(o.Out, "results.md")); err == nil {
		t.Error("results.md written for a run that never started")
	}
}

// TestRunPartial: when a scenario fails, the scenarios done so far are
// still reported, flagged as incomplete, and run exits 2.
func TestRunPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	o := tinyOptions(t)
	o.Scenarios = []string{"nonstream", "users"}
	o.Conc = []int{2}
	o.Users = 3
	// The fake Caddy (which inherits the environment) refuses every key.
	t.Setenv("LLM_BENCH_FAKE_NO_KEYS", "1")
	if code := run(context.Background(), o); code != 2 {
		t.Fatalf("run = %d, want 2", code)
	}
	md, err := os.ReadFile(filepath.Join(o.Out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"INCOMPLETE: the run stopped early: scenario users", "concurrency 2"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("partial report lacks %q:\n%s", want, md)
		}
	}
}

// TestRunInterrupted: cancelling the context stops the run with 130.
func TestRunInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	o := tinyOptions(t)
	o.Scenarios = []string{"nonstream"}
	o.Window = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	start := time.Now()
	if code := run(ctx, o); code != 130 {
		t.Errorf("interrupted run = %d, want 130", code)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("interrupted run took %v", d)
	}
}
