package tokenizer

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// Character classes used by the pre-tokenizer patterns, as bits. They mirror
// exactly what github.com/dlclark/regexp2 (the engine tiktoken-go runs the
// patterns with) tests: \p{X} is unicode.Is(unicode.Categories[X], r) and \s
// is unicode.IsSpace(r). Both come from the same Go unicode tables this
// package is compiled with, so the two cannot drift apart.
const (
	cL  uint8 = 1 << iota // \p{L}
	cN                    // \p{N}
	cS                    // \s
	cNL                   // \r or \n
	cU                    // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] (o200k's "upper" run)
	cW                    // [\p{Ll}\p{Lm}\p{Lo}\p{M}] (o200k's "lower" run)
)

// tableSize covers the BMP and the supplementary plane that holds emoji and
// most other symbols met in prompts; rarer runes are classified on the fly.
const tableSize = 0x20000

var (
	classOnce  sync.Once
	classTable []uint8    // classTable[r] = classify(r) for r < tableSize
	asciiClass [256]uint8 // indexed by byte: no bounds check; only ASCII is set
)

func init() {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		asciiClass[r] = classify(r)
	}
}

// classify computes a rune's class bits from the unicode tables, the slow way.
func classify(r rune) uint8 {
	var c uint8
	if unicode.Is(unicode.L, r) {
		c |= cL
	}
	if unicode.Is(unicode.N, r) {
		c |= cN
	}
	if unicode.IsSpace(r) {
		c |= cS
	}
	if r == '\r' || r == '\n' {
		c |= cNL
	}
	if unicode.Is(unicode.Lu, r) || unicode.Is(unicode.Lt, r) || unicode.Is(unicode.Lm, r) ||
		unicode.Is(unicode.Lo, r) || unicode.Is(unicode.M, r) {
		c |= cU
	}
	if unicode.Is(unicode.Ll, r) || unicode.Is(unicode.Lm, r) || unicode.Is(unicode.Lo, r) ||
		unicode.Is(unicode.M, r) {
		c |= cW
	}
	return c
}

// buildClassTable fills classTable by walking the range tables rather than
// calling classify 128 Ki times, which keeps the one-time cost near 1 ms.
func buildClassTable() {
	t := make([]uint8, tableSize)
	set := func(tab *unicode.RangeTable, bit uint8) {
		for _, rg := range tab.R16 {
			for r := int(rg.Lo); r <= int(rg.Hi) && r < tableSize; r += int(rg.Stride) {
				t[r] |= bit
			}
		}
		for _, rg := range tab.R32 {
			for r := int(rg.Lo); r <= int(rg.Hi) && r < tableSize; r += int(rg.Stride) {
				t[r] |= bit
			}
		}
	}
	set(unicode.L, cL)
	set(unicode.N, cN)
	for _, tab := range []*unicode.RangeTable{unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M} {
		set(tab, cU)
	}
	for _, tab := range []*unicode.RangeTable{unicode.Ll, unicode.Lm, unicode.Lo, unicode.M} {
		set(tab, cW)
	}
	// unicode.IsSpace is not exactly the White_Space property (it is the
	// Latin-1 list plus category Z, whose last member is U+3000), so take it
	// from the function itself.
	for r := rune(0); r <= 0x3000; r++ {
		if unicode.IsSpace(r) {
			t[r] |= cS
		}
	}
	t['\r'] |= cNL
	t['\n'] |= cNL
	classTable = t
}

// classAt decodes the rune at s[i] and returns its class bits and width. s
// must be valid UTF-8 and i < len(s).
func classAt(s string, i int) (uint8, int) {
	if b := s[i]; b < utf8.RuneSelf {
		return asciiClass[b], 1 // inlined fast path
	}
	return classAtSlow(s, i)
}

func classAtSlow(s string, i int) (uint8, int) {
	classOnce.Do(buildClassTable) // loadModel builds it; this makes sure
	r, w := utf8.DecodeRuneInString(s[i:])
	if r < tableSize {
		return classTable[r], w
	}
	return classify(r), w
}
