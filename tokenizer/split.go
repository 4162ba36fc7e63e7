package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// A splitFunc is a hand-written equivalent of one encoding's pre-tokenizer
// regular expression. Given valid UTF-8 s and a piece start i < len(s), it
// returns the end of the piece the regexp would match at i (always > i).
//
// tiktoken-go runs the patterns with regexp2, a backtracking engine: the
// alternatives are tried in order and the first one that matches wins, and
// each quantifier is greedy but gives characters back when the rest of its
// alternative needs them. The functions below reproduce the outcome of that
// search directly; the comments name the alternative each branch stands for.
// None of the patterns looks behind, so a match depends only on the text from
// i onwards.
type splitFunc func(s string, i int) int

// runOf returns the end of the longest run starting at j whose runes all have
// one of the class bits in mask.
func runOf(s string, j int, mask uint8) int {
	for j < len(s) {
		if b := s[j]; b < utf8.RuneSelf { // classAt, inlined by hand
			if asciiClass[b]&mask == 0 {
				break
			}
			j++
			continue
		}
		c, w := classAtSlow(s, j)
		if c&mask == 0 {
			break
		}
		j += w
	}
	return j
}

// isOther reports whether a rune with class c is in [^\s\p{L}\p{N}].
func isOther(c uint8) bool { return c&(cS|cL|cN) == 0 }

// runOther returns the end of the longest [^\s\p{L}\p{N}] run starting at j.
func runOther(s string, j int) int {
	for j < len(s) {
		if b := s[j]; b < utf8.RuneSelf { // classAt, inlined by hand
			if !isOther(asciiClass[b]) {
				break
			}
			j++
			continue
		}
		c, w := classAtSlow(s, j)
		if !isOther(c) {
			break
		}
		j += w
	}
	return j
}

