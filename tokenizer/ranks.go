package tokenizer

import (
	"fmt"
	"hash/maphash"
	"math/bits"
)

// rankTable maps a token's bytes to its rank (= id). It replaces a
// map[string]int32, whose 100–200 thousand string keys the garbage collector
// would mark on every cycle of the process, for every request Caddy serves:
// here the tokens' bytes are one string and the table is an array of
// integers, open-addressed with linear probing at a load of at most one
// half. An entry packs the token's place in that string, its length, its
// rank and 12 more bits of its hash, so a probe rarely reads token bytes
// that do not match.
type rankTable struct {
	seed  maphash.Seed
	all   string   // every token's bytes, one after the other
	slots []uint64 // entries; 0 is an empty slot
	mask  uint64
	n     int
}

// Layout of an entry, from the low bits: where the token starts in all, its
// rank, its length (never 0, so no entry is 0), and the top bits of its
// hash.
const (
	rankStartBits = 24
	rankBits      = 20
	rankLenBits   = 8
	rankTagShift  = rankStartBits + rankBits + rankLenBits // 52
)

// tokenSpan is a token's bytes, all[start:end], and its rank.
type tokenSpan struct{ start, end, rank int }

// newRankTable builds the table of the tokens spans cut from all. Tokens
// must be distinct.
func newRankTable(all string, spans []tokenSpan) (*rankTable, error) {
	if len(all) >= 1<<rankStartBits {
		return nil, fmt.Errorf("%d bytes of tokens, more than a rank table holds", len(all))
	}
	size := 1 << bits.Len(uint(2*len(spans))) // at least twice the entries
	t := &rankTable{seed: maphash.MakeSeed(), all: all, slots: make([]uint64, size), mask: uint64(size - 1)}
	for i, sp := range spans {
		start, n, rank := sp.start, sp.end-sp.start, sp.rank
		if n < 1 || n >= 1<<rankLenBits || rank < 0 || rank >= 1<<rankBits {
			return nil, fmt.Errorf("token %d (%d bytes, rank %d) does not fit a rank table", i, n, rank)
		}
		tok := all[start : start+n]
		if _, ok := t.get(tok); ok {
			return nil, fmt.Errorf("token %q appears twice", tok)
		}
		h := maphash.String(t.seed, tok)
		e := h>>rankTagShift<<rankTagShift | uint64(n)<<(rankStartBits+rankBits) | uint64(rank)<<rankStartBits | uint64(start)
		for j := h & t.mask; ; j = (j + 1) & t.mask {
			if t.slots[j] == 0 {
				t.slots[j] = e
				break
			}
		}
		t.n++
	}
	return t, nil
}

// get returns the rank of the token whose bytes are s.
func (t *rankTable) get(s string) (int32, bool) {
	if len(s) >= 1<<rankLenBits { // longer than any token, and than the length field
		return 0, false
	}
	h := maphash.String(t.seed, s)
	// What an entry for s has above its start and rank: its tag and length.
	want := h>>rankTagShift<<rankTagShift | uint64(len(s))<<(rankStartBits+rankBits)
	const high = ^uint64(1<<(rankStartBits+rankBits) - 1)
	for j := h & t.mask; ; j = (j + 1) & t.mask {
		e := t.slots[j]
		if e == 0 {
			return 0, false
		}
		if e&high == want {
			start := int(e & (1<<rankStartBits - 1))
			if t.all[start:start+len(s)] == s {
				return int32(e >> rankStartBits & (1<<rankBits - 1)), true
			}
		}
	}
}

// len is the number of tokens.
func (t *rankTable) len() int { return t.n }

// each calls f with every token and its rank, in no particular order.
func (t *rankTable) each(f func(tok string, rank int32)) {
	for _, e := range t.slots {
		if e == 0 {
			continue
		}
		start, n := int(e&(1<<rankStartBits-1)), int(e>>(rankStartBits+rankBits)&(1<<rankLenBits-1))
		f(t.all[start:start+n], int32(e>>rankStartBits&(1<<rankBits-1)))
	}
}
