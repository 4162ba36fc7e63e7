package quota

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newTestEngine(at time.Time) (*Engine, *fakeClock) {
	clk := &fakeClock{t: at}
	return NewEngine(Options{Now: clk.Now}), clk
}

func tokens(w Window, n int64) Limits {
	var l Limits
	l.Tokens[w] = n
	return l
}

func mustAdmit(t *testing.T, e *Engine, req Request) *Reservation {
	t.Helper()
	r, err := e.Admit(req)
	if err != nil {
		t.Fatalf("Admit(%+v): %v", req, err)
	}
	return r
}

func mustDeny(t *testing.T, e *Engine, req Request) *Denial {
	t.Helper()
	r, err := e.Admit(req)
	var d *Denial
	if !errors.As(err, &d) {
		t.Fatalf("Admit(%+v) = %+v, %v; want a *Denial", req, r, err)
	}
	return d
}

func usage(t *testing.T, e *Engine, user string) (tok, req [NumWindows]int64) {
	t.Helper()
	tok, req, err := e.Usage(user)
	if err != nil {
		t.Fatal(err)
	}
	return tok, req
}

var t0 = utc(2024, 3, 13, 10, 0, 0).Add(250 * time.Millisecond) // a Wednesday

func TestBudgetDenial(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 1000)
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 200, Choices: 1})
	if r.Clamped || r.OutputCap != 200 || r.Reserved != 300 {
		t.Fatalf("reservation %+v; want cap 200 unclamped, 300 reserved", r)
	}
	r.Settle(100, 200)
	r = mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, DefaultOutput: 4096})
	if !r.Clamped || r.OutputCap != 300 { // half of the 600 that remain: one request does not hold them all
		t.Fatalf("reservation %+v; want clamped to 300", r)
	}
	r.Settle(100, 600)
	d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1})
	want := Denial{Kind: Budget, Window: Day, Limit: 1000, Used: 1000, Need: 2,
		RetryAfter: utc(2024, 3, 14, 0, 0, 0).Sub(t0)}
	if *d != want {
		t.Fatalf("denial %+v, want %+v", *d, want)
	}
	msg := d.Error()
	if !strings.HasPrefix(msg, "token budget exceeded: 1000 of 1000 tokens per day used; resets in 14h") {
		t.Errorf("message %q", msg)
	}
}

func TestClamping(t *testing.T) {
	var minuteAndDay Limits
	minuteAndDay.Tokens[Minute] = 500
	minuteAndDay.Tokens[Day] = 10000
	tests := []struct {
		name     string
		req      Request
		deny     bool
		cap      int64
		clamped  bool
		reserved int64
	}{
		{"no cap: default output", Request{Limits: tokens(Day, 10000), Prompt: 50, DefaultOutput: 4096}, false, 4096, true, 4146},
		// Where the budget binds, a request gets half of what remains after
		// its prompt, so that it cannot hold all of it while it runs.
		{"no cap: half of what remains", Request{Limits: tokens(Day, 1000), Prompt: 50, DefaultOutput: 4096}, false, 475, true, 525},
		{"client cap fits", Request{Limits: tokens(Day, 1000), Prompt: 50, Output: 100}, false, 100, false, 150},
		{"client cap exactly fits", Request{Limits: tokens(Day, 1000), Prompt: 50, Output: 950}, false, 950, false, 1000},
		{"client cap too large", Request{Limits: tokens(Day, 1000), Prompt: 50, Output: 2000}, false, 475, true, 525},
		{"n=3 shares half of what remains", Request{Limits: tokens(Day, 1000), Prompt: 100, Choices: 3, DefaultOutput: 4096}, false, 150, true, 550},
		{"n=3 rounds down", Request{Limits: tokens(Day, 1000), Prompt: 100, Choices: 3, Output: 500}, false, 150, true, 550},
		{"n=3 client cap fits", Request{Limits: tokens(Day, 1000), Prompt: 100, Choices: 3, Output: 200}, false, 200, false, 700},
		{"one token per choice does not fit", Request{Limits: tokens(Day, 1000), Prompt: 998, Choices: 3}, true, 0, false, 0},
		{"prompt plus one token fits", Request{Limits: tokens(Day, 1000), Prompt: 999}, false, 1, true, 1000},
		{"prompt fills the budget", Request{Limits: tokens(Day, 1000), Prompt: 1000}, true, 0, false, 0},
		{"smallest window decides", Request{Limits: minuteAndDay, Prompt: 50}, false, 225, true, 275},
		{"no token limit: not clamped", Request{Prompt: 50, DefaultOutput: 100}, false, 100, false, 150},
		{"no token limit: huge cap bounded", Request{Prompt: 50, Output: 1 << 60, Choices: 2}, false, maxOutput, false, 50 + 2*maxOutput},
		{"client cap beyond any model is clamped", Request{Limits: tokens(Day, 1<<50), Prompt: 50, Output: 1 << 40}, false, maxOutput, true, 50 + maxOutput},
		{"default of the package", Request{Limits: tokens(Day, 1<<20), Prompt: 50}, false, DefaultReserveOutput, true, 50 + DefaultReserveOutput},
		{"more choices than counted fit no token limit", Request{Limits: tokens(Day, 1<<50), Prompt: 1, Output: 10, Choices: maxChoices + 1}, true, 0, false, 0},
		{"more choices than counted, no token limit", Request{Prompt: 1, Output: 10, Choices: 3 * maxChoices}, false, 10, false, 1 + 10*maxChoices},
		{"choices below 1 count as 1", Request{Limits: tokens(Day, 1000), Prompt: 10, Output: 5, Choices: -2}, false, 5, false, 15},
		{"negative prompt counts as 0", Request{Limits: tokens(Day, 1000), Prompt: -10, Output: 5}, false, 5, false, 5},
		{"prompt only", Request{Limits: tokens(Day, 1000), Prompt: 500, PromptOnly: true}, false, 0, false, 500},
		{"prompt only fills exactly", Request{Limits: tokens(Day, 1000), Prompt: 1000, PromptOnly: true}, false, 0, false, 1000},
		{"prompt only too large", Request{Limits: tokens(Day, 1000), Prompt: 1001, PromptOnly: true}, true, 0, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newTestEngine(t0)
			tt.req.User = "u"
			r, err := e.Admit(tt.req)
			if tt.deny {
				var d *Denial
				if !errors.As(err, &d) {
					t.Fatalf("got %+v, %v; want a denial", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.OutputCap != tt.cap || r.Clamped != tt.clamped || r.Reserved != tt.reserved {
				t.Fatalf("got cap %d clamped %v reserved %d; want %d %v %d",
					r.OutputCap, r.Clamped, r.Reserved, tt.cap, tt.clamped, tt.reserved)
			}
			st, err := e.Status("u", tt.req.Limits)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range st {
				if s.Kind == "tokens" && s.Reserved != tt.reserved {
					t.Errorf("%v reserved %d, want %d", s.Window, s.Reserved, tt.reserved)
				}
			}
		})
	}
}

// Reservations already held and usage already made reduce what a new request
// may generate.
func TestClampCountsUsedAndReserved(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Week, 2000)
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 400}) // holds 500
	a.Settle(80, 300)                                                             // uses 380
	b := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 500}) // holds 600
	c := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 20, Choices: 2})
	// 2000 − 380 − 600 = 1020 remain; (1020 − 20) / 2 = 500 per choice,
	// of which half: 250.
	if !c.Clamped || c.OutputCap != 250 || c.Reserved != 520 {
		t.Fatalf("got %+v", c)
	}
	st, _ := e.Status("u", l)
	if len(st) != 1 || st[0].Used != 380 || st[0].Reserved != 1120 || st[0].Remaining != 500 {
		t.Fatalf("status %+v", st)
	}
	b.Cancel()
	c.Cancel()
	st, _ = e.Status("u", l)
	if st[0].Reserved != 0 || st[0].Remaining != 1620 {
		t.Fatalf("after cancel: %+v", st)
	}
}