// lowerAt returns the rune at s[j] (lower-cased as regexp2's (?i) does, with
// unicode.ToLower, when fold is set) and its width; -1 at the end of s.
func lowerAt(s string, j int, fold bool) (rune, int) {
	if j >= len(s) {
		return -1, 0
	}
	if b := s[j]; b < utf8.RuneSelf {
		if fold && 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		return rune(b), 1
	}
	r, w := utf8.DecodeRuneInString(s[j:])
	if fold {
		r = unicode.ToLower(r)
	}
	return r, w
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d after the apostrophe, i.e. at
// j, and returns the length matched after the apostrophe (0: no match). The
// alternatives differ in their first letter, so their order does not matter.
func contraction(s string, j int, fold bool) int {
	r, w := lowerAt(s, j, fold)
	switch r {
	case 's', 't', 'm', 'd':
		return w
	case 'r', 'v':
		if r2, w2 := lowerAt(s, j+w, fold); r2 == 'e' {
			return w + w2
		}
	case 'l':
		if r2, w2 := lowerAt(s, j+w, fold); r2 == 'l' {
			return w + w2
		}
	}
	return 0
}

// whitespace matches the whitespace alternatives at i, where s[i] is \s:
//
//	\s*[\r\n]+   (only when newlines is set)
//	\s+(?!\S)
//	\s+
//
// \s* first takes the whole run and gives runes back until [\r\n]+ can match,
// which happens at the run's last \r or \n; [\r\n]+ then stops right after it
// because nothing later in the run is a newline. \s+(?!\S) takes the whole
// run when the text ends there and otherwise gives back exactly its last
// rune, which needs a run of at least two runes; else \s+ takes the run.
func whitespace(s string, i int, newlines bool) int {
	j, last, lastNL := i, i, -1
	for j < len(s) {
		c, w := classAt(s, j)
		if c&cS == 0 {
			break
		}
		if c&cNL != 0 {
			lastNL = j
		}
		last = j
		j += w
	}
	if newlines && lastNL >= 0 {
		return lastNL + 1
	}
	if j == len(s) || last == i {
		return j
	}
	return last
}

// splitCL100K is cl100k_base's pattern:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func splitCL100K(s string, i int) int {
	b := s[i]
	if b == '\'' {
		if n := contraction(s, i+1, true); n > 0 {
			return i + 1 + n
		}
	}
	c, w := classAt(s, i)
	j := i + w
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c&cL != 0 {
		return runOf(s, j, cL)
	}
	if c&(cNL|cN) == 0 && j < len(s) {
		if c2, w2 := classAt(s, j); c2&cL != 0 {
			return runOf(s, j+w2, cL)
		}
	}
	// \p{N}{1,3}
	if c&cN != 0 {
		for k := 1; k < 3 && j < len(s); k++ {
			c2, w2 := classAt(s, j)
			if c2&cN == 0 {
				break
			}
			j += w2
		}
		return j
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	if e := spaceOthers(s, i, b, c, w); e > 0 {
		for e < len(s) && (s[e] == '\r' || s[e] == '\n') {
			e++
		}
		return e
	}
	return whitespace(s, i, true)
}

// spaceOthers matches " ?[^\s\p{L}\p{N}]+" at i (s[i] is b, of class c and
// width w) and returns its end, or 0.
func spaceOthers(s string, i int, b byte, c uint8, w int) int {
	if b == ' ' && i+1 < len(s) {
		if c2, w2 := classAt(s, i+1); isOther(c2) {
			return runOther(s, i+1+w2)
		}
	}
	if isOther(c) {
		return runOther(s, i+w)
	}
	return 0
}

// splitO200K is o200k_base's pattern:
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//	\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Below, U is the first bracket class and W the second; Lm, Lo and marks are
// in both, so runs of them can be split between U* and W+ either way.
func splitO200K(s string, i int) int {
	c, w := classAt(s, i)
	j := i + w
	prefix := c&(cNL|cL|cN) == 0 && j < len(s) // [^\r\n\p{L}\p{N}] can match s[i]
	// First alternative: the optional prefix is tried taken, then not.
	if prefix {
		if e := upperLower(s, j); e >= 0 {
			return contractionTail(s, e)
		}
	}
	if c&(cU|cW) != 0 {
		if e := upperLower(s, i); e >= 0 {
			return contractionTail(s, e)
		}
	}
	// Second alternative: U+ never needs to give anything back since W*
	// always matches.
	if prefix {
		if e := runOf(s, j, cU); e > j {
			return contractionTail(s, runOf(s, e, cW))
		}
	}
	if c&cU != 0 {
		return contractionTail(s, runOf(s, runOf(s, j, cU), cW))
	}
	// \p{N}{1,3}
	if c&cN != 0 {
		for k := 1; k < 3 && j < len(s); k++ {
			c2, w2 := classAt(s, j)
			if c2&cN == 0 {
				break
			}
			j += w2
		}
		return j
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n/]*
	if e := spaceOthers(s, i, s[i], c, w); e > 0 {
		for e < len(s) && (s[e] == '\r' || s[e] == '\n' || s[e] == '/') {
			e++
		}
		return e
	}
	return whitespace(s, i, true)
}

// upperLower matches U*W+ at j and returns its end, or -1. U* first takes
// the whole U run and gives runes back until W+ can start: right after the
// run if the next rune is in W (then W+ runs on as far as it can), else at
// the run's last rune that is also in W (then W+ ends with that rune, since
// every U rune after it is outside W).
func upperLower(s string, j int) int {
	lastW := -1
	for j < len(s) {
		c, w := classAt(s, j)
		if c&cU == 0 {
			if c&cW != 0 {
				return runOf(s, j+w, cW)
			}
			break
		}
		j += w
		if c&cW != 0 {
			lastW = j
		}
	}
	return lastW
}

// contractionTail applies o200k's trailing (?i:'s|'t|'re|'ve|'m|'ll|'d)? at e.
func contractionTail(s string, e int) int {
	if e < len(s) && s[e] == '\'' {
		if n := contraction(s, e+1, true); n > 0 {
			return e + 1 + n
		}
	}
	return e
}

// splitP50K is the GPT-2 pattern shared by p50k_base and r50k_base:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func splitP50K(s string, i int) int {
	b := s[i]
	if b == '\'' {
		if n := contraction(s, i+1, false); n > 0 {
			return i + 1 + n
		}
	}
	c, w := classAt(s, i)
	j := i
	// The optional leading space of the next three alternatives is kept
	// only if the rune after it starts the rest of one of them.
	if b == ' ' && i+1 < len(s) {
		if c2, w2 := classAt(s, i+1); c2&cS == 0 {
			c, w, j = c2, w2, i+1
		}
	}
	switch {
	case c&cL != 0:
		return runOf(s, j+w, cL)
	case c&cN != 0:
		return runOf(s, j+w, cN)
	case isOther(c):
		return runOther(s, j+w)
	}
	return whitespace(s, i, false)
}
