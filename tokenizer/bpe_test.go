package tokenizer

import (
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestMergeLargeMatchesSmall checks the heap merge against the quadratic one
// on pieces short enough for both.
func TestMergeLargeMatchesSmall(t *testing.T) {
	for _, name := range []string{"cl100k_base", "o200k_base"} {
		tok, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		dec := make(map[int]string, tok.m.ranks.len())
		tok.m.ranks.each(func(tok string, r int32) { dec[int(r)] = tok })
		rng := rand.New(rand.NewPCG(1, 2))
		alphabets := []string{"ab", "aeiou", "etaoinshrdlu", "0123456789", " \n", "!?.,", "\x00\xff\x80\xc3\xa9"}
		for i := 0; i < 3000; i++ {
			alpha := alphabets[i%len(alphabets)]
			p := make([]byte, 2+rng.IntN(smallPiece-1))
			for j := range p {
				p[j] = alpha[rng.IntN(len(alpha))]
			}
			checkMerges(t, tok.m, dec, string(p))
		}
		for _, p := range []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
			"abababababab", " indivisibility", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80", strings.Repeat("é", 60)} {
			checkMerges(t, tok.m, dec, p)
		}
	}
}

func checkMerges(t *testing.T, m *model, dec map[int]string, p string) {
	t.Helper()
	var small, large []int
	ns, nl := m.merge(p, &small), m.mergeLarge(p, &large)
	if ns != nl || !slices.Equal(small, large) || ns != len(small) {
		t.Fatalf("merge(%q) = %d %v, mergeLarge = %d %v", p, ns, small, nl, large)
	}
	// The tokens must spell the piece.
	var sb strings.Builder
	for _, id := range small {
		sb.WriteString(dec[id])
	}
	if sb.String() != p {
		t.Fatalf("merge(%q) spells %q", p, sb.String())
	}
}

func TestCountCache(t *testing.T) {
	c := newCountCache()
	if _, ok := c.get("hello"); ok {
		t.Fatal("empty cache hit")
	}
	text := "xx hello yy"
	c.put(text[3:8], 3)
	if n, ok := c.get("hello"); !ok || n != 3 {
		t.Fatalf("get = %d, %v", n, ok)
	}
	// The entry is the hash, length and count: the text itself may change.
	b := []byte(text)
	copy(b[3:8], "jelly")
	if _, ok := c.get(string(b[3:8])); ok {
		t.Fatal("another piece of the same length hit")
	}
	// The same hash with another length is a miss (an entry forged with
	// hello's tag and the length 6).
	slot := &c.slots[maphash.String(c.seed, "hello")&(cacheSlots-1)]
	e := slot.Load()
	slot.Store(e&^(pieceMask<<pieceBits) | 6<<pieceBits)
	if _, ok := c.get("hello"); ok {
		t.Fatal("hit with another length")
	}
	slot.Store(e)
	// A piece that hashes to the same slot replaces the old one.
	index := func(k string) uint64 { return maphash.String(c.seed, k) & (cacheSlots - 1) }
	var other string
	for i := 0; other == ""; i++ {
		// Keys from an unbounded counter: a periodic family of keys may
		// never reach the slot (this looped forever about 2% of runs).
		if k := "k" + strconv.Itoa(i); index(k) == index("hello") {
			other = k
		}
	}
	// The longest piece with the largest count fits its entry.
	long := strings.Repeat("q", maxCachedPiece)
	c.put(long, maxCachedPiece)
	if n, ok := c.get(long); !ok || n != maxCachedPiece {
		t.Fatalf("get(long) = %d, %v", n, ok)
	}
	c.put(other, 5)
	if _, ok := c.get("hello"); ok {
		t.Fatal("colliding put did not evict")
	}
	if n, ok := c.get(other); !ok || n != 5 {
		t.Fatalf("get(other) = %d, %v", n, ok)
	}
}