func TestTokenRateSliding(t *testing.T) {
	e, clk := newTestEngine(t0)
	l := tokens(Minute, 1000)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 300}).Settle(100, 300) // t0
	clk.Add(10 * time.Second)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 300}).Settle(100, 300) // t0+10s
	clk.Add(10 * time.Second)
	req := Request{User: "u", Limits: l, Prompt: 300, Output: 10}
	d := mustDeny(t, e, req)
	// 800 used; the first bucket (400) must age out; it does at second(t0)+60.
	want := Denial{Kind: TokenRate, Window: Minute, Limit: 1000, Used: 800, Need: 301,
		RetryAfter: 39*time.Second + 750*time.Millisecond}
	if *d != want {
		t.Fatalf("denial %+v, want %+v", *d, want)
	}
	if msg := d.Error(); msg != "token rate limit exceeded: 800 of 1000 tokens per minute used, and this request needs at least 301 (prompt plus one per choice); retry in 40s" {
		t.Errorf("message %q", msg)
	}
	clk.Add(39 * time.Second) // still inside the bucket's last second
	if d := mustDeny(t, e, req); d.RetryAfter != time.Second {
		t.Fatalf("a second before: %+v", d)
	}
	clk.Add(750 * time.Millisecond)
	mustAdmit(t, e, req).Cancel()
	tok, _ := usage(t, e, "u")
	if tok[Minute] != 400 || tok[Day] != 800 {
		t.Fatalf("minute %d, day %d; want 400, 800", tok[Minute], tok[Day])
	}
	clk.Add(10 * time.Second)
	if tok, _ := usage(t, e, "u"); tok[Minute] != 0 {
		t.Fatalf("minute %d after everything aged out", tok[Minute])
	}
}

// When ageing out cannot free enough because reservations hold the rest, the
// retry is when everything has aged out.
func TestTokenRateAgeOutWithReservations(t *testing.T) {
	e, clk := newTestEngine(t0)
	l := tokens(Minute, 1000)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 500}).Settle(100, 500) // 600 at t0
	clk.Add(5 * time.Second)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 50, Output: 50}).Settle(50, 50) // 100 at t0+5
	held := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 100})      // holds 200

	// Needs 401: the first bucket ageing out is enough.
	d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 400})
	if d.Kind != TokenRate || d.Window != Minute || d.RetryAfter != 55*time.Second-250*time.Millisecond {
		t.Fatalf("denial %+v", d)
	}
	// Needs 850: even with all usage aged out the reservation is in the way;
	// the retry is when everything has aged out.
	d = mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 849})
	if d.Kind != TokenRate || d.RetryAfter != 60*time.Second-250*time.Millisecond {
		t.Fatalf("denial %+v", d)
	}
	// Needs 201: usage alone leaves room, the reservation holds it.
	d = mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 200})
	if d.Kind != TokenRate || d.RetryAfter != time.Second || d.Reserved != 200 {
		t.Fatalf("denial %+v", d)
	}
	held.Cancel()
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 200})
}

