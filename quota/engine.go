package quota

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReserveOutput is the per-choice output reserved for a request that
// sets no cap when Request.DefaultOutput is not set either.
const DefaultReserveOutput = 4096

// Bounds on request sizes so that reservation arithmetic cannot overflow. No
// model generates 2^32 tokens per choice, and no body carries 2^40 tokens.
const (
	maxPrompt  = 1 << 40
	maxOutput  = 1 << 32
	maxChoices = 1 << 16
)

// Limits are the limits that apply to one user. 0 (or less) means no limit.
type Limits struct {
	Tokens      [NumWindows]int64 // tokens (prompt + completion) per window
	Requests    [NumWindows]int64 // requests per window
	MaxParallel int               // requests in flight at once
}

// IsZero reports whether no limit is set.
func (l Limits) IsZero() bool { return l == Limits{} }

// Request describes a request to admit.
type Request struct {
	User   string
	Limits Limits
	// Prompt is the estimated prompt size in tokens.
	Prompt int64
	// Output is the client's per-choice output cap (max_tokens), 0 = none.
	Output int64
	// Choices is the number of completions asked for (n); values < 1 count as 1.
	Choices int
	// DefaultOutput is the per-choice output reserved when Output is 0;
	// values < 1 mean DefaultReserveOutput.
	DefaultOutput int64
	// PromptOnly marks a request that generates nothing (embeddings): only
	// the prompt is reserved and the output is never clamped.
	PromptOnly bool
	// WantRate asks for Reservation.Rate: the windows as they stand after
	// admission, read under the same lock.
	WantRate bool
	// PromptBound marks Prompt as an upper bound of the prompt's estimate
	// (one the caller has without counting it): the request is admitted
	// only where the bound cannot matter, that is when nothing refuses it
	// and every token window keeps room for BoundSlack times its
	// reservation. Otherwise AdmitTo changes nothing and returns
	// ErrNeedCount: the caller counts the prompt and admits again, so that
	// a refusal (and its message) or a lowered output cap always comes
	// from the estimate.
	PromptBound bool
	// Now is when the request arrived, for a caller that has read the clock
	// already; zero reads the engine's.
	Now time.Time
	// Ref, if not nil, is where the caller keeps User's state between its
	// requests (see UserRef).
	Ref *UserRef
}

// UserRef remembers where the engine keeps one user's state, for a caller
// that admits that user's requests again and again (the gate keeps one
// per API key): AdmitTo with Request.Ref goes to the state directly rather
// than looking the user up among all of them, until Forget drops it. The
// zero value is ready to use; a UserRef must only ever serve one user.
type UserRef struct{ u atomic.Pointer[userState] }

// BoundSlack is how many times a reservation made from a prompt's bound
// every token window must still have room for (Request.PromptBound): what
// the bound holds beyond the estimate while the request runs is at most a
// 32nd of any window's remaining tokens.
const BoundSlack = 32

// ErrNeedCount is AdmitTo's answer to a request whose prompt is only
// bounded (Request.PromptBound) where the bound could change the outcome.
var ErrNeedCount = errors.New("quota: the prompt must be counted to admit this request")

// Reservation is an admitted request's hold on the user's budget. Exactly one
// of Settle or Cancel should be called when the request ends; further calls
// are no-ops.
type Reservation struct {
	// OutputCap is the per-choice output the reservation covers. When Clamped,
	// the caller must set it as the upstream request's max_tokens (or
	// max_completion_tokens), replacing the client's value.
	OutputCap int64
	// Clamped reports that the request could generate more than its
	// reservation unless its output is capped at OutputCap.
	Clamped bool
	// Reserved is the number of tokens held: prompt + OutputCap × choices.
	Reserved int64
	// Rate is the user's tightest windows right after admission, when the
	// request asked for it (Request.WantRate).
	Rate RateStatus

	e    *Engine
	sh   *shard
	u    *userState
	done bool // guarded by sh.mu
	// slotFreed: the request's place in max_parallel was given back early
	// (see Slot); release leaves the in-flight count alone.
	slotFreed bool
	prog      *Progress // see Track; nil if untracked
}

