package tokenizer

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestClassTable checks the precomputed class table (and the on-the-fly
// path above it) against classify for every rune.
func TestClassTable(t *testing.T) {
	classOnce.Do(buildClassTable)
	var buf [utf8.UTFMax]byte
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if 0xD800 <= r && r <= 0xDFFF {
			continue // surrogates cannot occur in valid UTF-8
		}
		n := utf8.EncodeRune(buf[:], r)
		c, w := classAt(string(buf[:n]), 0)
		if c != classify(r) || w != n {
			t.Fatalf("classAt(%U) = %06b, %d; classify %06b, %d", r, c, w, classify(r), n)
		}
	}
	// Spot checks of the definitions themselves.
	for _, c := range []struct {
		r    rune
		want uint8
	}{
		{'a', cL | cW}, {'A', cL | cU}, {'ǅ', cL | cU}, {'ʰ', cL | cU | cW}, {'中', cL | cU | cW},
		{'\u0301', cU | cW}, {'7', cN}, {'²', cN}, {'Ⅻ', cN}, {' ', cS}, {'\n', cS | cNL},
		{'\r', cS | cNL}, {'\u0085', cS}, {'\u00a0', cS}, {'\u3000', cS}, {'\u200b', 0}, {'\ufeff', 0},
		{'!', 0}, {'\'', 0}, {'😀', 0},
	} {
		if got := classify(c.r); got != c.want {
			t.Errorf("classify(%U) = %06b, want %06b", c.r, got, c.want)
		}
	}
}

// sweepRunes returns runes worth trying in every context: all of Latin-1 and
// friends, both sides of every class boundary, all spaces, the runes whose
// lower case is ASCII, and some beyond the class table.
func sweepRunes() []rune {
	var rs []rune
	prev := uint8(255)
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if 0xD800 <= r && r <= 0xDFFF {
			continue
		}
		c := classify(r)
		switch {
		case r < 0x300, c != prev, unicode.IsSpace(r), unicode.ToLower(r) < utf8.RuneSelf:
			rs = append(rs, r)
			if r > 0 && c != prev && (r-1 < 0xD800 || r-1 > 0xDFFF) {
				rs = append(rs, r-1)
			}
		}
		prev = c
	}
	return append(rs, 0x20000, 0x2A6D6, 0xE0001, 0xE0100, 0x10FFFD)
}

// TestRuneSweep puts each sweep rune in contexts that exercise every
// alternative of the patterns and compares with tiktoken-go.
func TestRuneSweep(t *testing.T) {
	contexts := []string{"'%", "a%B'S", " %x", "%%1", "\n%\n", "A%", "1%2", "%'ll", "!%/", "\t%", "%"}
	runes := sweepRunes()
	encs := []string{"cl100k_base", "o200k_base", "p50k_base"}
	if testing.Short() {
		encs = encs[:2]
	}
	for _, name := range encs {
		tok, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := tok.reference()
		if err != nil {
			t.Fatal(err)
		}
		for len(runes) > 0 {
			batch := runes[:min(len(runes), 500)]
			runes = runes[len(batch):]
			var sb strings.Builder
			for _, r := range batch {
				for _, c := range contexts {
					sb.WriteString(strings.ReplaceAll(c, "%", string(r)))
					sb.WriteByte(' ')
				}
			}
			s := sb.String()
			if n := tok.Count(s); n == len(ref.EncodeOrdinary(s)) {
				continue
			}
			for _, r := range batch { // find the culprit
				for _, c := range contexts {
					checkAgainstReference(t, tok, strings.ReplaceAll(c, "%", string(r))+" ")
				}
			}
			t.Fatalf("%s: batch differs but no single rune does", name)
		}
		runes = sweepRunes()
	}
}

// pieces splits s (valid UTF-8) with split and returns the pieces.
func pieces(split splitFunc, s string) []string {
	var ps []string
	for i := 0; i < len(s); {
		e := split(s, i)
		if e <= i || e > len(s) {
			panic("splitter did not advance")
		}
		ps = append(ps, s[i:e])
		i = e
	}
	return ps
}