func TestRequestRate(t *testing.T) {
	tests := []struct {
		name  string
		w     Window
		retry time.Duration
		when  string
	}{
		{"minute", Minute, 58*time.Second - 250*time.Millisecond, "retry in 58s"},
		{"hour", Hour, time.Hour - 2250*time.Millisecond, "resets in 59m58s"},
		{"day", Day, 14*time.Hour - 2250*time.Millisecond, "resets in 13h59m58s"},
		{"total", Total, 0, "the limit does not reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clk := newTestEngine(t0)
			var l Limits
			l.Requests[tt.w] = 3
			req := Request{User: "u", Limits: l, Prompt: 10}
			mustAdmit(t, e, req).Cancel() // cancel does not refund the request
			clk.Add(time.Second)
			mustAdmit(t, e, req).Settle(10, 10)
			clk.Add(time.Second)
			mustAdmit(t, e, req).Cancel()
			d := mustDeny(t, e, req)
			want := Denial{Kind: RequestRate, Window: tt.w, Limit: 3, Used: 3, Need: 1, RetryAfter: tt.retry}
			if *d != want {
				t.Fatalf("denial %+v, want %+v", *d, want)
			}
			wantMsg := "request rate limit exceeded: 3 of 3 requests per " + tt.name + " made; " + tt.when
			if tt.w == Total {
				wantMsg = "request rate limit exceeded: 3 of 3 requests in total made; " + tt.when
			}
			if d.Error() != wantMsg {
				t.Errorf("message %q, want %q", d.Error(), wantMsg)
			}
			if _, req := usage(t, e, "u"); req[tt.w] != 3 {
				t.Errorf("requests %d after a denial, want 3", req[tt.w])
			}
			if tt.w == Minute {
				clk.Add(tt.retry)
				mustAdmit(t, e, req)
			}
		})
	}
}

func TestParallel(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := Limits{MaxParallel: 2}
	req := Request{User: "u", Limits: l, Prompt: 10}
	a := mustAdmit(t, e, req)
	b := mustAdmit(t, e, req)
	if n := e.InFlight("u"); n != 2 {
		t.Fatalf("in flight %d", n)
	}
	d := mustDeny(t, e, req)
	if d.Kind != Parallel || d.Limit != 2 || d.Used != 2 || d.RetryAfter != time.Second {
		t.Fatalf("denial %+v", d)
	}
	if !strings.HasPrefix(d.Error(), "too many parallel requests: 2 of 2") {
		t.Errorf("message %q", d.Error())
	}
	a.Settle(10, 5)
	c := mustAdmit(t, e, req)
	b.Cancel()
	c.Cancel()
	if n := e.InFlight("u"); n != 0 {
		t.Fatalf("in flight %d after all ended", n)
	}
	if n := e.InFlight("nobody"); n != 0 {
		t.Fatalf("unknown user in flight %d", n)
	}
}

// A budget with room left that requests in flight hold is a transient
// condition, not an exhausted budget.
func TestHeldByReservations(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 1000)
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 800})
	d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 100})
	want := Denial{Kind: TokenRate, Window: Day, Limit: 1000, Used: 0, Reserved: 900, Need: 101, RetryAfter: time.Second}
	if *d != want {
		t.Fatalf("denial %+v, want %+v", *d, want)
	}
	if msg := d.Error(); msg != "token limit reached by requests in flight: 0 of 1000 tokens per day used and 900 reserved; retry in 1s" {
		t.Errorf("message %q", msg)
	}
	a.Cancel()
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100})
}

func TestTooLarge(t *testing.T) {
	e, _ := newTestEngine(t0)
	var l Limits
	l.Tokens[Minute] = 100
	l.Tokens[Month] = 1000
	d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 150})
	if d.Kind != TokenRate || d.Window != Minute || d.RetryAfter != 0 || !d.TooLarge() {
		t.Fatalf("denial %+v", d)
	}
	if msg := d.Error(); msg != "request too large: it needs at least 151 tokens (prompt plus one per choice) but the limit is 100 tokens per minute" {
		t.Errorf("message %q", msg)
	}
}

func TestDenialNamesLongestBlock(t *testing.T) {
	e, _ := newTestEngine(t0)
	var l Limits
	l.Tokens[Day] = 1000
	l.Requests[Minute] = 2
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1}) // stays in flight
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 500, Output: 498}).Settle(500, 500)
	l.MaxParallel = 1
	d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 10})
	if d.Kind != Budget || d.Window != Day {
		t.Fatalf("day budget, request rate and parallel all block; got %+v", d)
	}

	// Total, which never resets, outlasts everything.
	l.Tokens[Total] = 500
	d = mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 10})
	if d.Kind != Budget || d.Window != Total || d.RetryAfter != 0 {
		t.Fatalf("got %+v", d)
	}
	if msg := d.Error(); msg != "token budget exceeded: 1000 of 500 tokens in total used; the limit does not reset" {
		t.Errorf("message %q", msg)
	}

	// Of two budget windows, the one that resets later.
	e2, _ := newTestEngine(t0)
	var l2 Limits
	l2.Tokens[Hour] = 100
	l2.Tokens[Month] = 100
	mustAdmit(t, e2, Request{User: "u", Limits: l2, Prompt: 50, Output: 50}).Settle(50, 50)
	if d := mustDeny(t, e2, Request{User: "u", Limits: l2, Prompt: 1}); d.Window != Month {
		t.Fatalf("got %+v", d)
	}
}