// Progress is the running count of the tokens a request has produced, for
// a response that streams long enough to matter: the request reports it as
// the stream goes (Report), and whoever commits usage charges it to the
// windows (Engine.Checkpoint) before the request ends, so that the
// persisted counters hold a stream's tokens within a commit of their
// generation, and a crash does not lose them. Settle then charges only the
// difference between the final count and what was checkpointed.
type Progress struct {
	tokens atomic.Int64
	sh     *shard
	u      *userState
	// Guarded by sh.mu.
	charged    int64 // tokens charged by Checkpoint
	unreserved int64 // the part of the reservation they replaced
	reserved   int64
	done       bool
	// What the checkpoints charged that is still counted, for a settle
	// below them to take back no more: per window, the tokens charged in
	// its current period (starts) since the user's last reset (resets),
	// and the recent charges to the minute window.
	starts   [NumWindows]int64
	inPeriod [NumWindows]int64
	resets   uint32
	recent   [4]minuteCharge
}

// minuteCharge is a checkpoint's charge to the minute window.
type minuteCharge struct{ sec, tokens int64 }

// note records a checkpoint's charge of delta tokens, made after u.roll.
func (p *Progress) note(u *userState, delta int64) {
	if p.resets != u.resets {
		p.inPeriod, p.recent, p.resets = [NumWindows]int64{}, [4]minuteCharge{}, u.resets
	}
	for w := Hour; w < NumWindows; w++ {
		if w < Total && p.starts[w] != u.start[w] {
			p.starts[w], p.inPeriod[w] = u.start[w], 0
		}
		p.inPeriod[w] = satAdd(p.inPeriod[w], delta)
	}
	r := &p.recent
	switch {
	case r[3].tokens > 0 && r[3].sec == u.msec:
		r[3].tokens = satAdd(r[3].tokens, delta)
		return
	case r[0].tokens > 0 && r[0].sec > u.msec-60:
		// Full of live charges: the two oldest merge, at the older
		// second, which leaves them counted rather than taken back.
		r[1] = minuteCharge{r[0].sec, satAdd(r[0].tokens, r[1].tokens)}
	}
	copy(r[:3], r[1:])
	r[3] = minuteCharge{u.msec, delta}
}

// giveBack takes back up to n tokens the checkpoints charged, where they
// are still counted: not from a period (or a reset) that came after them.
func (p *Progress) giveBack(u *userState, n int64) {
	for w := Hour; w < NumWindows; w++ {
		if p.resets == u.resets && (w == Total || p.starts[w] == u.start[w]) {
			u.tokens[w] = max(u.tokens[w]-min(n, p.inPeriod[w]), 0)
		}
	}
	if p.resets != u.resets {
		return // the reset emptied the minute window too
	}
	// From the seconds the checkpoints charged, newest first: the tokens
	// must leave the window when those seconds do, not a second time.
	for i := len(p.recent) - 1; i >= 0 && n > 0; i-- {
		if c := p.recent[i]; c.tokens > 0 {
			n -= u.takeMinute(c.sec, min(n, c.tokens))
		}
	}
}

// Track returns the request's Progress. Call it at most once, before the
// reservation is settled or cancelled.
func (r *Reservation) Track() *Progress {
	p := &Progress{sh: r.sh, u: r.u, reserved: r.Reserved}
	r.prog = p
	return p
}

// Report sets the tokens the request has produced so far, prompt included.
// A lower count than an earlier one is ignored.
func (p *Progress) Report(tokens int64) {
	if tokens > p.tokens.Load() {
		p.tokens.Store(tokens) // one reporter: the request itself
	}
}

// Checkpoint charges the tokens p's request reported beyond those already
// charged, to every window as Settle would, and releases as much of its
// reservation, which they use up. It returns all the tokens the checkpoints
// of the request have charged, or 0 once the request ended (it does
// nothing then).
func (e *Engine) Checkpoint(p *Progress) int64 {
	if p == nil || p.u == nil {
		return 0
	}
	t := p.tokens.Load()
	c := newClock(e.now())
	p.sh.mu.Lock()
	defer p.sh.mu.Unlock()
	if p.done {
		return 0
	}
	if t <= p.charged {
		return p.charged
	}
	delta := t - p.charged
	p.charged = t
	u := p.u
	u.roll(&c)
	for w := Hour; w < NumWindows; w++ {
		u.tokens[w] = satAdd(u.tokens[w], delta)
	}
	u.addMinute(delta, 0)
	p.note(u, delta)
	free := min(delta, p.reserved-p.unreserved)
	p.unreserved += free
	u.reserved -= free
	p.sh.markDirty(u)
	return t
}