func TestSplitExamples(t *testing.T) {
	for _, c := range []struct {
		enc  string
		in   string
		want []string
	}{
		{"cl100k_base", "Hello, world!", []string{"Hello", ",", " world", "!"}},
		{"cl100k_base", "I'M here's", []string{"I", "'M", " here", "'s"}},
		{"cl100k_base", "a  b\n\n  \n  x", []string{"a", " ", " b", "\n\n  \n", " ", " x"}},
		{"cl100k_base", "x \t", []string{"x", " \t"}},
		{"cl100k_base", "12345 ١٢٣٤", []string{"123", "45", " ", "١٢٣", "٤"}},
		{"cl100k_base", " !!\r\n\r\nx", []string{" !!\r\n\r\n", "x"}},
		{"cl100k_base", "\u00a0word\tword", []string{"\u00a0word", "\tword"}},
		{"cl100k_base", "x\nword\r\nword", []string{"x", "\n", "word", "\r\n", "word"}},
		{"cl100k_base", "'Sup 'LLama x'LLama", []string{"'S", "up", " '", "LLama", " x", "'LL", "ama"}},
		{"o200k_base", "HELLOworld helloWORLD", []string{"HELLOworld", " hello", "WORLD"}},
		{"o200k_base", "CamelCase's x", []string{"Camel", "Case's", " x"}},
		{"o200k_base", "ÀʰB", []string{"Àʰ", "B"}},
		{"o200k_base", "\u0301A", []string{"\u0301", "A"}},
		{"o200k_base", "!/\n/x", []string{"!/\n/", "x"}},
		{"o200k_base", "x\nWord", []string{"x", "\n", "Word"}},
		{"p50k_base", "I'M here's  1234", []string{"I", "'", "M", " here", "'s", " ", " 1234"}},
		{"p50k_base", "a\n\nb", []string{"a", "\n", "\n", "b"}},
	} {
		got := pieces(splitters[c.enc], c.in)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s %q: pieces %q, want %q", c.enc, c.in, got, c.want)
		}
	}
}

// checkCuts fails t if some cut countChunks may make is not a piece
// boundary of the whole-text split.
func checkCuts(t *testing.T, name string, s string) {
	t.Helper()
	ends := map[int]bool{}
	e := 0
	for _, p := range pieces(splitters[name], s) {
		e += len(p)
		ends[e] = true
	}
	for i := cutAfter(s, 1); i < len(s); i = cutAfter(s, i+1) {
		if !ends[i] {
			t.Fatalf("%s: cut at %d of %s is inside a piece", name, i, short(s))
		}
	}
}

func TestCutsArePieceBoundaries(t *testing.T) {
	prose, err := os.ReadFile("testdata/prose.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Encodings {
		for _, s := range append(varied, string(prose), "it's a DON'T b'll\u0301 c ab\u0301 x", "Ǆ ǅ ʰ 'S 's") {
			checkCuts(t, name, validUTF8(s))
		}
	}
	if got := cutAfter("ab cd", 0); got != 2 {
		t.Errorf("cutAfter = %d, want 2", got)
	}
	if got := cutAfter("1 2 ! ", 0); got != 6 {
		t.Errorf("cutAfter without a letter-space pair = %d, want len", got)
	}
}

// TestRandomTricky compares with tiktoken-go on random strings drawn from
// the characters the patterns treat specially, which byte-level fuzzing
// reaches only slowly.
func TestRandomTricky(t *testing.T) {
	alphabet := []string{"'", "s", "S", "l", "L", "e", "R", "v", "d", "m", "t", "a", "Z", " ", " ", "\n", "\r",
		"\t", "\u00a0", "\u3000", "/", "!", ".", "1", "٣", "²", "Ⅻ", "é", "É", "ǅ", "ʰ", "中", "\u0301",
		"\u0308", "😀", "İ", "K", "ſ", "\xff", "\xe2\x82", "_", "\u200b", "-", "0"}
	n := 600
	if testing.Short() {
		n = 150
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range Encodings {
		tok, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			var sb strings.Builder
			for k := 1 + rng.IntN(24); k > 0; k-- {
				sb.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			checkAgainstReference(t, tok, sb.String())
		}
	}
}