func TestDenialConsumesNothing(t *testing.T) {
	e, _ := newTestEngine(t0)
	var l Limits
	l.Tokens[Day] = 100
	l.Requests[Day] = 10
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 50, Output: 40})
	tokBefore, reqBefore := usage(t, e, "u")
	for range 5 {
		mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 20})
	}
	tok, req := usage(t, e, "u")
	if tok != tokBefore || req != reqBefore || e.InFlight("u") != 1 || e.Reservations() != 1 {
		t.Fatalf("denials changed state: %v %v in flight %d reservations %d", tok, req, e.InFlight("u"), e.Reservations())
	}
	r.Cancel()
}

func TestSettleCancelIdempotent(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 10000)
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 100})
	if e.Reservations() != 1 {
		t.Fatalf("reservations %d", e.Reservations())
	}
	r.Settle(90, 50)
	r.Settle(90, 50)
	r.Cancel()
	tok, req := usage(t, e, "u")
	if tok[Day] != 140 || req[Day] != 1 || e.Reservations() != 0 || e.InFlight("u") != 0 {
		t.Fatalf("tokens %d requests %d reservations %d in flight %d", tok[Day], req[Day], e.Reservations(), e.InFlight("u"))
	}
	st, _ := e.Status("u", l)
	if st[0].Reserved != 0 || st[0].Remaining != 10000-140 {
		t.Fatalf("status %+v", st[0])
	}

	r = mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 100})
	r.Cancel()
	r.Settle(1000, 1000)
	if tok, _ := usage(t, e, "u"); tok[Day] != 140 {
		t.Fatalf("settle after cancel charged: %d", tok[Day])
	}

	// Racing ends charge exactly once.
	r = mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 100})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if i%2 == 0 {
				r.Cancel()
			} else {
				r.Settle(10, 0)
			}
		})
	}
	wg.Wait()
	if tok, _ := usage(t, e, "u"); tok[Day] != 140 && tok[Day] != 150 {
		t.Fatalf("racing ends charged %d", tok[Day]-140)
	}
	if e.Reservations() != 0 || e.InFlight("u") != 0 {
		t.Fatalf("reservations %d in flight %d", e.Reservations(), e.InFlight("u"))
	}

	var nilRes *Reservation
	nilRes.Settle(1, 1)
	(&Reservation{}).Cancel()

	// Negative counts are taken as zero.
	r = mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1})
	r.Settle(-5, -5)
	if tok, _ := usage(t, e, "u"); tok[Day] > 150 {
		t.Fatalf("negative settle changed usage to %d", tok[Day])
	}
}

func TestRollover(t *testing.T) {
	// Tuesday 31 December 2024, 23:59:30: day, month and year roll together,
	// the week (Monday 30 December) does not.
	e, clk := newTestEngine(utc(2024, 12, 31, 23, 59, 30))
	var l Limits
	l.Tokens[Day] = 1000
	l.Tokens[Month] = 5000
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 500, Output: 500}).Settle(500, 500)
	d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 10})
	if d.Window != Day || d.RetryAfter != 30*time.Second {
		t.Fatalf("denial %+v", d)
	}
	clk.Add(30 * time.Second)
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 10})
	tok, req := usage(t, e, "u")
	want := [NumWindows]int64{Minute: 1000, Hour: 0, Day: 0, Week: 1000, Month: 0, Total: 1000}
	if tok != want {
		t.Fatalf("tokens after new year %v, want %v", tok, want)
	}
	if req[Day] != 1 || req[Week] != 2 || req[Total] != 2 {
		t.Fatalf("requests %v", req)
	}
	// A reservation made in one period holds in the next and is charged to
	// the period current when it settles.
	clk.Set(utc(2025, 1, 6, 0, 0, 5)) // next Monday
	r.Settle(10, 90)
	tok, _ = usage(t, e, "u")
	want = [NumWindows]int64{Minute: 100, Hour: 100, Day: 100, Week: 100, Month: 100, Total: 1100}
	if tok != want {
		t.Fatalf("tokens after settling across periods %v, want %v", tok, want)
	}
}

func TestReservationSpansRollover(t *testing.T) {
	e, clk := newTestEngine(utc(2024, 2, 29, 23, 59, 59)) // leap day
	l := tokens(Day, 1000)
	held := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 800})
	clk.Add(2 * time.Second)
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 50})
	if r.OutputCap != 25 { // half of 1000 − 0 used − 900 held − 50 prompt
		t.Fatalf("cap %d, want 25", r.OutputCap)
	}
	held.Cancel()
	r.Cancel()
}

