package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// gateB is the split scenario's path through the -split-b build's gate.
const gateB = "gate B"

// scenarioSplit: small non-streaming chat requests over HTTP/1.1 to plain
// and gate served by two Caddy processes of their own (and, with -split-b,
// to a third process running another build's gate), so that each path's
// Caddy CPU is its process's alone rather than read over its slices of a
// process the paths share. With -profile, every process's CPU profile is
// recorded during the first sliced round, where the paths meet the machine
// in the same state: profiles taken one after the other do not compare, as
// the machine's speed moves between them by more than the gate costs. With
// -split-keys N, each gate process gets N users with API keys, and every
// path's requests go round-robin over them (plain passes on a gate's).
func (b *Bench) scenarioSplit(ctx context.Context) error {
	conc := b.o.SplitConc
	jwt := bearer(b.Token("bench"))
	type proc struct {
		path, bin string
		plain     bool
	}
	procs := []proc{{pathPlain, b.o.CaddyBin, true}, {pathGate, b.o.CaddyBin, false}}
	if b.o.SplitB != "" {
		procs = append(procs, proc{gateB, b.o.SplitB, false})
	}
	var runs []pathRun
	admins, bins := map[string]*Admin{}, map[string]string{}
	var keyAuth func() string // the last gate's keys, for plain
	for _, p := range procs {
		name := splitName(p.path)
		cfg, err := b.newCaddyConfig(name, "1s", p.plain)
		if err != nil {
			return err
		}
		if p.path == gateB {
			cfg.GateTransport = b.o.SplitBTransport
		}
		c, admin, err := b.startCaddyBin(ctx, name, p.bin, cfg)
		if err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		b.split = append(b.split, c)
		port := cfg.GatePort
		if p.plain {
			port = cfg.PlainPort
		}
		auth := jwt
		if n := b.o.SplitKeys; n > 0 && !p.plain {
			keys, err := b.createUsers(ctx, admin, "user", n)
			if err != nil {
				return fmt.Errorf("creating users in %s: %w", name, err)
			}
			auth = roundRobin(keys)
			keyAuth = roundRobin(keys)
		}
		runs = append(runs, pathRun{target(p.path, fmt.Sprintf("http://127.0.0.1:%d", port), conc, false, auth, nil), c.Pid()})
		admins[p.path], bins[p.path] = admin, p.bin
	}
	who := "one JWT user"
	if keyAuth != nil {
		runs[0].t.Auth = keyAuth // plain's process comes first
		who = fmt.Sprintf("%d API keys round-robin", b.o.SplitKeys)
	}
	body := chatBody(b.o.Model, smallPrompt, 16, false)
	label := fmt.Sprintf("split c=%d", conc)
	res, err := b.closedRounds(ctx, label, runs, body, conc, 0, b.o.Warmup)
	if err != nil {
		return err
	}
	var (
		wg       sync.WaitGroup
		profErrs = make([]error, len(runs))
	)
	if b.o.Profile {
		// The first sliced round lasts as long as a round of the windows.
		round := b.o.Window * time.Duration(len(runs))
		for i, r := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				profErrs[i] = admins[r.t.Name].CPUProfile(ctx, round, b.profilePath(r.t.Name))
			}()
		}
	}
	sliced, slice, err := b.slicedRounds(ctx, label, runs, body, conc, res)
	wg.Wait()
	if err != nil {
		return err
	}
	paths := names(runs)
	t := closedTable(fmt.Sprintf("Split: plain and gate in Caddy processes of their own, non-streaming, HTTP/1.1, concurrency %d, %s", conc, who), paths, res, pathPlain, pathGate, paths)
	t.Rows = append(t.Rows, slicedRows(sliced, pathPlain, pathGate, paths, nil)...)
	if b.o.SplitB != "" {
		t.Rows = append(t.Rows,
			(&Row{Metric: "throughput, sliced (req/s), gate B against gate", Vals: only(perRound(sliced, Window.Rate), pathGate, gateB)}).Ratio(gateB, pathGate, nil),
			(&Row{Metric: "Caddy CPU, sliced (µs per req), gate B against gate", Vals: only(perRound(sliced, usePerReq(func(u Usage) time.Duration { return u.Proc })), pathGate, gateB)}).Delta(gateB, pathGate, nil),
		)
		t.Notes = append(t.Notes, fmt.Sprintf("gate B is the gate of %s, in a third process, with reverse_proxy's %s transport.", b.o.SplitB, b.o.SplitBTransport))
	}
	t.Notes = append(t.Notes, "Each path has a Caddy process of its own, so its Caddy CPU is that process's alone. In the sliced rows, "+slicedHow(slice))
	if b.o.Profile {
		for i, r := range runs {
			if profErrs[i] != nil {
				t.Notes = append(t.Notes, fmt.Sprintf("CPU profile of %s: %v", r.t.Name, profErrs[i]))
				continue
			}
			t.Notes = append(t.Notes, fmt.Sprintf("CPU profile of %s over the first sliced round: `go tool pprof %s %s`.", r.t.Name, bins[r.t.Name], b.profilePath(r.t.Name)))
		}
	}
	b.tables = append(b.tables, t)
	return nil
}

// splitName names the split scenario's process of path (its Caddyfile, its
// log, its profile).
func splitName(path string) string {
	return "split-" + map[string]string{pathPlain: "plain", pathGate: "gate", gateB: "gate-b"}[path]
}

// profilePath is where the split scenario writes path's CPU profile.
func (b *Bench) profilePath(path string) string {
	return filepath.Join(b.o.Out, splitName(path)+".pprof")
}