// Slot is a request's place among the user's requests in flight, which
// max_parallel bounds, apart from its tokens. A handler frees it the moment
// the response's end is on its way to the client, before the request is
// settled: a client that sends its next request as soon as it has read the
// answer must not find this one still in flight. Then it calls SlotFreed on
// the reservation, before Settle or Cancel.
type Slot struct {
	sh *shard
	u  *userState
}

// Slot returns the request's place in flight.
func (r *Reservation) Slot() Slot { return Slot{r.sh, r.u} }

// Free gives the place back. Call it once, before the reservation is
// settled or cancelled.
func (s Slot) Free() {
	if s.u == nil {
		return
	}
	s.sh.mu.Lock()
	s.u.inFlight--
	s.sh.mu.Unlock()
}

// SlotFreed records that the request's Slot was freed.
func (r *Reservation) SlotFreed() { r.slotFreed = true }

// Settle ends the request: it releases the reservation and charges the actual
// tokens to every window's current period and to the minute bucket of now.
// Negative counts are taken as 0.
func (r *Reservation) Settle(prompt, completion int64) {
	r.release(true, satAdd(max(prompt, 0), max(completion, 0)), time.Time{})
}

// SettleAt is Settle for a caller that knows the time already (now).
func (r *Reservation) SettleAt(prompt, completion int64, now time.Time) {
	r.release(true, satAdd(max(prompt, 0), max(completion, 0)), now)
}

// Cancel ends the request without charging tokens. The request still counts
// against request windows: it was made.
func (r *Reservation) Cancel() { r.release(false, 0, time.Time{}) }

// release ends the request; now, if zero, is read from the engine's clock
// when needed.
func (r *Reservation) release(charge bool, tokens int64, now time.Time) {
	if r == nil || r.u == nil {
		return
	}
	var c clock
	if charge || r.prog != nil {
		if now.IsZero() {
			now = r.e.now()
		}
		c = newClock(now)
	}
	r.sh.mu.Lock()
	if r.done {
		r.sh.mu.Unlock()
		return
	}
	r.done = true
	u := r.u
	var charged, unreserved int64
	p := r.prog
	if p != nil {
		charged, unreserved, p.done = p.charged, p.unreserved, true
	}
	u.reserved -= r.Reserved - unreserved
	if !r.slotFreed {
		u.inFlight--
	}
	r.sh.held--
	if !charge {
		tokens = 0 // a cancelled request takes back what was checkpointed
	}
	switch delta := tokens - charged; {
	case delta > 0:
		u.roll(&c)
		for w := Hour; w < NumWindows; w++ {
			u.tokens[w] = satAdd(u.tokens[w], delta)
		}
		u.addMinute(delta, 0)
		r.sh.markDirty(u)
	case delta < 0:
		// The checkpoints counted more than the request used (or it was
		// cancelled): the windows give it back.
		u.roll(&c)
		p.giveBack(u, -delta)
		r.sh.markDirty(u)
	}
	r.sh.mu.Unlock()
}

// Options configure an Engine.
type Options struct {
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Load returns the persisted state (as produced by Dirty) of a user the
	// engine has not seen yet; nil, nil for a new user. It is called without
	// any engine lock held.
	Load func(user string) ([]byte, error)
}

const numShards = 64

type shard struct {
	mu    sync.Mutex
	users map[string]*userState
	dirty []*userState
	held  int64 // reservations held by the shard's users
	// forgets counts Forget calls: a state loaded from the store across one
	// may be the forgotten user's, read before the store deleted it.
	forgets uint64
	_       [64 - 8 - 8 - 24 - 8 - 8]byte // keep shards on separate cache lines
}

