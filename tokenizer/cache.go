package tokenizer

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// cacheSlots is the number of entries a countCache holds (a power of two).
const cacheSlots = 1 << 15

// maxCachedPiece is the longest piece the cache stores: longer pieces are
// rare in natural text and would make the cache's memory less predictable.
const maxCachedPiece = 48

// countCache remembers the token counts of pieces that are not tokens
// themselves, so words that recur in a text (or across requests) are merged
// only once. It is a lossy direct-mapped table: a piece lives in the slot its
// hash picks and a colliding piece simply replaces it. That bounds memory
// (cacheSlots entries of at most maxCachedPiece bytes, about 3 MiB) and makes
// both lookup and insert a single lock-free atomic operation.
type countCache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	piece string
	n     int
}

func newCountCache() *countCache { return &countCache{seed: maphash.MakeSeed()} }

func (c *countCache) slot(piece string) *atomic.Pointer[cacheEntry] {
	return &c.slots[maphash.String(c.seed, piece)&(cacheSlots-1)]
}

// get returns the cached count of piece.
func (c *countCache) get(piece string) (int, bool) {
	if e := c.slot(piece).Load(); e != nil && e.piece == piece {
		return e.n, true
	}
	return 0, false
}

// put records piece's count. The piece is copied so the cache never pins the
// (possibly huge) text it was cut from.
func (c *countCache) put(piece string, n int) {
	c.slot(piece).Store(&cacheEntry{piece: strings.Clone(piece), n: n})
}

// TextCacheMin is the shortest text whose count Count keeps whole. A lookup
// is one hash of the text and two memory reads; counting even a short message
// piece by piece reads the ranks and the piece cache for every word (about
// 1 µs for 80 bytes here, 40× a lookup).
const TextCacheMin = 64

// textCacheSlots is the number of entries a textCache holds (a power of two).
const textCacheSlots = 1 << 14

// textCache remembers the counts of whole texts (chat messages, system
// prompts, documents, tool definitions) so that a conversation resending its
// history, or an agent resending its context and tools, has each text
// counted once rather than on every request. It keeps no text: an entry is
// the text's length, its 64-bit seeded hash and its count, so a false hit
// needs two texts of the same length with the same hash. Like countCache it
// is a lossy direct-mapped table of lock-free slots (about 512 KiB when
// full).
type textCache struct {
	seed  maphash.Seed
	slots [textCacheSlots]atomic.Pointer[textEntry]
}

type textEntry struct {
	hash    uint64
	size, n int
}

func newTextCache() *textCache { return &textCache{seed: maphash.MakeSeed()} }

// get returns the cached count of the text of length size and hash h.
func (c *textCache) get(h uint64, size int) (int, bool) {
	if e := c.slots[h&(textCacheSlots-1)].Load(); e != nil && e.hash == h && e.size == size {
		return e.n, true
	}
	return 0, false
}

// put records the count of the text of length size and hash h.
func (c *textCache) put(h uint64, size, n int) {
	c.slots[h&(textCacheSlots-1)].Store(&textEntry{hash: h, size: size, n: n})
}