func TestClockBackwardsKeepsPeriod(t *testing.T) {
	e, clk := newTestEngine(utc(2024, 3, 13, 0, 0, 30))
	mustAdmit(t, e, Request{User: "u", Prompt: 10, Output: 10}).Settle(10, 10)
	clk.Add(-time.Hour) // into yesterday
	tok, _ := usage(t, e, "u")
	// The minute window, more than a minute ahead, starts over rather
	// than hold the user to it for an hour.
	if tok[Day] != 20 || tok[Hour] != 20 || tok[Minute] != 0 {
		t.Fatalf("usage lost when the clock went back: %v", tok)
	}
	mustAdmit(t, e, Request{User: "u", Prompt: 10, Output: 10}).Settle(10, 10)
	clk.Add(time.Hour)
	if tok, _ := usage(t, e, "u"); tok[Day] != 40 || tok[Minute] != 0 {
		t.Fatalf("usage %v", tok)
	}
	l := tokens(Day, 30)
	if d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 1}); d.RetryAfter != 24*time.Hour-30*time.Second {
		t.Fatalf("denial %+v", d)
	}
	// Back into yesterday again: the reset the status shows (the
	// x-ratelimit-reset headers, resets_at) is the kept period's, the one
	// Retry-After waits for, not the end of the clock's yesterday.
	clk.Add(-time.Hour)
	d := mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 1})
	st, err := e.Status("u", l)
	if err != nil || len(st) != 1 {
		t.Fatal(st, err)
	}
	if want := utc(2024, 3, 14, 0, 0, 0); !st[0].ResetsAt.Equal(want) || !clk.Now().Add(d.RetryAfter).Equal(want) {
		t.Fatalf("resets at %v, retry after %v from %v; want both at %v", st[0].ResetsAt, d.RetryAfter, clk.Now(), want)
	}
}

// TestClockSetRightAfterAJump: a clock that jumped a year ahead and was set
// right does not hold the user to the future's usage for a year. What was
// used meanwhile counts in the current periods; the minute starts over.
func TestClockSetRightAfterAJump(t *testing.T) {
	e, clk := newTestEngine(utc(2026, 3, 13, 12, 0, 0))
	var l Limits
	l.Tokens[Minute] = 100
	l.Tokens[Day] = 1000
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 10, Output: 10}).Settle(10, 10)
	clk.Add(365 * 24 * time.Hour)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 40, Output: 40}).Settle(40, 40)
	clk.Add(-365*24*time.Hour + 30*time.Second)
	tok, req := usage(t, e, "u")
	if tok[Minute] != 0 || tok[Hour] != 80 || tok[Day] != 80 || tok[Month] != 80 || tok[Total] != 100 || req[Day] != 1 {
		t.Fatalf("tokens %v requests %v; want the future's 80 tokens in today's periods, the minute afresh", tok, req)
	}
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 10, Output: 50})
	if r.OutputCap != 50 {
		t.Fatalf("cap %d; want the minute's whole room", r.OutputCap)
	}
	r.Cancel()
	st, err := e.Status("u", l)
	if err != nil {
		t.Fatal(err)
	}
	if day := st[1]; day.Window != Day || !day.ResetsAt.Equal(utc(2026, 3, 14, 0, 0, 0)) {
		t.Fatalf("day %+v; want it to reset at the end of today", day)
	}
}

func TestStatusAndTightest(t *testing.T) {
	e, clk := newTestEngine(t0)
	var l Limits
	l.Tokens[Minute] = 10000
	l.Tokens[Day] = 50000
	l.Tokens[Total] = 1000000
	l.Requests[Minute] = 10
	l.Requests[Month] = 1000
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1000, Output: 1000}).Settle(1000, 1000)
	clk.Add(5 * time.Second)
	held := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 500, Output: 500, WantRate: true})
	st, err := e.Status("u", l)
	if err != nil {
		t.Fatal(err)
	}
	want := []WindowStatus{
		// The 1,000 tokens held are counted when the request settles, now
		// at the earliest: the minute is clear a minute after that.
		{Window: Minute, Kind: "tokens", Limit: 10000, Used: 2000, Reserved: 1000, Remaining: 7000, ResetsAt: utc(2024, 3, 13, 10, 1, 5)},
		{Window: Minute, Kind: "requests", Limit: 10, Used: 2, Remaining: 8, ResetsAt: utc(2024, 3, 13, 10, 1, 5)},
		{Window: Day, Kind: "tokens", Limit: 50000, Used: 2000, Reserved: 1000, Remaining: 47000, ResetsAt: utc(2024, 3, 14, 0, 0, 0)},
		{Window: Month, Kind: "requests", Limit: 1000, Used: 2, Remaining: 998, ResetsAt: utc(2024, 4, 1, 0, 0, 0)},
		{Window: Total, Kind: "tokens", Limit: 1000000, Used: 2000, Reserved: 1000, Remaining: 997000},
	}
	if len(st) != len(want) {
		t.Fatalf("status %+v", st)
	}
	for i := range want {
		if st[i] != want[i] {
			t.Errorf("status[%d] = %+v\nwant %+v", i, st[i], want[i])
		}
	}
	rs := e.Tightest("u", l)
	if !rs.HasTokens || rs.Tokens != want[0] || !rs.HasRequests || rs.Requests != want[1] {
		t.Fatalf("tightest %+v", rs)
	}
	// Admission read the same windows, under its own lock.
	if held.Rate != rs {
		t.Fatalf("rate at admission %+v, Tightest after %+v", held.Rate, rs)
	}
	held.Cancel()
	if r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1}); r.Rate != (RateStatus{}) {
		t.Fatalf("rate filled in without WantRate: %+v", r.Rate)
	} else {
		r.Cancel()
	}

	// Ties go to the longer window; no limit of a kind gives none.
	var tie Limits
	tie.Tokens[Minute] = 5000
	tie.Tokens[Week] = 5000
	rs = e.Tightest("u", tie)
	if !rs.HasTokens || rs.Tokens.Window != Week || rs.HasRequests {
		t.Fatalf("tightest %+v", rs)
	}
	// With nothing counted in the minute, it "resets" now; with tokens held
	// by a request in flight, a minute from now.
	clk.Add(time.Minute)
	st, _ = e.Status("u", tie)
	if !st[0].ResetsAt.Equal(clk.Now()) || st[0].Used != 0 {
		t.Fatalf("empty minute %+v", st[0])
	}
	var minute Limits
	minute.Tokens[Minute] = 5000
	inFlight := mustAdmit(t, e, Request{User: "u", Limits: minute, Prompt: 10, Output: 90, WantRate: true})
	if w := inFlight.Rate.Tokens; w.Window != Minute || w.Used != 0 || w.Reserved != 100 || !w.ResetsAt.Equal(clk.Now().Truncate(time.Second).Add(time.Minute)) {
		t.Fatalf("minute with tokens held only, at admission: %+v", w)
	}
	inFlight.Cancel()
	if st, _ := e.Status("u", Limits{}); len(st) != 0 {
		t.Fatalf("no limits, status %+v", st)
	}
	// An unknown user has zero usage and is not kept in memory.
	st, err = e.Status("stranger", l)
	if err != nil || len(st) != 5 || st[0].Used != 0 || st[0].Remaining != 10000 {
		t.Fatalf("stranger %+v %v", st, err)
	}
	if len(e.Dirty()) != 1 {
		t.Fatal("expected only u to be dirty")
	}
}