func (sh *shard) markDirty(u *userState) {
	if !u.dirty && !u.gone {
		u.dirty = true
		sh.dirty = append(sh.dirty, u)
	}
}

// Engine holds every user's window counters, reservations and in-flight
// counts. It is safe for concurrent use.
type Engine struct {
	now    func() time.Time
	load   func(string) ([]byte, error)
	shards [numShards]shard
}

// NewEngine returns an empty engine.
func NewEngine(o Options) *Engine {
	e := &Engine{now: o.Now, load: o.Load}
	if e.now == nil {
		e.now = time.Now
	}
	for i := range e.shards {
		e.shards[i].users = make(map[string]*userState)
	}
	return e
}

func (e *Engine) shardFor(user string) *shard {
	// FNV-1a, inline so that hashing does not allocate.
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= 16777619
	}
	return &e.shards[h%numShards]
}

// loadState builds a user's state from persisted bytes, without locks.
func (e *Engine) loadState(user string) (*userState, error) {
	u := &userState{name: user}
	if e.load == nil {
		return u, nil
	}
	data, err := e.load(user)
	if err != nil {
		return nil, err
	}
	if data != nil {
		if err := u.decode(data); err != nil {
			return nil, fmt.Errorf("quota: state of user %q: %w", user, err)
		}
	}
	return u, nil
}

// lockUser returns the user's state with its shard locked, loading it first
// if the engine has not seen the user.
func (e *Engine) lockUser(user string) (*shard, *userState, error) {
	sh := e.shardFor(user)
	sh.mu.Lock()
	for {
		if u := sh.users[user]; u != nil {
			return sh, u, nil
		}
		forgets := sh.forgets
		sh.mu.Unlock()
		// Load without the lock: it may read the disk, and other users of
		// the shard must not wait for it.
		u, err := e.loadState(user)
		if err != nil {
			return nil, nil, err
		}
		sh.mu.Lock()
		if prev := sh.users[user]; prev != nil {
			return sh, prev, nil // another goroutine loaded it meanwhile
		}
		if sh.forgets == forgets {
			sh.users[user] = u
			return sh, u, nil
		}
		// A user was forgotten meanwhile: the read may predate its
		// deletion from the store, so read again.
	}
}

// lockRef is lockUser, going to the state ref holds while Forget has not
// dropped it, and leaving ref with the state it found otherwise.
func (e *Engine) lockRef(user string, ref *UserRef) (*shard, *userState, error) {
	if ref == nil {
		return e.lockUser(user)
	}
	if u := ref.u.Load(); u != nil {
		sh := e.shardFor(user)
		sh.mu.Lock()
		if !u.gone { // set under sh.mu when Forget drops it
			return sh, u, nil
		}
		sh.mu.Unlock()
	}
	sh, u, err := e.lockUser(user)
	if err == nil {
		ref.u.Store(u)
	}
	return sh, u, err
}

// view runs fn on the user's state rolled to now, without keeping a user that
// is not in memory yet (so that reports over many users do not fill memory).
func (e *Engine) view(user string, fn func(u *userState, c *clock)) error {
	sh := e.shardFor(user)
	c := newClock(e.now())
	sh.mu.Lock()
	if u := sh.users[user]; u != nil {
		u.roll(&c)
		fn(u, &c)
		sh.mu.Unlock()
		return nil
	}
	sh.mu.Unlock()
	u, err := e.loadState(user)
	if err != nil {
		return err
	}
	u.roll(&c)
	fn(u, &c)
	return nil
}

// Admit decides whether the request may run. On success it returns a
// Reservation holding the request's worst case against every token window and
// counting it in every request window and in the in-flight count. On refusal
// it returns a *Denial and changes nothing. An error from Options.Load is
// returned as is.
func (e *Engine) Admit(req Request) (*Reservation, error) {
	r := new(Reservation)
	if err := e.AdmitTo(r, req); err != nil {
		return nil, err
	}
	return r, nil
}

