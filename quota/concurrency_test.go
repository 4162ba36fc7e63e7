package quota

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentBudgetBound hammers one user's 10,000-token daily budget from
// 100 goroutines and checks the package's bound exactly:
// used <= limit + Σ max(0, actualPrompt − estimatedPrompt).
func TestConcurrentBudgetBound(t *testing.T) {
	const (
		limit    = 10000
		estimate = 50
		workers  = 100
	)
	modes := []struct {
		name       string
		promptErr  func(r *rand.Rand) int64
		completion func(r *rand.Rand, max int64) int64
		minuteToo  bool
	}{
		{"random errors and completions",
			func(r *rand.Rand) int64 { return r.Int64N(11) - 5 },
			func(r *rand.Rand, max int64) int64 { return r.Int64N(max + 1) }, false},
		{"worst case: under-estimates, full completions",
			func(*rand.Rand) int64 { return 5 },
			func(_ *rand.Rand, max int64) int64 { return max }, false},
		{"over-estimates free room for later requests",
			func(*rand.Rand) int64 { return -5 },
			func(_ *rand.Rand, max int64) int64 { return max }, false},
		{"minute window as well",
			func(r *rand.Rand) int64 { return r.Int64N(11) - 5 },
			func(r *rand.Rand, max int64) int64 { return r.Int64N(max + 1) }, true},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			for round := range 10 {
				e, _ := newTestEngine(t0) // the clock stands still: no rollover
				l := tokens(Day, limit)
				if m.minuteToo {
					l.Tokens[Minute] = limit / 2
				}
				var positive, admitted atomic.Int64
				var wg sync.WaitGroup
				for g := range workers {
					wg.Go(func() {
						r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
						for attempt := 0; attempt < 1_000_000; attempt++ {
							n := 1 + r.IntN(3)
							res, err := e.Admit(Request{User: "shared", Limits: l, Prompt: estimate,
								Choices: n, DefaultOutput: 4096})
							var d *Denial
							if errors.As(err, &d) {
								if d.Kind == TokenRate && d.RetryAfter == 0 {
									t.Errorf("unexpected too-large denial %+v", d)
									return
								}
								if d.Used+d.Need > d.Limit {
									return // used up: nothing more will fit
								}
								runtime.Gosched() // held by requests in flight
								continue
							}
							if err != nil {
								t.Error(err)
								return
							}
							if !res.Clamped || res.OutputCap < 1 {
								t.Errorf("reservation %+v not clamped", res)
							}
							admitted.Add(1)
							pe := m.promptErr(r)
							positive.Add(max(pe, 0))
							if r.IntN(4) == 0 {
								runtime.Gosched() // let others admit while this one is in flight
							}
							res.Settle(estimate+pe, m.completion(r, res.OutputCap*int64(n)))
						}
					})
				}
				wg.Wait()
				tok, _ := usage(t, e, "shared")
				lim := int64(limit)
				if m.minuteToo {
					lim = limit / 2
				}
				bound := lim + positive.Load()
				for _, w := range []Window{Minute, Day} {
					if l.Tokens[w] > 0 && tok[w] > l.Tokens[w]+positive.Load() {
						t.Fatalf("round %d: %v used %d > limit %d + %d positive prompt errors",
							round, w, tok[w], l.Tokens[w], positive.Load())
					}
				}
				// Every worker ran until the budget was used up, so it is.
				if tok[Day] > bound || tok[Day] < lim-estimate-3 {
					t.Fatalf("round %d: used %d, want in [%d, %d]", round, tok[Day], lim-estimate-3, bound)
				}
				if e.Reservations() != 0 || e.InFlight("shared") != 0 {
					t.Fatalf("leaked: %d reservations, %d in flight", e.Reservations(), e.InFlight("shared"))
				}
				if admitted.Load() < 1 {
					t.Fatalf("only %d admitted", admitted.Load())
				}
			}
		})
	}
}

// Many users on many goroutines: each user's own accounting stays exact.
func TestConcurrentManyUsers(t *testing.T) {
	e, clk := newTestEngine(t0)
	const users, perUser = 500, 20
	var l Limits
	l.Tokens[Hour] = 1 << 40
	l.Requests[Minute] = perUser
	l.MaxParallel = 4
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range users * perUser / 8 {
				u := fmt.Sprintf("user-%d", (g*users*perUser/8+i)%users)
				r, err := e.Admit(Request{User: u, Limits: l, Prompt: 10, Output: 5})
				if err != nil {
					var d *Denial
					if errors.As(err, &d) && d.Kind == Parallel {
						continue
					}
					t.Error(err)
					return
				}
				r.Settle(10, 5)
				if i%1000 == 0 {
					clk.Add(0) // exercise the clock lock alongside
					e.Dirty()
				}
			}
		})
	}
	wg.Wait()
	var total int64
	for i := range users {
		tok, req := usage(t, e, fmt.Sprintf("user-%d", i))
		if tok[Hour] != 15*req[Hour] {
			t.Fatalf("user-%d: %d tokens for %d requests", i, tok[Hour], req[Hour])
		}
		total += req[Hour]
	}
	if e.Reservations() != 0 {
		t.Fatalf("%d reservations leaked", e.Reservations())
	}
	if total == 0 {
		t.Fatal("nothing admitted")
	}
}

// TestConcurrentCheckpoints: streams report progress while a committer
// checkpoints them, as the gate's writer does: whatever interleaving, the
// windows end with exactly what the requests settled (the checkpoints'
// estimates above or below it corrected) and nothing stays reserved.
func TestConcurrentCheckpoints(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 1_000_000)
	var (
		mu      sync.Mutex
		tracked = map[*Progress]bool{}
		settled atomic.Int64
		wg      sync.WaitGroup
		stop    = make(chan struct{})
	)
	wg.Go(func() { // the committer
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			for p := range tracked {
				e.Checkpoint(p)
			}
			mu.Unlock()
			runtime.Gosched()
		}
	})
	var streams sync.WaitGroup
	for g := range 8 {
		streams.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 300 {
				res, err := e.Admit(Request{User: "u", Limits: l, Prompt: 20, Output: 100, Choices: 1})
				if err != nil {
					t.Error(err)
					return
				}
				p := res.Track()
				mu.Lock()
				tracked[p] = true
				mu.Unlock()
				var n int64 = 20
				for range r.IntN(10) {
					n += r.Int64N(30)
					p.Report(n)
					runtime.Gosched()
				}
				final := max(n+r.Int64N(41)-20, 0) // the real count differs from the estimate either way
				if r.IntN(10) == 0 {
					res.Cancel()
					final = 0
				} else {
					res.Settle(final, 0)
				}
				settled.Add(final)
				mu.Lock()
				delete(tracked, p)
				mu.Unlock()
			}
		})
	}
	streams.Wait()
	close(stop)
	wg.Wait()
	tok, _ := usage(t, e, "u")
	if tok[Day] != settled.Load() || tok[Hour] != settled.Load() || e.Reservations() != 0 || e.InFlight("u") != 0 {
		t.Fatalf("day %d, hour %d, want %d settled; %d reservations, %d in flight", tok[Day], tok[Hour], settled.Load(), e.Reservations(), e.InFlight("u"))
	}
	st, _ := e.Status("u", l)
	for _, s := range st {
		if s.Reserved != 0 {
			t.Fatalf("%+v: tokens still reserved", s)
		}
	}
}
