package store

import (
	"bytes"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// The journal keeps what commits change in the counters and agg buckets as
// values of half a page or less appended at its end (a commit's under
// consecutive keys, each decoding on its own), and folds it into those
// buckets every foldEvery commits. Those buckets are keyed by user: with
// many users, each commit's puts land on most of their pages, and bbolt
// rewrites (and writes to disk) every page a commit touches. Appending a
// commit's changes costs its own bytes at the end of a bucket; a fold writes
// each user's latest state and summed deltas once for many commits.
//
// Readers see the journal as if it were folded: Usage adds the deltas of the
// entries it reads in the same transaction as the aggregates, and
// LoadCounters answers from the Store's copy of the journal's latest
// counters. Open folds what a previous process left, Close what is left.

// Journal values start with journalFormat; see encodeJournal.
const journalFormat = 1

// foldEvery and foldBytes bound the journal: a commit that brings it to
// foldEvery entries or foldBytes bytes folds it. Variables for tests.
var (
	foldEvery = 16
	foldBytes = 8 << 20
)

// encodeJournal encodes one commit's counters (an empty state deletes) and
// aggregate deltas as journal values of at most limit bytes each (but for a
// counter or delta larger alone, which takes a value of its own), returned
// end to end in one buffer with the offset where each ends. A value is
// format byte; count, then user and state per counter; count, then key and
// the five sums per delta. The counters come first, in users' order, then
// the deltas; every value decodes on its own.
//
// Values of a page's half or less keep a commit from rewriting the
// commits before it: bbolt rewrites a leaf whole when a put lands in it, and
// never splits a leaf of four entries or fewer, so one value per commit (half
// a megabyte with 3,000 users) shared its leaf with the three or so before
// it, and a commit wrote three to five times its own bytes.
func encodeJournal(counters map[string][]byte, users []string, deltas []aggDelta, limit int) ([]byte, []int) {
	size := func(i int) int {
		if i < len(users) {
			u := users[i]
			st := counters[u]
			return uvarintLen(uint64(len(u))) + len(u) + uvarintLen(uint64(len(st))) + len(st)
		}
		d := &deltas[i-len(users)]
		return uvarintLen(uint64(len(d.key))) + len(d.key) + d.sums.size()
	}
	// Where each value's items end, and the bytes they take.
	const header = 1 + 2*binary.MaxVarintLen32
	n := len(users) + len(deltas)
	var cuts []int
	total, used := 0, 0
	for i := range n {
		sz := size(i)
		if used > 0 && header+used+sz > limit {
			cuts = append(cuts, i)
			used = 0
		}
		used += sz
		total += sz
	}
	cuts = append(cuts, n)

	e := encoder{b: make([]byte, 0, total+len(cuts)*header)}
	ends := make([]int, 0, len(cuts))
	from := 0
	for _, to := range cuts {
		cFrom, cTo := min(from, len(users)), min(to, len(users))
		dFrom, dTo := max(from, len(users))-len(users), max(to, len(users))-len(users)
		e.byte(journalFormat)
		e.uvarint(uint64(cTo - cFrom))
		for _, u := range users[cFrom:cTo] {
			e.str(u)
			e.uvarint(uint64(len(counters[u])))
			e.b = append(e.b, counters[u]...)
		}
		e.uvarint(uint64(dTo - dFrom))
		for i := dFrom; i < dTo; i++ {
			d := &deltas[i]
			e.uvarint(uint64(len(d.key)))
			e.b = append(e.b, d.key...)
			e.b = d.sums.append(e.b)
		}
		ends = append(ends, len(e.b))
		from = to
	}
	return e.b, ends
}

// journalValues calls f with each of the values encodeJournal returned.
func journalValues(buf []byte, ends []int, f func(v []byte) error) error {
	start := 0
	for _, end := range ends {
		if err := f(buf[start:end:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// decodeJournal calls counter and delta for each part of a journal value in
// order. The slices they get point into v. A value that does not decode is
// errCorrupt, and nothing of it is passed on.
func decodeJournal(v []byte, counter func(user []byte, state []byte), delta func(key []byte, s *sums)) error {
	// Check the whole value first, so a damaged one changes nothing.
	if err := walkJournal(v, nil, nil); err != nil {
		return err
	}
	return walkJournal(v, counter, delta)
}

func walkJournal(v []byte, counter func(user []byte, state []byte), delta func([]byte, *sums)) error {
	d := decoder{b: v}
	if d.byte() != journalFormat {
		return errCorrupt
	}
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		user := d.bytes()
		state := d.bytes()
		if counter != nil && d.err == nil {
			counter(user, state)
		}
	}
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		key := d.bytes()
		var s sums
		s.requests, s.prompt, s.completion, s.cached, s.estimated = d.int64(), d.int64(), d.int64(), d.int64(), d.int64()
		if delta != nil && d.err == nil {
			delta(key, &s)
		}
	}
	return d.done()
}

// journalPut appends one commit's values (buf, ends: see encodeJournal) to
// the journal and folds it when it has grown to foldEvery commits or
// foldBytes bytes. It reports whether it folded.
func journalPut(tx *bolt.Tx, buf []byte, ends []int, commits, size int) (folded bool, err error) {
	jb := tx.Bucket(bucketJournal)
	keys := make([]byte, 0, 8*len(ends)) // the values' keys, cut from one buffer
	err = journalValues(buf, ends, func(v []byte) error {
		seq, err := jb.NextSequence()
		if err != nil {
			return err
		}
		keys = binary.BigEndian.AppendUint64(keys, seq)
		return jb.Put(keys[len(keys)-8:], v)
	})
	if err != nil {
		return false, err
	}
	if commits+1 < foldEvery && size+len(buf) < foldBytes {
		return false, nil
	}
	return true, fold(tx)
}

// fold applies the journal's entries in order to the counters and agg
// buckets and empties it. Counters of users that no longer exist are
// dropped, so usage racing DeleteUser does not bring them back; an entry
// that does not decode (a damaged file) is dropped.
func fold(tx *bolt.Tx) error {
	jb := tx.Bucket(bucketJournal)
	if k, _ := jb.Cursor().First(); k == nil {
		return nil // empty: Close and DeleteUser mostly find it so
	}
	counters := make(map[string][]byte)
	sumsOf := make(map[string]*sums)
	err := jb.ForEach(func(_, v []byte) error {
		_ = decodeJournal(v, func(user []byte, state []byte) {
			counters[string(user)] = state // later entries win; v lives as long as tx
		}, func(key []byte, s *sums) {
			if t := sumsOf[string(key)]; t != nil {
				t.add(s)
			} else {
				c := *s
				sumsOf[string(key)] = &c
			}
		})
		return nil
	})
	if err != nil {
		return err
	}

	// In key order, so that consecutive puts land on the same or the next
	// leaf, and through one cursor per bucket (seekValue) rather than the
	// one Get makes for every key.
	ab := tx.Bucket(bucketAgg)
	ac := ab.Cursor()
	for _, k := range sortedKeys(sumsOf) {
		sum := decodeSums(seekValue(ac, []byte(k)))
		sum.add(sumsOf[k])
		if err := ab.Put([]byte(k), sum.encode()); err != nil {
			return err
		}
	}
	cb := tx.Bucket(bucketCounters)
	counters, users := existing(tx, counters, sortedKeys(counters))
	for _, user := range users {
		var err error
		if state := counters[user]; len(state) == 0 {
			err = cb.Delete([]byte(user))
		} else {
			err = cb.Put([]byte(user), bytes.Clone(state))
		}
		if err != nil {
			return err
		}
	}
	// Deleting the bucket frees its pages at once, where deleting each key
	// would rewrite them.
	if err := tx.DeleteBucket(bucketJournal); err != nil {
		return err
	}
	_, err = tx.CreateBucket(bucketJournal)
	return err
}

// journalCounters mirrors the counters of the journal's entries, so that
// LoadCounters answers without decoding them. It is updated under the
// Store's jmu after each commit.
type journalCounters struct {
	latest  map[string][]byte
	commits int // whose values the journal holds
	size    int // bytes of their values
}

// committed notes a commit's journal values (buf, ends), which hold the
// states of users in order, or the fold it caused. The states it keeps
// point into buf, which is the Store's own.
func (j *journalCounters) committed(users []string, buf []byte, ends []int, folded bool) {
	if folded {
		j.reset()
		return
	}
	j.commits++
	j.size += len(buf)
	if len(users) == 0 {
		return
	}
	if j.latest == nil {
		j.latest = make(map[string][]byte, len(users))
	}
	i := 0
	_ = journalValues(buf, ends, func(v []byte) error {
		return walkJournal(v, func(_, state []byte) {
			j.latest[users[i]] = state // users[i] is the key: no string per user
			i++
		}, nil)
	})
}

func (j *journalCounters) reset() { *j = journalCounters{} }

// anyDeleted reports whether DeleteUser deleted one of users while this
// Store was open. Under jmu.
func (s *Store) anyDeleted(users []string) bool {
	if len(s.deleted) == 0 {
		return false
	}
	for _, u := range users {
		if _, ok := s.deleted[u]; ok {
			return true
		}
	}
	return false
}

// existing returns counters and users (in their order) kept to the users
// that exist.
func existing(tx *bolt.Tx, counters map[string][]byte, users []string) (map[string][]byte, []string) {
	uc := tx.Bucket(bucketUsers).Cursor()
	kept := make(map[string][]byte, len(counters))
	var names []string
	for _, u := range users {
		if seekValue(uc, []byte(u)) != nil {
			kept[u] = counters[u]
			names = append(names, u)
		}
	}
	return kept, names
}
