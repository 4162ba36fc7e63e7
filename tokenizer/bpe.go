package tokenizer

import "math"

// noRank marks a pair of adjacent parts that does not merge into a token.
const noRank = math.MaxInt32

// smallPiece is the longest piece merged with the quadratic scan; longer
// pieces (long words, digit-free identifiers, runs of one character) use
// the O(n log n) heap so a single huge "word" cannot stall a request.
const smallPiece = 128

// pairRank returns the rank of p[a:b] as one token, or noRank.
func (m *model) pairRank(p string, a, b int32) int32 {
	if int(b-a) > m.maxTokenLen {
		return noRank
	}
	if r, ok := m.ranks.get(p[a:b]); ok {
		return r
	}
	return noRank
}

// merge runs tiktoken's byte-pair merge on piece p (len(p) >= 2): while some
// adjacent pair of parts forms a token, merge the pair with the lowest rank,
// the leftmost one on ties. It returns the number of tokens and, when ids is
// non-nil, appends their ids to it.
func (m *model) merge(p string, ids *[]int) int {
	if len(p) > smallPiece {
		return m.mergeLarge(p, ids)
	}
	// start[k] is where part k begins (start[parts] = len(p)); rank[k] is the
	// rank of part k joined with part k+1.
	var start [smallPiece + 1]int32
	var rank [smallPiece]int32
	parts := len(p)
	for k := 0; k <= parts; k++ {
		start[k] = int32(k)
	}
	for k := 0; k < parts-1; k++ {
		rank[k] = m.pairRank(p, int32(k), int32(k+2))
	}
	for parts > 1 {
		best, at := int32(noRank), -1
		for k := 0; k < parts-1; k++ {
			if rank[k] < best {
				best, at = rank[k], k
			}
		}
		if at < 0 {
			break
		}
		// Part at+1 joins part at: drop its start and its pair rank.
		copy(start[at+1:parts], start[at+2:parts+1])
		copy(rank[at+1:parts-1], rank[at+2:parts])
		parts--
		if at+1 < parts {
			rank[at] = m.pairRank(p, start[at], start[at+2])
		} else {
			rank[at] = noRank
		}
		if at > 0 {
			rank[at-1] = m.pairRank(p, start[at-1], start[at+1])
		}
	}
	if ids != nil {
		for k := 0; k < parts; k++ {
			r, _ := m.ranks.get(p[start[k]:start[k+1]])
			*ids = append(*ids, int(r))
		}
	}
	return parts
}

// mergeLarge is merge for long pieces: parts form a linked list indexed by
// their start offset, and candidate pairs sit in a heap ordered by (rank,
// start), which picks exactly the pair the quadratic scan would. Entries
// whose pair has changed since they were pushed are skipped when popped: a
// pair's rank identifies its bytes, so an entry is current iff its part
// still has that rank (a part merged away gets rank -1). It needs about 20
// bytes per byte of the piece.
func (m *model) mergeLarge(p string, ids *[]int) int {
	n := int32(len(p))
	next := make([]int32, n) // start of the following part; n for the last
	prev := make([]int32, n) // start of the preceding part; -1 for the first
	rank := make([]int32, n) // rank of the part joined with its successor
	h := make(pairHeap, 0, n)
	for k := int32(0); k < n; k++ {
		next[k], prev[k] = k+1, k-1
		rank[k] = noRank
		if k+2 <= n {
			rank[k] = m.pairRank(p, k, k+2)
		}
		if rank[k] != noRank {
			h = append(h, pairEntry{rank[k], k})
		}
	}
	h.init()
	// rerank recomputes the rank of part k with its successor.
	rerank := func(k int32) {
		rank[k] = noRank
		if nx := next[k]; nx < n {
			rank[k] = m.pairRank(p, k, next[nx])
		}
		if rank[k] != noRank {
			h.push(pairEntry{rank[k], k})
		}
	}
	parts := int(n)
	for len(h) > 0 {
		e := h.pop()
		if rank[e.at] != e.rank {
			continue
		}
		gone := next[e.at]
		rank[gone] = -1
		next[e.at] = next[gone]
		if next[gone] < n {
			prev[next[gone]] = e.at
		}
		parts--
		rerank(e.at)
		if pv := prev[e.at]; pv >= 0 {
			rerank(pv)
		}
	}
	if ids != nil {
		for k := int32(0); k < n; k = next[k] {
			r, _ := m.ranks.get(p[k:next[k]])
			*ids = append(*ids, int(r))
		}
	}
	return parts
}

type pairEntry struct {
	rank int32
	at   int32
}

// pairHeap is a binary min-heap of candidate merges by (rank, position),
// typed to avoid container/heap's boxing of every entry.
type pairHeap []pairEntry

func (h pairHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].at < h[j].at
}

func (h pairHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *pairHeap) push(e pairEntry) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
}

func (h *pairHeap) pop() pairEntry {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	*h = q[:last]
	h.down(0)
	return top
}

func (h pairHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