func TestReset(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 1000)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 500, Output: 500}).Settle(500, 500)
	held := mustAdmit(t, e, Request{User: "v", Limits: l, Prompt: 100, Output: 100})
	e.Dirty()
	if err := e.Reset("u"); err != nil {
		t.Fatal(err)
	}
	tok, req := usage(t, e, "u")
	if tok != [NumWindows]int64{} || req != [NumWindows]int64{} {
		t.Fatalf("after reset %v %v", tok, req)
	}
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 500, Output: 500}).Cancel()
	if err := e.Reset("v"); err != nil {
		t.Fatal(err)
	}
	st, _ := e.Status("v", l)
	if st[0].Reserved != 200 || st[0].Used != 0 || e.InFlight("v") != 1 {
		t.Fatalf("reset must keep reservations: %+v", st[0])
	}
	held.Settle(100, 100)
	if d := e.Dirty(); len(d) != 2 {
		t.Fatalf("dirty after reset: %d users", len(d))
	}
}

func TestKindAndDuration(t *testing.T) {
	for k, want := range map[Kind]string{Budget: "budget", TokenRate: "token_rate", RequestRate: "request_rate", Parallel: "parallel", 9: "kind(9)"} {
		if k.String() != want {
			t.Errorf("Kind(%d) = %q, want %q", k, k.String(), want)
		}
	}
	for d, want := range map[time.Duration]string{
		0:                                "1s",
		time.Millisecond:                 "1s",
		45 * time.Second:                 "45s",
		45*time.Second + time.Nanosecond: "46s",
		time.Hour:                        "1h",
		3*time.Hour + 2*time.Minute:      "3h2m",
		26*time.Hour + 5*time.Second:     "26h5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// Times at or before 1970 clamp the minute clock at 0 instead of indexing
// buckets with negative seconds.
func TestEpochClock(t *testing.T) {
	e, clk := newTestEngine(time.Unix(-100, 0))
	l := tokens(Minute, 100)
	for range 5 {
		mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1}).Settle(1, 1)
		clk.Add(40 * time.Second)
	}
	// Seconds −100, −60, −20 count at 0, then 20 and 60; at 100 only 60 is live.
	if tok, _ := usage(t, e, "u"); tok[Minute] != 2 || tok[Total] != 10 {
		t.Fatalf("minute %d", tok[Minute])
	}
}

// AdmitTo fills the caller's Reservation as Admit returns one, and leaves it
// as it was on a refusal.
func TestAdmitTo(t *testing.T) {
	e, _ := newTestEngine(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	req := Request{User: "u", Limits: tokens(Day, 100), Prompt: 10, Output: 20}
	var r Reservation
	if err := e.AdmitTo(&r, req); err != nil {
		t.Fatal(err)
	}
	if r.Reserved != 30 || r.OutputCap != 20 || e.InFlight("u") != 1 || e.Reservations() != 1 {
		t.Fatalf("reserved %d, cap %d, in flight %d, reservations %d", r.Reserved, r.OutputCap, e.InFlight("u"), e.Reservations())
	}
	// 70 left, so 80 is refused and the Reservation it was to fill stays.
	big := req
	big.Prompt = 80
	other := Reservation{Reserved: -7}
	var d *Denial
	if err := e.AdmitTo(&other, big); !errors.As(err, &d) || other.Reserved != -7 || other.u != nil {
		t.Fatalf("AdmitTo over the budget: %v, reservation %+v", err, other)
	}
	r.Settle(10, 5)
	if e.InFlight("u") != 0 || e.Reservations() != 0 {
		t.Fatalf("after Settle: in flight %d, reservations %d", e.InFlight("u"), e.Reservations())
	}
	if tok, _, err := e.Usage("u"); err != nil || tok[Day] != 15 {
		t.Fatalf("charged %d, want 15", tok[Day])
	}
}

// TestForgetDuringLoad: a user deleted while its state is being read from
// the store is not brought back by that read (taken before the deletion,
// it would hold the deleted user's usage for the next user of that id).
func TestForgetDuringLoad(t *testing.T) {
	src, _ := newTestEngine(t0)
	mustAdmit(t, src, Request{User: "u", Prompt: 10, Output: 10}).Settle(300, 200)
	before := src.Dirty()["u"] // the deleted user's counters, as the store held them
	var stored atomic.Pointer[[]byte]
	stored.Store(&before)
	inLoad, release := make(chan struct{}), make(chan struct{})
	var loads atomic.Int32
	clk := &fakeClock{t: t0}
	e := NewEngine(Options{Now: clk.Now, Load: func(string) ([]byte, error) {
		b := *stored.Load()
		if loads.Add(1) == 1 {
			inLoad <- struct{}{}
			<-release
		}
		return b, nil
	}})
	admitted := make(chan error)
	go func() {
		r, err := e.Admit(Request{User: "u", Prompt: 1, Output: 1})
		if err == nil {
			r.Cancel()
		}
		admitted <- err
	}()
	<-inLoad
	stored.Store(new([]byte)) // the store deletes the user…
	e.Forget("u")             // …and the engine forgets it
	close(release)
	if err := <-admitted; err != nil {
		t.Fatal(err)
	}
	if tok, _ := usage(t, e, "u"); tok[Total] != 0 {
		t.Fatalf("the deleted user's %d tokens came back (%d loads)", tok[Total], loads.Load())
	}
}

// TestSlotFreedBeforeSettle: a place in max_parallel given back before the
// request settles lets the next request in, and settling then does not give
// it back twice.
func TestSlotFreedBeforeSettle(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := Limits{MaxParallel: 1}
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1})
	mustDeny(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1})
	r.Slot().Free()
	r.SlotFreed()
	next := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1})
	r.Settle(1, 1)
	if n := e.InFlight("u"); n != 1 {
		t.Fatalf("%d in flight with the next request running, want 1", n)
	}
	next.Cancel()
	if n := e.InFlight("u"); n != 0 {
		t.Fatalf("%d in flight after both ended, want 0", n)
	}
	Slot{}.Free() // a request without a reservation: nothing to give back
}

