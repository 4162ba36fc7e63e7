package vllmsim

import (
	"strings"
	"testing"

	"github.com/llmgate/llmgate/tokenizer"
)

func cl100k(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Get("cl100k_base")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Every vocabulary word must be exactly one cl100k token with the recorded
// id; otherwise a relayed answer would not count back to completion_tokens.
func TestVocabularyWordsAreSingleTokens(t *testing.T) {
	tok := cl100k(t)
	seen := map[string]bool{}
	for _, w := range vocab {
		if seen[w.text] {
			t.Errorf("duplicate word %q", w.text)
		}
		seen[w.text] = true
		ids := tok.Encode(w.text)
		if len(ids) != 1 || ids[0] != w.id {
			t.Errorf("%q encodes to %v, want [%d]", w.text, ids, w.id)
		}
		if !strings.HasPrefix(w.text, " ") {
			t.Errorf("%q must start with a space so words never merge", w.text)
		}
	}
}

// Any run of generated words counts back to its length, whatever the seed.
func TestGeneratedTextCountsBack(t *testing.T) {
	tok := cl100k(t)
	for _, tc := range []struct{ prompt, choice, n int }{
		{0, 0, 1}, {8, 0, 16}, {13, 1, 200}, {1000, 7, 513}, {-5, 2, 64},
	} {
		seed := choiceSeed(tc.prompt, tc.choice)
		if seed < 0 || seed >= len(vocab) {
			t.Fatalf("seed %d out of range", seed)
		}
		c := choice{seed: seed, length: tc.n, emitted: tc.n}
		text := string(c.appendText(nil, 0, tc.n))
		if got := tok.Count(text); got != tc.n {
			t.Errorf("prompt %d choice %d: %d words count as %d tokens", tc.prompt, tc.choice, tc.n, got)
		}
		ids := tok.Encode(text)
		for i, id := range ids {
			if want := wordID(seed, i); id != want {
				t.Fatalf("token %d is %d, want %d", i, id, want)
			}
		}
		// With an EOS the text has one token less.
		c.eos = true
		if got := tok.Count(string(c.appendText(nil, 0, tc.n))); got != tc.n-1 {
			t.Errorf("with EOS: %d, want %d", got, tc.n-1)
		}
	}
}

func TestDecodeTokens(t *testing.T) {
	tok := cl100k(t)
	text := "Hello, wörld! 😀 <|endoftext|>"
	got, ok := decodeTokens(tok.Encode(text))
	if !ok || got != text {
		t.Fatalf("round trip = %q, %v", got, ok)
	}
	if s, ok := tokenText(tokImStart); !ok || s != "<|im_start|>" {
		t.Fatalf("im_start = %q", s)
	}
	for _, bad := range []int{-1, 100261, 1 << 30} {
		if _, ok := tokenText(bad); ok {
			t.Errorf("id %d decoded", bad)
		}
	}
	if _, ok := decodeTokens([]int{9906, -1}); ok {
		t.Error("bad id accepted")
	}
}
