// Package tokenizer counts tokens with tiktoken's BPE encodings, loaded from the
// files embedded in the binary (never from the network).
//
// Encoders are expensive to build (100–300 ms, 10–16 MiB), so each encoding is
// built once per process and shared; a *Tokenizer is safe for concurrent use.
package tokenizer

import (
	"fmt"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// Default is the encoding used when none is configured.
const Default = "cl100k_base"

// Tokenizer counts tokens in text with one BPE encoding.
type Tokenizer struct {
	name string
	enc  *tiktoken.Tiktoken
}

// Encodings lists the encodings Get accepts.
var Encodings = []string{"cl100k_base", "o200k_base", "p50k_base", "r50k_base"}

var (
	loaderOnce sync.Once
	mu         sync.Mutex
	cache      = map[string]*entry{}
)

type entry struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// Known reports whether name is an encoding Get can load.
func Known(name string) bool {
	for _, e := range Encodings {
		if e == name {
			return true
		}
	}
	return false
}

// Get returns the process-wide tokenizer for the named encoding, building it
// on first use.
func Get(name string) (*Tokenizer, error) {
	if name == "" {
		name = Default
	}
	if !Known(name) {
		return nil, fmt.Errorf("unknown tokenizer %q (known: %v)", name, Encodings)
	}
	loaderOnce.Do(func() { tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader()) })
	mu.Lock()
	e, ok := cache[name]
	if !ok {
		e = &entry{}
		cache[name] = e
	}
	mu.Unlock()
	e.once.Do(func() {
		enc, err := tiktoken.GetEncoding(name)
		if err != nil {
			e.err = fmt.Errorf("loading tokenizer %s: %w", name, err)
			return
		}
		e.tok = &Tokenizer{name: name, enc: enc}
	})
	return e.tok, e.err
}

// Name is the encoding's name.
func (t *Tokenizer) Name() string { return t.name }

// Count returns the number of tokens in s. Special-token text such as
// "<|endoftext|>" is counted as ordinary text, never interpreted.
func (t *Tokenizer) Count(s string) int {
	if s == "" {
		return 0
	}
	return len(t.enc.EncodeOrdinary(s))
}

// Encode returns the token ids of s (ordinary text only).
func (t *Tokenizer) Encode(s string) []int { return t.enc.EncodeOrdinary(s) }