// TestOneRequestDoesNotHoldTheBudget: while a request without a cap runs on
// a budget smaller than its default output, a small request still fits
// (SPEC §3: one request cannot pin the whole remaining budget).
func TestOneRequestDoesNotHoldTheBudget(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 2000)
	long := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 20, DefaultOutput: 4096})
	short := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 20, Output: 10})
	if short.Clamped || short.OutputCap != 10 {
		t.Fatalf("the short request %+v; want its own cap", short)
	}
	short.Settle(20, 10)
	long.Settle(20, 58)
}

// TestProgressCheckpoints: a tracked request's reported tokens are charged
// by Checkpoint and release as much of its reservation; Settle charges the
// rest, or gives back what the checkpoints overcounted; Cancel takes it all
// back; a checkpoint after the end changes nothing.
func TestProgressCheckpoints(t *testing.T) {
	l := tokens(Day, 10000)
	reserved := func(e *Engine) int64 {
		t.Helper()
		st, err := e.Status("u", l)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Window == Day && s.Kind == "tokens" {
				return s.Reserved
			}
		}
		t.Fatal("no day window")
		return 0
	}
	for _, c := range []struct {
		name    string
		end     func(r *Reservation)
		wantDay int64
	}{
		{"settled above the checkpoints", func(r *Reservation) { r.Settle(100, 450) }, 550},
		{"settled below the checkpoints", func(r *Reservation) { r.Settle(100, 200) }, 300},
		{"cancelled", func(r *Reservation) { r.Cancel() }, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, clk := newTestEngine(t0)
			r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 500, Choices: 1})
			p := r.Track()
			e.Checkpoint(p) // nothing reported yet
			if tok, _ := usage(t, e, "u"); tok[Day] != 0 || reserved(e) != 600 {
				t.Fatalf("before any report: %d used, %d reserved", tok[Day], reserved(e))
			}
			p.Report(100)
			e.Checkpoint(p)
			clk.Add(time.Second)
			p.Report(400)
			p.Report(250) // lower: ignored
			e.Checkpoint(p)
			if tok, _ := usage(t, e, "u"); tok[Day] != 400 || tok[Hour] != 400 || reserved(e) != 200 {
				t.Fatalf("after checkpoints of 400: %d used (hour %d), %d reserved", tok[Day], tok[Hour], reserved(e))
			}
			if len(e.Dirty()) != 1 {
				t.Fatal("a checkpoint left the counters clean: nothing would be committed")
			}
			c.end(r)
			p.Report(5000)
			e.Checkpoint(p)
			if tok, _ := usage(t, e, "u"); tok[Day] != c.wantDay || reserved(e) != 0 || e.Reservations() != 0 || e.InFlight("u") != 0 {
				t.Fatalf("after the end: %d used, want %d; %d reserved, %d reservations, %d in flight",
					tok[Day], c.wantDay, reserved(e), e.Reservations(), e.InFlight("u"))
			}
		})
	}
	// Checkpoints beyond the reservation charge all the tokens and release
	// no more than was reserved.
	e, _ := newTestEngine(t0)
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 10, Output: 20, Choices: 1})
	p := r.Track()
	p.Report(1000)
	e.Checkpoint(p)
	if tok, _ := usage(t, e, "u"); tok[Day] != 1000 || reserved(e) != 0 {
		t.Fatalf("%d used, %d reserved", tok[Day], reserved(e))
	}
	r.Settle(10, 990)
	if tok, _ := usage(t, e, "u"); tok[Day] != 1000 || reserved(e) != 0 {
		t.Fatalf("after settling: %d used, %d reserved", tok[Day], reserved(e))
	}
}

