package caddyfile

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The helpers below read the arguments of the word under the cursor. Each
// one leaves the cursor on the last token it read, so the errors they and
// their callers return name the line the user has to fix.

// oneArg reads exactly one argument of the word under the cursor.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	word := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s: missing argument", word)
	}
	val := d.Val()
	if err := noMore(d, word); err != nil {
		return "", err
	}
	return val, nil
}

// someArgs reads one or more arguments of the word under the cursor.
func someArgs(d *caddyfile.Dispenser) ([]string, error) {
	word := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("%s: missing argument", word)
	}
	if err := noBlock(d, word); err != nil {
		return nil, err
	}
	return args, nil
}

// noMore fails if word has arguments or a block left after those read.
func noMore(d *caddyfile.Dispenser, word string) error {
	if d.NextArg() {
		return d.Errf("%s: unexpected extra argument %q", word, d.Val())
	}
	return noBlock(d, word)
}

// noBlock fails if a block follows a word that takes none. Without it the
// block's braces would surface later as a puzzling "unrecognized" word.
func noBlock(d *caddyfile.Dispenser, word string) error {
	if d.NextBlock(d.Nesting()) {
		return d.Errf("%s takes no block", word)
	}
	return nil
}

// errAt is d.Errf for a token read earlier: checks that can only run once
// a whole block is read (a default_plan naming a plan defined after it, a
// jwt block with no key) still point at the line that is wrong.
func errAt(tok caddyfile.Token, format string, args ...any) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.Errf(format, args...)
}

// durationArg reads one duration argument: Go syntax (1s, 1h30m) or days
// (90d). Negative durations are refused; zero is allowed because for
// flush_interval and retention it has a meaning of its own.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	word := d.Val()
	s, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, d.Errf("%s: bad duration %q (examples: 500ms, 30s, 1h, 90d)", word, s)
	}
	if dur < 0 {
		return 0, d.Errf("%s: duration %q is negative", word, s)
	}
	return caddy.Duration(dur), nil
}

// countArg reads one count argument (see parseCount).
func countArg(d *caddyfile.Dispenser) (int64, error) {
	word := d.Val()
	s, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := parseCount(s)
	if err != nil {
		return 0, d.Errf("%s: %v", word, err)
	}
	return n, nil
}

// oneOf reads one argument that must be one of choices.
func oneOf(d *caddyfile.Dispenser, choices ...string) (string, error) {
	word := d.Val()
	s, err := oneArg(d)
	if err != nil {
		return "", err
	}
	for _, c := range choices {
		if s == c {
			return s, nil
		}
	}
	return "", d.Errf("%s: unknown value %q; use %s", word, s, strings.Join(choices, " or "))
}

// errCount is the cause of every parseCount failure, so the message shows
// the forms that are accepted whatever went wrong.
var errCount = errors.New("want a positive whole number such as 4096, 100k, 2.5M or 1G")

// parseCount parses a positive count: digits with an optional decimal
// suffix k (or K) = ×1000, M = ×1,000,000, G = ×1,000,000,000. A fraction
// is allowed when a suffix makes the result whole ("2.5M", not "2.5" or
// "1.0001k"). Signs, spaces and separators are refused so a typo cannot
// silently become another number.
func parseCount(s string) (int64, error) {
	body, mult, digits := s, int64(1), 0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			body, mult, digits = s[:n-1], 1e3, 3
		case 'M':
			body, mult, digits = s[:n-1], 1e6, 6
		case 'G':
			body, mult, digits = s[:n-1], 1e9, 9
		}
	}
	whole, frac, hasDot := strings.Cut(body, ".")
	if !allDigits(whole) || (hasDot && !allDigits(frac)) || len(frac) > digits {
		return 0, fmt.Errorf("%q: %w", s, errCount)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	var f int64
	if frac != "" {
		// frac has at most `digits` digits, so it fits and scales exactly.
		f, _ = strconv.ParseInt(frac, 10, 64)
		for range digits - len(frac) {
			f *= 10
		}
	}
	if f > math.MaxInt64-w*mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	n := w*mult + f
	if n <= 0 {
		return 0, fmt.Errorf("%q: %w", s, errCount)
	}
	return n, nil
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// hasPlaceholder reports whether s holds a runtime placeholder such as
// {env.LLM_GATE_JWT_SECRET}, whose value is only known at provision time.
func hasPlaceholder(s string) bool {
	open := strings.IndexByte(s, '{')
	return open >= 0 && strings.IndexByte(s[open+1:], '}') > 0
}

// once remembers, within a block, the settings that take one value and the
// line each was first given on: a second one is refused, where one of the
// two would silently win.
type once map[string]int

func (o once) check(d *caddyfile.Dispenser, word string) error {
	if line, ok := o[word]; ok {
		return d.Errf("%s is given twice (first on line %d); give it once", word, line)
	}
	o[word] = d.Line()
	return nil
}