// AdmitTo is Admit into r, which the caller may keep on its stack (the gate
// admits one request per request). On an error r is left as it was.
func (e *Engine) AdmitTo(r *Reservation, req Request) error {
	prompt := min(max(req.Prompt, 0), maxPrompt)
	n := int64(min(max(req.Choices, 1), maxChoices))
	want := req.Output
	if want <= 0 {
		want = req.DefaultOutput
		if want <= 0 {
			want = DefaultReserveOutput
		}
	}
	want = min(want, maxOutput)
	needMin := prompt + n // the prompt and one token per choice
	if req.PromptOnly {
		needMin = max(prompt, 1)
	} else if req.Choices > maxChoices {
		// More choices than a reservation counts: under a token limit it
		// could overspend, so it fits none.
		needMin = math.MaxInt64
	}
	l := &req.Limits
	now := req.Now
	if now.IsZero() {
		now = e.now()
	}
	c := newClock(now)

	sh, u, err := e.lockRef(req.User, req.Ref)
	if err != nil {
		return err
	}
	u.roll(&c)
	minTok, minReq := u.minuteSum()

	blocked := l.MaxParallel > 0 && int64(u.inFlight) >= int64(l.MaxParallel)
	limited := false
	minRemaining := int64(math.MaxInt64)
	for w := Minute; w < NumWindows; w++ {
		if lim := l.Requests[w]; lim > 0 && u.used(w, true, minTok, minReq) >= lim {
			blocked = true
		}
		if lim := l.Tokens[w]; lim > 0 {
			limited = true
			minRemaining = min(minRemaining, lim-u.used(w, false, minTok, minReq)-u.reserved)
		}
	}
	if limited && minRemaining < needMin {
		blocked = true
	}
	if req.PromptBound && (blocked || limited && !roomFor(minRemaining/BoundSlack, prompt, want, n, req.PromptOnly)) {
		sh.mu.Unlock()
		return ErrNeedCount
	}
	if blocked {
		d := u.deny(&c, l, needMin, minTok, minReq)
		sh.mu.Unlock()
		return d
	}

	*r = Reservation{e: e, sh: sh, u: u}
	switch {
	case req.PromptOnly:
		r.Reserved = prompt
	case !limited:
		r.OutputCap = want
		r.Reserved = prompt + want*n
	default:
		fit := (minRemaining - prompt) / n // >= 1: checked above
		if want > fit {
			// The budget, not the request, binds: the request gets half of
			// what remains after its prompt, so that one request cannot
			// hold the whole remaining budget while it runs (SPEC §3) and
			// the next request finds room.
			fit = max(fit/2, 1)
		}
		r.OutputCap = min(want, fit)
		// Anything but a client cap within the reservation must be enforced
		// upstream (this includes a client cap beyond maxOutput).
		r.Clamped = req.Output <= 0 || req.Output > r.OutputCap
		r.Reserved = prompt + r.OutputCap*n
	}
	u.reserved = satAdd(u.reserved, r.Reserved)
	u.inFlight++
	sh.held++
	for w := Hour; w < NumWindows; w++ {
		u.requests[w] = satAdd(u.requests[w], 1)
	}
	u.addMinute(0, 1)
	sh.markDirty(u)
	if req.WantRate {
		r.Rate = u.rateStatus(&c, l)
	}
	sh.mu.Unlock()
	return nil
}

// roomFor reports whether room holds the reservation of a prompt with n
// choices of want tokens (the prompt alone if promptOnly), without overflow.
func roomFor(room, prompt, want, n int64, promptOnly bool) bool {
	return room >= prompt && (promptOnly || (room-prompt)/n >= want)
}

