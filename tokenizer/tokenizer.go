// Package tokenizer counts tokens with tiktoken's BPE encodings, loaded from the
// files embedded in the binary (never from the network).
//
// Counting must be fast enough to admit a 100,000-token prompt within a few
// milliseconds, which tiktoken-go (1.5–3.5 MB/s here, mostly in its regexp2
// pre-tokenizer; about 115 ms for such a prompt) is not. So the package splits text with hand-written
// equivalents of each encoding's pattern (split.go), merges pieces with its
// own byte-pair merge (bpe.go), remembers the counts of recurring multi-token
// words and of whole texts seen recently (cache.go) and counts very large
// texts on several cores. The results are identical to tiktoken-go's
// EncodeOrdinary, token for token; the tests and fuzzers hold it to that,
// using tiktoken-go itself as the reference.
//
// Encodings are loaded once per process, on first use (cl100k_base: 11 ms on
// an idle machine and 3.1 MiB kept; o200k_base: 31 ms and 5.9 MiB), and shared; a
// *Tokenizer is safe for concurrent use.
package tokenizer

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"hash/maphash"
	"runtime"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
	"github.com/pkoukk/tiktoken-go-loader/assets"
)

// Default is the encoding used when none is configured.
const Default = "cl100k_base"

// Encodings lists the encodings Get accepts.
var Encodings = []string{"cl100k_base", "o200k_base", "p50k_base", "r50k_base"}

// splitters maps each encoding to its pre-tokenizer.
var splitters = map[string]splitFunc{
	"cl100k_base": splitCL100K,
	"o200k_base":  splitO200K,
	"p50k_base":   splitP50K,
	"r50k_base":   splitP50K,
}

// Tokenizer counts tokens in text with one BPE encoding.
type Tokenizer struct {
	name string
	m    *model

	// The tiktoken-go encoder, built only on demand: it is the reference
	// the fast path is tested against.
	refOnce sync.Once
	ref     *tiktoken.Tiktoken
	refErr  error
}

// model is an encoding's data: its mergeable ranks and pre-tokenizer.
type model struct {
	ranks       *rankTable // token bytes -> id (= merge rank)
	maxTokenLen int        // longest token, in bytes
	split       splitFunc
	cache       *countCache
	short       *shortCache
	texts       *textCache
}

var (
	mu    sync.Mutex
	cache = map[string]*entry{}
)

type entry struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// Known reports whether name is an encoding Get can load.
func Known(name string) bool {
	_, ok := splitters[name]
	return ok
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
	mu.Lock()
	e, ok := cache[name]
	if !ok {
		e = &entry{}
		cache[name] = e
	}
	mu.Unlock()
	e.once.Do(func() {
		m, err := loadModel(name)
		if err != nil {
			e.err = fmt.Errorf("loading tokenizer %s: %w", name, err)
			return
		}
		e.tok = &Tokenizer{name: name, m: m}
	})
	return e.tok, e.err
}

// readAsset returns the embedded .tiktoken file of an encoding; a variable so
// tests can exercise the error paths.
var readAsset = func(name string) ([]byte, error) { return assets.Assets.ReadFile(name + ".tiktoken") }

// loadModel parses an encoding's ranks file: one "base64(token) rank" line
// per token. The token bytes all go into one string, which the rank table
// points into, so the 100–200 thousand tokens cost one allocation and give
// the garbage collector one pointer to follow, not one each.
func loadModel(name string) (*model, error) {
	data, err := readAsset(name)
	if err != nil {
		return nil, err
	}
	classOnce.Do(buildClassTable)
	lines := bytes.Count(data, []byte{'\n'}) + 1
	// Decoded tokens are shorter than their base64 text.
	buf := make([]byte, 0, base64.StdEncoding.DecodedLen(len(data)))
	spans := make([]tokenSpan, 0, lines)
	for line, rest := 1, data; len(rest) > 0; line++ {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(l) == 0 {
			continue
		}
		tok, num, ok := bytes.Cut(l, []byte{' '})
		rank, err := strconv.Atoi(string(num))
		if !ok || err != nil || rank < 0 || rank >= noRank {
			return nil, fmt.Errorf("line %d: bad rank %q", line, num)
		}
		start := len(buf)
		buf = buf[:start+base64.StdEncoding.DecodedLen(len(tok))]
		n, err := base64.StdEncoding.Decode(buf[start:], tok)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("line %d: bad token %q", line, tok)
		}
		buf = buf[:start+n]
		spans = append(spans, tokenSpan{start, start + n, rank})
	}
	m := &model{split: splitters[name], cache: newCountCache(), short: &shortCache{}, texts: newTextCache()}
	for _, sp := range spans {
		m.maxTokenLen = max(m.maxTokenLen, sp.end-sp.start)
	}
	if m.ranks, err = newRankTable(string(buf), spans); err != nil {
		return nil, err
	}
	// The merge relies on every single byte being a token.
	for b := 0; b < 256; b++ {
		if _, ok := m.ranks.get(string([]byte{byte(b)})); !ok {
			return nil, fmt.Errorf("byte %#x is not a token", b)
		}
	}
	return m, nil
}

// Name is the encoding's name.
func (t *Tokenizer) Name() string { return t.name }

// Count returns the number of tokens in s, exactly len(Encode(s)).
// Special-token text such as "<|endoftext|>" is counted as ordinary text,
// never interpreted. Count keeps no reference to s once it returns (the
// caches keep hashes, never text), so s may be a view of bytes that change
// later.
//
// Texts of TextCacheMin bytes or more are remembered whole (textCache), so
// counting a text seen recently costs one hash of it; a new one costs that
// hash on top of the count.
func (t *Tokenizer) Count(s string) int {
	if len(s) < TextCacheMin {
		return t.count(s)
	}
	h := maphash.String(t.m.texts.seed, s)
	if n, ok := t.m.texts.get(h, len(s)); ok {
		return n
	}
	n := t.count(s)
	t.m.texts.put(h, len(s), n)
	return n
}

