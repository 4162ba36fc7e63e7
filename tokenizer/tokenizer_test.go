package tokenizer

import (
	"strings"
	"sync"
	"testing"
)

func TestGetAndCount(t *testing.T) {
	tok, err := Get("")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name() != Default {
		t.Fatalf("default name %q", tok.Name())
	}
	// Reference counts from OpenAI's tiktoken (cl100k_base).
	for s, want := range map[string]int{
		"":                     0,
		"hello world":          2,
		"Hello, world!":        4,
		" the the the":         3,
		"<|endoftext|>":        7, // ordinary text, never the special token
		strings.Repeat("a", 8): 1,
	} {
		if got := tok.Count(s); got != want {
			t.Errorf("Count(%q) = %d, want %d", s, got, want)
		}
		if got := len(tok.Encode(s)); s != "" && got != tok.Count(s) {
			t.Errorf("len(Encode(%q)) = %d, Count = %d", s, got, tok.Count(s))
		}
	}
	o, err := Get("o200k_base")
	if err != nil {
		t.Fatal(err)
	}
	if o.Count("hello world") != 2 || o == tok {
		t.Fatal("o200k_base")
	}
}

func TestGetIsCachedAndConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	got := make([]*Tokenizer, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk, err := Get("cl100k_base")
			if err != nil {
				t.Error(err)
				return
			}
			tk.Count("some text to count")
			got[i] = tk
		}()
	}
	wg.Wait()
	for _, tk := range got {
		if tk != got[0] {
			t.Fatal("Get built the encoder twice")
		}
	}
}

func TestUnknown(t *testing.T) {
	if _, err := Get("gpt2-nonexistent"); err == nil || !strings.Contains(err.Error(), "cl100k_base") {
		t.Fatalf("error %v should list the known encodings", err)
	}
	if Known("nope") || !Known("p50k_base") {
		t.Fatal("Known")
	}
}

func BenchmarkCount(b *testing.B) {
	tok, _ := Get("")
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 200)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Count(text)
	}
}