// deny builds the Denial for a blocked request: of every constraint that
// blocks it, the one that keeps it out longest.
func (u *userState) deny(c *clock, l *Limits, needMin, minTok, minReq int64) *Denial {
	var best Denial
	have := false
	consider := func(d Denial) {
		if !have || d.outlasts(&best) {
			best, have = d, true
		}
	}
	if l.MaxParallel > 0 && int64(u.inFlight) >= int64(l.MaxParallel) {
		consider(Denial{Kind: Parallel, Limit: int64(l.MaxParallel), Used: int64(u.inFlight),
			Need: 1, RetryAfter: time.Second})
	}
	for w := Minute; w < NumWindows; w++ {
		if lim := l.Requests[w]; lim > 0 {
			used := u.used(w, true, minTok, minReq)
			if used >= lim {
				d := Denial{Kind: RequestRate, Window: w, Limit: lim, Used: used, Need: 1}
				d.RetryAfter = u.retryAfter(c, w, used+1-lim, true)
				consider(d)
			}
		}
		if lim := l.Tokens[w]; lim > 0 {
			used := u.used(w, false, minTok, minReq)
			if lim-used-u.reserved >= needMin {
				continue
			}
			d := Denial{Kind: Budget, Window: w, Limit: lim, Used: used, Reserved: u.reserved, Need: needMin}
			if w == Minute {
				d.Kind = TokenRate
			}
			switch {
			case needMin > lim:
				// Never fits: RetryAfter 0.
			case used+needMin > lim:
				d.RetryAfter = u.retryAfter(c, w, used+u.reserved+needMin-lim, false)
			default:
				// The room is there but held by requests in flight.
				d.Kind, d.RetryAfter = TokenRate, time.Second
			}
			consider(d)
		}
	}
	return &best
}

// retryAfter is how long until window w has room: until its reset for a
// calendar window (0 for Total: never), until excess has aged out for Minute.
func (u *userState) retryAfter(c *clock, w Window, excess int64, requests bool) time.Duration {
	switch w {
	case Minute:
		return u.ageOut(c.now, excess, requests)
	case Total:
		return 0
	}
	// A clock that went back keeps the stored, later period.
	start := time.Unix(max(u.start[w], c.start[w]), 0)
	return max(w.Reset(start).Sub(c.now), time.Second)
}

// WindowStatus is the state of one limited window.
type WindowStatus struct {
	Window Window
	Kind   string // "tokens" or "requests"
	Limit  int64
	Used   int64 // in the current period (Minute: the last 60 seconds)
	// Reserved is held by requests in flight (tokens only).
	Reserved int64
	// Remaining is Limit − Used − Reserved, at least 0.
	Remaining int64
	// ResetsAt is when the period ends; for Minute, when everything counted
	// so far has aged out, and what requests in flight hold too (counted
	// when they settle, now at the earliest): now if nothing is counted or
	// held; zero for Total.
	ResetsAt time.Time
}

func (u *userState) status(c *clock, l *Limits, out []WindowStatus) []WindowStatus {
	minTok, minReq := u.minuteSum()
	for w := Minute; w < NumWindows; w++ {
		for _, requests := range [2]bool{false, true} {
			lim, kind, reserved := l.Tokens[w], "tokens", u.reserved
			if requests {
				lim, kind, reserved = l.Requests[w], "requests", 0
			}
			if lim <= 0 {
				continue
			}
			s := WindowStatus{Window: w, Kind: kind, Limit: lim, Reserved: reserved,
				Used: u.used(w, requests, minTok, minReq)}
			s.Remaining = max(lim-s.Used-s.Reserved, 0)
			switch w {
			case Minute:
				s.ResetsAt = c.now.UTC()
				if last, ok := u.lastActive(requests); ok {
					s.ResetsAt = time.Unix(last+60, 0).UTC()
				}
				// Held tokens land in this second's bucket at the earliest.
				if held := time.Unix(c.now.Unix()+60, 0).UTC(); reserved > 0 && held.After(s.ResetsAt) {
					s.ResetsAt = held
				}
			case Total:
			default:
				s.ResetsAt = c.reset(w)
				if u.start[w] > c.start[w] {
					// A clock that went back keeps the stored, later
					// period (as retryAfter does): it ends after that one.
					s.ResetsAt = w.Reset(time.Unix(u.start[w], 0)).UTC()
				}
			}
			out = append(out, s)
		}
	}
	return out
}

// Status returns one entry per limited window of l, sorted from Minute to
// Total, tokens before requests within a window. A user the engine has not
// seen is loaded but not kept in memory.
func (e *Engine) Status(user string, l Limits) ([]WindowStatus, error) {
	var out []WindowStatus
	err := e.view(user, func(u *userState, c *clock) { out = u.status(c, &l, out) })
	return out, err
}

// RateStatus is a user's token window and request window with the least
// remaining (on a tie, the longer window, whose reset is the one that
// matters): what the x-ratelimit-* headers show.
type RateStatus struct {
	Tokens, Requests       WindowStatus
	HasTokens, HasRequests bool // false when no window of the kind is limited
}

