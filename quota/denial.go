package quota

import (
	"fmt"
	"strconv"
	"time"
)

// Kind is the reason a request was denied.
type Kind uint8

// The denial kinds; see the package documentation for when each applies.
const (
	Budget      Kind = iota // a token budget (window longer than a minute) is used up
	TokenRate               // the minute token window is full, or room is held by requests in flight
	RequestRate             // a request window is full
	Parallel                // too many requests in flight
)

var kindNames = [...]string{"budget", "token_rate", "request_rate", "parallel"}

// String returns budget, token_rate, request_rate or parallel.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Denial is the error Admit returns when a request may not run.
type Denial struct {
	Kind   Kind
	Window Window // the blocking window; meaningless for Parallel
	Limit  int64  // the window's limit (Parallel: MaxParallel)
	Used   int64  // used in the current period (Parallel: in flight)
	// Reserved is what the user's requests in flight hold (token windows).
	Reserved int64
	// Need is the least the request needed: prompt + one token per choice
	// for token windows, 1 otherwise.
	Need int64
	// RetryAfter is how long until the request could be admitted; 0 means
	// retrying will not help (Total used up, or the request exceeds the limit).
	RetryAfter time.Duration
}

// TooLarge reports that the request alone exceeds the limit, so it can never
// be admitted as it is.
func (d *Denial) TooLarge() bool { return d.Need > d.Limit }

// Error returns a message meant for the client.
func (d *Denial) Error() string {
	switch d.Kind {
	case Parallel:
		return fmt.Sprintf("too many parallel requests: %d of %d allowed are in flight; retry when one finishes", d.Used, d.Limit)
	case RequestRate:
		return fmt.Sprintf("request rate limit exceeded: %d of %d requests %s made; %s", d.Used, d.Limit, d.Window.per(), d.when())
	}
	if d.TooLarge() {
		return fmt.Sprintf("request too large: it needs at least %d tokens (prompt plus one per choice) but the limit is %d tokens %s",
			d.Need, d.Limit, d.Window.per())
	}
	if d.Used+d.Need <= d.Limit {
		return fmt.Sprintf("token limit reached by requests in flight: %d of %d tokens %s used and %d reserved; %s",
			d.Used, d.Limit, d.Window.per(), d.Reserved, d.when())
	}
	what := "token budget exceeded"
	if d.Kind == TokenRate {
		what = "token rate limit exceeded"
	}
	if d.Used < d.Limit {
		// Not used up: the request does not fit in what is left.
		return fmt.Sprintf("%s: %d of %d tokens %s used, and this request needs at least %d (prompt plus one per choice); %s",
			what, d.Used, d.Limit, d.Window.per(), d.Need, d.when())
	}
	return fmt.Sprintf("%s: %d of %d tokens %s used; %s", what, d.Used, d.Limit, d.Window.per(), d.when())
}

// when phrases RetryAfter.
func (d *Denial) when() string {
	switch {
	case d.RetryAfter <= 0:
		return "the limit does not reset"
	case d.Window.Sliding() || d.Kind == TokenRate && !d.TooLarge():
		return "retry in " + formatDuration(d.RetryAfter)
	}
	return "resets in " + formatDuration(d.RetryAfter)
}

// outlasts reports whether d keeps the request out longer than o: a later
// retry (0 = never), then the longer window, then the lower Kind.
func (d *Denial) outlasts(o *Denial) bool {
	a, b := d.RetryAfter, o.RetryAfter
	if a <= 0 {
		a = time.Duration(1<<63 - 1)
	}
	if b <= 0 {
		b = time.Duration(1<<63 - 1)
	}
	if a != b {
		return a > b
	}
	if d.Window != o.Window {
		return d.Window > o.Window
	}
	return d.Kind < o.Kind
}

// formatDuration renders d rounded up to the second, without zero units:
// "3h2m", "45s", "1h".
func formatDuration(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	h, m, sec := s/3600, s/60%60, s%60
	out := ""
	if h > 0 {
		out += strconv.FormatInt(h, 10) + "h"
	}
	if m > 0 {
		out += strconv.FormatInt(m, 10) + "m"
	}
	if sec > 0 {
		out += strconv.FormatInt(sec, 10) + "s"
	}
	return out
}
