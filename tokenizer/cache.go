package tokenizer

import (
	"hash/maphash"
	"math"
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
// hash picks and a colliding piece simply replaces it. An entry is one word
// holding the piece's 64-bit seeded hash (the bits the slot index does not
// already fix), its length and its count, so the table keeps no text, never
// allocates, holds nothing the garbage collector has to mark, and stays at
// 256 KiB; lookup and insert are each one atomic load or store. A false hit
// needs two pieces of the same length with the same 64-bit hash.
type countCache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Uint64
}

// Layout of a countCache entry: the hash's top 52 bits, then the piece's
// length and its count in 6 bits each (both at most maxCachedPiece). A
// count is never 0 (a piece is at least one token), so 0 is an empty slot.
const (
	pieceBits = 6
	pieceMask = 1<<pieceBits - 1
	pieceTag  = ^uint64(1<<(2*pieceBits) - 1)
)

// Compile-time checks: a length fits its field, and the slot index covers
// the hash bits the tag leaves out.
const (
	_ uint = pieceMask - maxCachedPiece
	_ uint = cacheSlots - 1<<(2*pieceBits)
)

func newCountCache() *countCache { return &countCache{seed: maphash.MakeSeed()} }

// get returns the cached count of piece.
func (c *countCache) get(piece string) (int, bool) {
	h := maphash.String(c.seed, piece)
	e := c.slots[h&(cacheSlots-1)].Load()
	if e != 0 && e&pieceTag == h&pieceTag && int(e>>pieceBits&pieceMask) == len(piece) {
		return int(e & pieceMask), true
	}
	return 0, false
}

// put records piece's count (1 to maxCachedPiece, as is its length).
func (c *countCache) put(piece string, n int) {
	h := maphash.String(c.seed, piece)
	c.slots[h&(cacheSlots-1)].Store(h&pieceTag | uint64(len(piece))<<pieceBits | uint64(n))
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
// the text's 64-bit seeded hash, its length and its count, so a false hit
// needs two texts of the same length with the same hash. Like countCache it
// is a lossy direct-mapped table of lock-free slots, pointer-free and fixed
// at 256 KiB.
//
// A slot is two words, written one after the other with no lock: the first
// holds the hash XOR the second (length and count). A reader that sees one
// entry's first word with another's second gets a check that fails, and a
// miss, unless the two hashes differ by exactly the XOR of the two
// length-and-count words: as unlikely as any other false hit.
type textCache struct {
	seed  maphash.Seed
	slots [textCacheSlots]textSlot
}

type textSlot struct{ check, val atomic.Uint64 }

func newTextCache() *textCache { return &textCache{seed: maphash.MakeSeed()} }

// textVal packs a text's length and count, each below 2^32; 0 is an empty
// slot (the cache holds texts of TextCacheMin bytes or more).
func textVal(size, n int) uint64 { return uint64(uint32(size))<<32 | uint64(uint32(n)) }

// get returns the cached count of the text of length size and hash h.
func (c *textCache) get(h uint64, size int) (int, bool) {
	s := &c.slots[h&(textCacheSlots-1)]
	v := s.val.Load()
	if v != 0 && v>>32 == uint64(size) && s.check.Load()^v == h {
		return int(uint32(v)), true
	}
	return 0, false
}

// put records the count of the text of length size and hash h. Texts of
// 4 GiB or more, or counts that large, are not kept.
func (c *textCache) put(h uint64, size, n int) {
	if uint64(size) > math.MaxUint32 || uint64(n) > math.MaxUint32 {
		return
	}
	s := &c.slots[h&(textCacheSlots-1)]
	v := textVal(size, n)
	s.check.Store(h ^ v)
	s.val.Store(v)
}

// shortPieceMax is the longest piece a shortCache holds: its bytes, its
// length and its count fit one word.
const shortPieceMax = 7

// shortSlots is the number of entries of a shortCache: 64 KiB, which stays
// in a core's L2 cache between requests.
const (
	shortBits  = 13
	shortSlots = 1 << shortBits
)

// shortCache remembers the counts of short pieces (" the", " and", "ing"),
// most of the pieces of any text, whether tokens themselves or merged from
// several. Without it a short piece costs a hash and a probe of the rank
// table, megabytes that under load are rarely still in a core's cache when
// the next request comes: two misses per word. An entry holds the piece
// itself, so a hit is exact, never a hash match: bytes in the low 56 bits,
// then the length (1 to 7; 0 is an empty slot) and the count (1 to 7, a
// piece has no more tokens than bytes), read and written as one atomic word.
// A colliding piece replaces the one in its slot.
type shortCache struct {
	slots [shortSlots]atomic.Uint64
}

const (
	shortLenShift   = 56
	shortCountShift = 59
	shortKeyMask    = 1<<shortCountShift - 1 // bytes and length
)

// shortKey packs a piece of 1 to shortPieceMax bytes with its length.
func shortKey(p string) uint64 {
	k := uint64(len(p)) << shortLenShift
	for i := 0; i < len(p); i++ {
		k |= uint64(p[i]) << (8 * i)
	}
	return k
}

// slot picks a key's slot by Fibonacci hashing: a multiply and a shift.
func (c *shortCache) slot(k uint64) *atomic.Uint64 {
	return &c.slots[(k*0x9E3779B97F4A7C15)>>(64-shortBits)]
}

// get returns the count of the piece whose shortKey is k.
func (c *shortCache) get(k uint64) (int, bool) {
	e := c.slot(k).Load()
	if e&shortKeyMask == k {
		return int(e >> shortCountShift), true
	}
	return 0, false
}

// put records the count n (1 to shortPieceMax) of the piece whose shortKey
// is k.
func (c *shortCache) put(k uint64, n int) {
	c.slot(k).Store(k | uint64(n)<<shortCountShift)
}
