package store

import (
	"bytes"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// The journal keeps what commits change in the counters and agg buckets
// as one value per commit, appended, and folds it into those buckets every
// foldEvery commits. Those buckets are keyed by user: with many users, each
// commit's puts land on most of their pages, and bbolt rewrites (and writes
// to disk) every page a commit touches. Appending a commit's changes costs
// one value at the end of a bucket; a fold writes each user's latest state
// and summed deltas once for many commits.
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
// aggregate deltas: format byte; count, then user and state per counter;
// count, then key and the five sums per delta.
func encodeJournal(counters map[string][]byte, users []string, deltas []aggDelta) []byte {
	size := 1 + 2*binary.MaxVarintLen64
	for _, u := range users {
		size += 2*binary.MaxVarintLen64 + len(u) + len(counters[u])
	}
	for i := range deltas {
		size += 6*binary.MaxVarintLen64 + len(deltas[i].key)
	}
	e := encoder{b: make([]byte, 0, size)}
	e.byte(journalFormat)
	e.uvarint(uint64(len(users)))
	for _, u := range users {
		e.str(u)
		e.uvarint(uint64(len(counters[u])))
		e.b = append(e.b, counters[u]...)
	}
	e.uvarint(uint64(len(deltas)))
	for i := range deltas {
		d := &deltas[i]
		e.uvarint(uint64(len(d.key)))
		e.b = append(e.b, d.key...)
		e.b = d.sums.append(e.b)
	}
	return e.b
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

// journalPut appends value to the journal and folds it when it has grown to
// foldEvery entries or foldBytes bytes. It reports whether it folded.
func journalPut(tx *bolt.Tx, value []byte, entries, size int) (folded bool, err error) {
	jb := tx.Bucket(bucketJournal)
	seq, err := jb.NextSequence()
	if err != nil {
		return false, err
	}
	if err := jb.Put(binary.BigEndian.AppendUint64(nil, seq), value); err != nil {
		return false, err
	}
	if entries+1 < foldEvery && size+len(value) < foldBytes {
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

	// In key order, through one cursor per bucket (see Commit).
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
	entries int // in the journal
	size    int // bytes of their values
}

// committed notes a commit's journal entry, value, which holds the states
// of users in order, or the fold it caused. The states it keeps point into
// value, which is the Store's own.
func (j *journalCounters) committed(users []string, value []byte, folded bool) {
	if folded {
		j.reset()
		return
	}
	j.entries++
	j.size += len(value)
	if len(users) == 0 {
		return
	}
	if j.latest == nil {
		j.latest = make(map[string][]byte, len(users))
	}
	i := 0
	_ = walkJournal(value, func(_, state []byte) {
		j.latest[users[i]] = state // users[i] is the key: no string per user
		i++
	}, nil)
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