// CountOnce is Count for a text that will not come again (generated text):
// it neither looks it up in nor adds it to the text cache, where it would
// only push out texts that do recur.
func (t *Tokenizer) CountOnce(s string) int { return t.count(s) }

// count is Count without the text cache.
func (t *Tokenizer) count(s string) int {
	if s == "" {
		return 0
	}
	s = validUTF8(s)
	// Length first: GOMAXPROCS takes the scheduler's global lock, which a
	// short text (every chat message) has no reason to contend for.
	if len(s) >= parallelMin {
		if procs := runtime.GOMAXPROCS(0); procs > 1 {
			return t.m.countChunks(s, max(len(s)/procs, parallelMin/2))
		}
	}
	return t.m.count(s)
}

// Encode returns the token ids of s (ordinary text only), the same ids as
// tiktoken-go's EncodeOrdinary.
func (t *Tokenizer) Encode(s string) []int {
	ids := make([]int, 0, len(s)/4+1)
	if s == "" {
		return ids
	}
	s = validUTF8(s)
	for i := 0; i < len(s); {
		e := t.m.split(s, i)
		t.m.encodePiece(s[i:e], &ids)
		i = e
	}
	return ids
}

// validUTF8 turns each byte of s that is not part of valid UTF-8 into
// U+FFFD, as tiktoken-go does by converting the text to runes, so the bytes
// that reach the merge are the same.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string([]rune(s))
}

// count counts the tokens of valid UTF-8 s on the calling goroutine.
func (m *model) count(s string) int {
	n := 0
	for i := 0; i < len(s); {
		e := m.split(s, i)
		n += m.countPiece(s[i:e])
		i = e
	}
	return n
}

// countPiece returns the number of tokens piece p merges into.
func (m *model) countPiece(p string) int {
	if len(p) == 1 {
		return 1 // every byte is a token
	}
	if len(p) <= shortPieceMax {
		k := shortKey(p)
		if n, ok := m.short.get(k); ok {
			return n
		}
		n := m.countLong(p)
		m.short.put(k, n)
		return n
	}
	return m.countLong(p)
}

// countLong is countPiece without the short-piece cache. The piece cache
// holds the pieces longer than the short-piece cache does, so that each
// piece has one place.
func (m *model) countLong(p string) int {
	if len(p) <= m.maxTokenLen {
		if _, ok := m.ranks.get(p); ok {
			return 1
		}
	}
	if len(p) > maxCachedPiece || len(p) <= shortPieceMax {
		return m.merge(p, nil)
	}
	if n, ok := m.cache.get(p); ok {
		return n
	}
	n := m.merge(p, nil)
	m.cache.put(p, n)
	return n
}

// encodePiece appends the token ids of piece p to ids.
func (m *model) encodePiece(p string, ids *[]int) {
	if len(p) <= m.maxTokenLen {
		if r, ok := m.ranks.get(p); ok {
			*ids = append(*ids, int(r))
			return
		}
	}
	m.merge(p, ids)
}

// parallelMin is the smallest text counted on several goroutines: below it
// the fan-out costs more than it saves.
const parallelMin = 64 << 10

// countChunks counts s in chunks of about chunk bytes, concurrently. It cuts
// only between an ASCII letter and a following space. No piece can span
// such a cut, in any of the encodings: a letter can only be in a piece
// matched by a letter-run alternative (possibly after a one-rune prefix or
// ending in a contraction), and those stop at the first rune that is neither
// a letter (nor, for o200k, a mark) nor an apostrophe. Nor does counting a
// chunk on its own change how its pieces are found: every branch that could
// look past the cut would first have to cross the letter before it, and for
// those branches the space tests the same as the end of the text (it is not
// a letter, mark, digit or apostrophe). The tests and the fuzzer check both
// claims against whole-text splitting.
func (m *model) countChunks(s string, chunk int) int {
	var cuts []int
	for a := 0; a < len(s); {
		a = cutAfter(s, a+chunk)
		cuts = append(cuts, a)
	}
	if len(cuts) == 1 {
		return m.count(s)
	}
	counts := make([]int, len(cuts))
	var wg sync.WaitGroup
	a := 0
	for k, b := range cuts {
		wg.Add(1)
		go func(k int, part string) {
			defer wg.Done()
			counts[k] = m.count(part)
		}(k, s[a:b])
		a = b
	}
	wg.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	return total
}

// cutAfter returns the first safe cut at or after i (see countParallel), or
// len(s) if there is none.
func cutAfter(s string, i int) int {
	for i = max(i, 1); i < len(s); i++ {
		if s[i] == ' ' && isASCIILetter(s[i-1]) {
			return i
		}
	}
	return len(s)
}

func isASCIILetter(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

// loaderOnce installs tiktoken-go's offline loader: its default one fetches
// the ranks over the network.
var loaderOnce sync.Once

// reference returns tiktoken-go's encoder for t's encoding, building it on
// first use (100–300 ms). It is the slow reference implementation.
func (t *Tokenizer) reference() (*tiktoken.Tiktoken, error) {
	t.refOnce.Do(func() {
		loaderOnce.Do(func() { tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader()) })
		t.ref, t.refErr = tiktoken.GetEncoding(t.name)
	})
	return t.ref, t.refErr
}

// countReference counts with tiktoken-go (the reference implementation).
func (t *Tokenizer) countReference(s string) (int, error) {
	ref, err := t.reference()
	if err != nil {
		return 0, err
	}
	return len(ref.EncodeOrdinary(s)), nil
}
