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
