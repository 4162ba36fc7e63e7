package tokenizer

import (
	"slices"
	"testing"
)

// FuzzCount holds Count and Encode to tiktoken-go's EncodeOrdinary on
// arbitrary strings, for every encoding, and checks that the cuts used for
// parallel counting are piece boundaries and change no count.
func FuzzCount(f *testing.F) {
	for _, s := range varied {
		f.Add(s)
	}
	f.Add("a'S b'Ll c\u0301'D Ǆ've")
	f.Add("x \n\n\t y\u00a0\u00a0z")
	toks := make([]*Tokenizer, len(Encodings))
	for i, name := range Encodings {
		tok, err := Get(name)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := tok.reference(); err != nil {
			f.Fatal(err)
		}
		toks[i] = tok
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 2048 {
			// tiktoken-go's merge is quadratic in a piece's length: long
			// inputs would stall the fuzzer without exploring anything new.
			t.Skip()
		}
		v := validUTF8(s)
		for _, tok := range toks {
			ref, _ := tok.reference()
			want := ref.EncodeOrdinary(s)
			if got := tok.Encode(s); !slices.Equal(got, want) {
				t.Fatalf("%s: Encode(%q) = %v, tiktoken-go %v", tok.Name(), s, got, want)
			}
			if n := tok.Count(s); n != len(want) {
				t.Fatalf("%s: Count(%q) = %d, tiktoken-go %d", tok.Name(), s, n, len(want))
			}
			if n := tok.m.countChunks(v, 1); n != len(want) {
				t.Fatalf("%s: countChunks(%q) = %d, want %d", tok.Name(), s, n, len(want))
			}
			checkCuts(t, tok.Name(), v)
		}
	})
}