// TestPromptBound: a request whose prompt is only bounded is admitted when
// every token window keeps room for BoundSlack times its reservation and
// nothing else refuses it; otherwise AdmitTo changes nothing and asks for
// the count, so refusals and caps always come from the estimate.
func TestPromptBound(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 32*300)
	l.Tokens[Minute] = 32 * 1000
	bound := Request{User: "u", Limits: l, Prompt: 100, Output: 200, Choices: 1, PromptBound: true}
	r := mustAdmit(t, e, bound)
	if r.Reserved != 300 || r.OutputCap != 200 || r.Clamped {
		t.Fatalf("reservation from the bound: %+v", r)
	}
	// 9,300 of the day left: 300 more no longer fits 32 times.
	var other Reservation
	if err := e.AdmitTo(&other, bound); !errors.Is(err, ErrNeedCount) || other.u != nil {
		t.Fatalf("bound without room: %v, %+v", err, other)
	}
	if e.InFlight("u") != 1 || e.Reservations() != 1 {
		t.Fatalf("ErrNeedCount changed the state: in flight %d, reservations %d", e.InFlight("u"), e.Reservations())
	}
	if _, req := usage(t, e, "u"); req[Day] != 1 {
		t.Fatalf("requests counted %d, want 1", req[Day])
	}
	// The counted prompt is admitted as usual.
	counted := bound
	counted.PromptBound, counted.Prompt = false, 40
	mustAdmit(t, e, counted).Cancel()
	r.Settle(90, 10)

	// Several choices multiply the output, and an embeddings-like request
	// reserves only its prompt.
	many := bound
	many.User, many.Choices = "n", 2
	many.Limits = tokens(Day, 32*500-1)
	if err := e.AdmitTo(&other, many); !errors.Is(err, ErrNeedCount) {
		t.Fatalf("two choices: %v", err)
	}
	many.Limits = tokens(Day, 32*500)
	mustAdmit(t, e, many).Cancel()
	only := Request{User: "p", Limits: tokens(Day, 32*100), Prompt: 100, PromptOnly: true, PromptBound: true}
	if r := mustAdmit(t, e, only); r.Reserved != 100 {
		t.Fatalf("prompt only: reserved %d", r.Reserved)
	}

	// Without token windows the bound never matters, but any refusal asks
	// for the count.
	var rl Limits
	rl.Requests[Minute] = 1
	free := Request{User: "r", Limits: rl, Prompt: 1 << 30, Output: 1 << 20, PromptBound: true}
	mustAdmit(t, e, free).Settle(5, 5)
	if err := e.AdmitTo(&other, free); !errors.Is(err, ErrNeedCount) {
		t.Fatalf("request limit reached: %v", err)
	}
	free.PromptBound = false
	if d := mustDeny(t, e, free); d.Kind != RequestRate {
		t.Fatalf("counted: %+v", d)
	}
}

// TestCallersTime: a request admitted with its own Now, and settled with
// SettleAt, lands in the periods of those times, not the engine clock's.
func TestCallersTime(t *testing.T) {
	e, _ := newTestEngine(utc(2024, 12, 31, 23, 59, 30)) // the engine's clock stays in 2024
	l := tokens(Day, 1000)
	r := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 10, Output: 10, WantRate: true, Now: utc(2025, 1, 1, 0, 0, 5)})
	if !r.Rate.Tokens.ResetsAt.Equal(utc(2025, 1, 2, 0, 0, 0)) {
		t.Fatalf("the day the request was admitted in resets at %v, want 2025-01-02", r.Rate.Tokens.ResetsAt)
	}
	r.SettleAt(10, 5, utc(2025, 1, 6, 0, 0, 5)) // a Monday
	r2 := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1, Output: 1, WantRate: true, Now: utc(2025, 1, 6, 0, 0, 6)})
	defer r2.Cancel()
	if got := r2.Rate.Tokens.Remaining; got != 1000-15-2 {
		t.Fatalf("remaining on the day of the settlement %d, want %d", got, 1000-15-2)
	}
}

// TestUserRef: requests admitted through a UserRef count in the user's one
// state, which the engine's own lookups see; once Forget drops it, the
// next request through the ref starts the user afresh, as one without a
// ref does, and the ref follows the new state.
func TestUserRef(t *testing.T) {
	e, _ := newTestEngine(t0)
	var ref UserRef
	admit := func(ref *UserRef) {
		t.Helper()
		mustAdmit(t, e, Request{User: "a", Prompt: 10, Output: 10, Ref: ref}).Settle(10, 5)
	}
	admit(&ref)
	admit(nil)
	admit(&ref)
	if tok, req := usage(t, e, "a"); tok[Day] != 45 || req[Day] != 3 {
		t.Fatalf("day: %d tokens in %d requests, want 45 in 3", tok[Day], req[Day])
	}
	e.Forget("a")
	admit(&ref)
	if tok, req := usage(t, e, "a"); tok[Day] != 15 || req[Day] != 1 {
		t.Fatalf("after Forget: %d tokens in %d requests, want 15 in 1", tok[Day], req[Day])
	}
	admit(nil)
	admit(&ref)
	if tok, req := usage(t, e, "a"); tok[Day] != 45 || req[Day] != 3 {
		t.Fatalf("the ref after Forget: %d tokens in %d requests, want 45 in 3", tok[Day], req[Day])
	}
	sh := e.shardFor("a")
	if u := ref.u.Load(); u == nil || u != sh.users["a"] {
		t.Fatalf("the ref holds %p, the engine %p", u, sh.users["a"])
	}
}