// TestCacheIsTransparent counts the same multi-token words with a warm and a
// cold cache, concurrently, and expects the same answers.
func TestCacheIsTransparent(t *testing.T) {
	tok, err := Get("cl100k_base")
	if err != nil {
		t.Fatal(err)
	}
	words := []string{" antidisestablishment", " floccinaucinihilipilification", " zyzzyva", "Qwxyz", " éàü"}
	want := make([]int, len(words))
	for i, w := range words {
		cold := *tok.m
		cold.cache = newCountCache()
		want[i] = cold.merge(w, nil)
		if want[i] < 2 {
			t.Fatalf("%q should be several tokens", w)
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 200; k++ {
				i := (k + g) % len(words)
				if n := tok.m.countPiece(words[i]); n != want[i] {
					t.Errorf("countPiece(%q) = %d, want %d", words[i], n, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, ok := tok.m.cache.get(words[0]); !ok || n != want[0] {
		t.Errorf("cache holds %d, %v for %q", n, ok, words[0])
	}
	long := strings.Repeat("qz", maxCachedPiece)
	tok.m.countPiece(long)
	if _, ok := tok.m.cache.get(long); ok {
		t.Error("pieces longer than maxCachedPiece must not be cached")
	}
}

// TestHugePiece counts a piece far too long for tiktoken-go's quadratic
// merge (it would take hours) and checks that the tokens spell it.
func TestHugePiece(t *testing.T) {
	tok, err := Get("cl100k_base")
	if err != nil {
		t.Fatal(err)
	}
	dec := make(map[int]string, tok.m.ranks.len())
	tok.m.ranks.each(func(tok string, r int32) { dec[int(r)] = tok })
	for _, s := range []string{strings.Repeat("a", 1<<18), strings.Repeat("xyzzy", 1<<15)} {
		ids := tok.Encode(s)
		if n := tok.Count(s); n != len(ids) || n < len(s)/128 {
			t.Fatalf("Count = %d, len(Encode) = %d", n, len(ids))
		}
		var sb strings.Builder
		for _, id := range ids {
			sb.WriteString(dec[id])
		}
		if sb.String() != s {
			t.Fatal("tokens do not spell the piece")
		}
	}
}

// TestTextCache: a long text is counted once and then answered from the
// cache; a different text of the same length is not mistaken for it; short
// texts are not kept.
func TestTextCache(t *testing.T) {
	tok, err := Get("cl100k_base")
	if err != nil {
		t.Fatal(err)
	}
	c := tok.m.texts
	text := strings.Repeat("hello world, ", 40)
	same := strings.Repeat("helloworld,  ", 40) // same length, other tokens
	if len(text) != len(same) || len(text) < TextCacheMin {
		t.Fatal("bad fixture")
	}
	want, wantSame := tok.count(text), tok.count(same)
	if want == wantSame {
		t.Fatal("fixtures should count differently")
	}
	if got := tok.Count(text); got != want {
		t.Fatalf("Count = %d, want %d", got, want)
	}
	h := maphash.String(c.seed, text)
	if n, ok := c.get(h, len(text)); !ok || n != want {
		t.Fatalf("cache holds %d, %v", n, ok)
	}
	// A hit is what Count returns: plant a wrong count to see it used.
	c.put(h, len(text), want+7)
	if got := tok.Count(text); got != want+7 {
		t.Fatalf("Count after planting = %d, want the cached %d", got, want+7)
	}
	c.put(h, len(text), want)
	if got := tok.Count(same); got != wantSame {
		t.Fatalf("Count(same length) = %d, want %d", got, wantSame)
	}
	// The same hash with another length is a miss.
	if _, ok := c.get(h, len(text)+1); ok {
		t.Fatal("hit with another length")
	}
	// CountOnce neither keeps a text nor answers from the cache.
	once := strings.Repeat("generated text, ", 40)
	if got, want := tok.CountOnce(once), tok.count(once); got != want {
		t.Fatalf("CountOnce = %d, want %d", got, want)
	}
	if _, ok := c.get(maphash.String(c.seed, once), len(once)); ok {
		t.Fatal("CountOnce kept its text")
	}
	c.put(h, len(text), want+7)
	if got := tok.CountOnce(text); got != want {
		t.Fatalf("CountOnce = %d from the cache, want %d", got, want)
	}
	c.put(h, len(text), want)
	// Two puts to one slot racing can leave one's check word with the
	// other's value: neither text hits then.
	h2 := h + textCacheSlots // another hash, the same slot
	c.put(h2, len(text)+1, want+1)
	slot := &c.slots[h&(textCacheSlots-1)]
	slot.check.Store(h ^ textVal(len(text), want))
	if _, ok := c.get(h2, len(text)+1); ok {
		t.Fatal("torn slot hit the second text")
	}
	slot.check.Store(h2 ^ textVal(len(text)+1, want+1))
	slot.val.Store(textVal(len(text), want))
	if _, ok := c.get(h, len(text)); ok {
		t.Fatal("torn slot hit the first text")
	}
	// Lengths and counts past 32 bits are not kept (truncated, they would
	// answer for another length, or with a wrong count).
	slot.check.Store(0)
	slot.val.Store(0)
	c.put(h, 1<<32+len(text), want)
	if _, ok := c.get(h, len(text)); ok {
		t.Fatal("a text of 4 GiB and more was kept")
	}
	c.put(h, len(text), 1<<32+want)
	if _, ok := c.get(h, len(text)); ok {
		t.Fatal("a count of 2^32 and more was kept")
	}
	c.put(h, len(text), want)
	short := strings.Repeat("x", TextCacheMin-1)
	tok.Count(short)
	if _, ok := c.get(maphash.String(c.seed, short), len(short)); ok {
		t.Fatal("a text under TextCacheMin was kept")
	}
}

// TestShortCache checks that the short-piece cache holds pieces exactly
// (bytes and length, zero bytes included), that a colliding piece evicts
// the old one, and that counting through it agrees with counting without.
func TestShortCache(t *testing.T) {
	c := &shortCache{}
	for _, p := range []string{"ab", "ab\x00", "\x00ab", "abcdefg", "\xff\xff\xff\xff\xff\xff\xff"} {
		if _, ok := c.get(shortKey(p)); ok {
			t.Fatalf("%q: hit in an empty cache", p)
		}
	}
	c.put(shortKey("ab"), 1)
	c.put(shortKey("abcdefg"), 7)
	c.put(shortKey("\xff\xff\xff\xff\xff\xff\xff"), 7)
	for p, want := range map[string]int{"ab": 1, "abcdefg": 7, "\xff\xff\xff\xff\xff\xff\xff": 7} {
		if n, ok := c.get(shortKey(p)); !ok || n != want {
			t.Errorf("get(%q) = %d, %v; want %d", p, n, ok, want)
		}
	}
	// Pieces that differ only by a zero byte are different keys.
	if shortKey("ab") == shortKey("ab\x00") || shortKey("ab") == shortKey("\x00ab") {
		t.Fatal("a zero byte does not change the key")
	}
	if _, ok := c.get(shortKey("ab\x00")); ok {
		t.Error(`"ab\x00" hit "ab"'s entry`)
	}
	// A piece in the same slot replaces the old one.
	var other string
	for i := 0; other == ""; i++ {
		if k := "k" + strconv.Itoa(i); c.slot(shortKey(k)) == c.slot(shortKey("ab")) {
			other = k
		}
	}
	c.put(shortKey(other), 2)
	if _, ok := c.get(shortKey("ab")); ok {
		t.Fatal("colliding put did not evict")
	}
	if n, ok := c.get(shortKey(other)); !ok || n != 2 {
		t.Fatalf("get(%q) = %d, %v", other, n, ok)
	}

	// Through a model: short pieces, tokens and merged ones, counted on
	// several goroutines, twice (the second time from the cache), agree with
	// the merge.
	tok, err := Get("cl100k_base")
	if err != nil {
		t.Fatal(err)
	}
	pieces := []string{" the", "ing", " a", "Qwxyz", " éàü", "zzzzzzz", "\x00\x00", " 1234", "\t\t\t"}
	want := make([]int, len(pieces))
	for i, p := range pieces {
		want[i] = tok.m.merge(p, nil)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 2*len(pieces); k++ {
				i := (k + g) % len(pieces)
				if n := tok.m.countPiece(pieces[i]); n != want[i] {
					t.Errorf("countPiece(%q) = %d, want %d", pieces[i], n, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, ok := tok.m.short.get(shortKey("Qwxyz")); !ok || n != want[3] || n < 2 {
		t.Errorf("short cache holds %d, %v for a piece of %d tokens", n, ok, want[3])
	}
}