func (u *userState) rateStatus(c *clock, l *Limits) RateStatus {
	var buf [2 * NumWindows]WindowStatus
	var rs RateStatus
	for _, s := range u.status(c, l, buf[:0]) {
		if s.Kind == "tokens" {
			if !rs.HasTokens || s.Remaining <= rs.Tokens.Remaining {
				rs.Tokens, rs.HasTokens = s, true
			}
		} else if !rs.HasRequests || s.Remaining <= rs.Requests.Remaining {
			rs.Requests, rs.HasRequests = s, true
		}
	}
	return rs
}

// Tightest returns the user's RateStatus for l; both kinds are absent if the
// user's state cannot be loaded.
func (e *Engine) Tightest(user string, l Limits) RateStatus {
	var rs RateStatus
	if err := e.view(user, func(u *userState, c *clock) { rs = u.rateStatus(c, &l) }); err != nil {
		return RateStatus{}
	}
	return rs
}

// Usage returns the user's tokens and requests in the current period of every
// window, limited or not.
func (e *Engine) Usage(user string) (tokens, requests [NumWindows]int64, err error) {
	err = e.view(user, func(u *userState, c *clock) {
		minTok, minReq := u.minuteSum()
		for w := Minute; w < NumWindows; w++ {
			tokens[w] = u.used(w, false, minTok, minReq)
			requests[w] = u.used(w, true, minTok, minReq)
		}
	})
	return tokens, requests, err
}

// InFlight returns the number of the user's admitted requests not yet settled
// or cancelled.
func (e *Engine) InFlight(user string) int {
	sh := e.shardFor(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if u := sh.users[user]; u != nil {
		return int(u.inFlight)
	}
	return 0
}

// Reset zeroes the user's usage in every window (the admin's "reset"). Held
// reservations and in-flight counts stay.
func (e *Engine) Reset(user string) error {
	c := newClock(e.now())
	sh, u, err := e.lockUser(user)
	if err != nil {
		return err
	}
	u.zero(&c)
	sh.markDirty(u)
	sh.mu.Unlock()
	return nil
}

// Forget drops the user's in-memory state (the user was deleted). Requests in
// flight still settle, but against the dropped state, which is never
// persisted again.
func (e *Engine) Forget(user string) {
	sh := e.shardFor(user)
	sh.mu.Lock()
	if u := sh.users[user]; u != nil {
		u.gone = true
		delete(sh.users, user)
	}
	sh.forgets++
	sh.mu.Unlock()
}

// Dirty returns the persisted state of every user changed since the last call,
// and clears the changed flags. If committing the result fails, pass the
// users to MarkDirty so that the next call returns them again.
func (e *Engine) Dirty() map[string][]byte {
	n := 0
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		n += len(sh.dirty)
		sh.mu.Unlock()
	}
	out := make(map[string][]byte, n)
	// The states share slabs: thousands of dirty users cost a few
	// allocations, not one each.
	var slab []byte
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		for j, u := range sh.dirty {
			if u.dirty && !u.gone {
				if cap(slab)-len(slab) < 64 {
					slab = make([]byte, 0, 8192)
				}
				start := len(slab)
				slab = u.encode(slab)
				out[u.name] = slab[start:len(slab):len(slab)]
			}
			u.dirty = false
			sh.dirty[j] = nil
		}
		sh.dirty = sh.dirty[:0]
		sh.mu.Unlock()
	}
	return out
}

// MarkDirty flags a user in memory as changed, so that the next Dirty call
// returns its state.
func (e *Engine) MarkDirty(user string) {
	sh := e.shardFor(user)
	sh.mu.Lock()
	if u := sh.users[user]; u != nil {
		sh.markDirty(u)
	}
	sh.mu.Unlock()
}

// Reservations returns the number of reservations held across all users.
// Each shard counts its own under the lock it takes anyway, so admitting
// and releasing touch no counter shared by every core.
func (e *Engine) Reservations() int {
	n := int64(0)
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		n += sh.held
		sh.mu.Unlock()
	}
	return int(n)
}
