package store

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// entries returns the records bucket's entries as parsed, checking the
// invariant that keeps records in order: each entry decodes and every
// record of it sorts before the next entry's key.
func entries(t *testing.T, s *Store) (keys [][]byte, counts []int) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		var prev []stored
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			recs, err := parseEntry(nil, k, v)
			if err != nil {
				t.Fatalf("entry %x: %v", k, err)
			}
			if len(prev) > 0 && bytes.Compare(prev[len(prev)-1].key, k) >= 0 {
				t.Fatalf("entry %x: the entry before ends at %x", k, prev[len(prev)-1].key)
			}
			prev = recs
			keys = append(keys, bytes.Clone(k))
			counts = append(counts, len(recs))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, counts
}

// allRecords reads every record through Records, page by page.
func allRecords(t *testing.T, s *Store, q RecordQuery) []Record {
	t.Helper()
	var got []Record
	for {
		page, next, err := s.Records(q)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			return got
		}
		q.Cursor = next
	}
}

// Commits the way a gate makes them: each second's records, most of them
// later than every stored one, some (requests that started before the last
// commit's newest record) earlier, a few much earlier (long streams). The
// records share entries, and every read returns each record once, in order.
func TestBlocksKeepRecordsInOrder(t *testing.T) {
	s := newStore(t)
	r := rand.New(rand.NewPCG(7, 8))
	var want []Record // in commit order, as sequence numbers go
	now := t0
	for range 200 {
		n := r.IntN(60)
		batch := make([]Record, n)
		for i := range batch {
			start := now.Add(-time.Duration(r.Int64N(int64(1500 * time.Millisecond))))
			if r.IntN(20) == 0 {
				start = now.Add(-time.Duration(r.Int64N(int64(10 * time.Minute))))
			}
			batch[i] = Record{Time: start, User: []string{"alice", "bob"}[r.IntN(2)], Model: "m", Endpoint: "/v1/chat/completions",
				Status: 200, PromptTokens: r.Int64N(100), CompletionTokens: int64(len(want) + i)}
		}
		if err := s.Commit(&Batch{Records: batch}); err != nil {
			t.Fatal(err)
		}
		want = append(want, batch...)
		now = now.Add(time.Second)
	}
	keys, counts := entries(t, s)
	total := 0
	for _, c := range counts {
		total += c
	}
	if total != len(want) {
		t.Fatalf("entries hold %d records, %d committed", total, len(want))
	}
	if len(keys) > len(want)/8 {
		t.Errorf("%d records in %d entries: not in blocks", len(want), len(keys))
	}

	order := make([]int, len(want)) // newest first, later sequence first
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := want[b].Time.Compare(want[a].Time); c != 0 {
			return c
		}
		return b - a
	})
	for _, q := range []RecordQuery{
		{Limit: 1000}, {Limit: 7}, {Limit: 1}, {User: "bob", Limit: 13},
		{Since: t0.Add(30 * time.Second), Until: t0.Add(90 * time.Second), Limit: 5},
	} {
		var exp []Record
		for _, i := range order {
			w := want[i]
			if (q.User == "" || w.User == q.User) && (q.Since.IsZero() || !w.Time.Before(q.Since)) &&
				(q.Until.IsZero() || w.Time.Before(q.Until)) {
				w.Time = w.Time.UTC()
				exp = append(exp, w)
			}
		}
		got := allRecords(t, s, q)
		if !slices.Equal(got, exp) {
			t.Errorf("%+v: %d records, want %d (or another order)", q, len(got), len(exp))
		}
	}
}

// One record per entry, as builds before schema 4 wrote them: they read as
// blocks of one, late records merge into them and Prune cuts through them.
func TestBlocksReadOneRecordEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var old []Record
	err = s.db.Update(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRecords)
		for i := range 10 {
			rec := Record{Time: t0.Add(time.Duration(2*i) * time.Second), User: "alice", Model: "m", Endpoint: "/v1/completions", Status: 200, PromptTokens: int64(i)}
			old = append(old, rec)
			if err := rb.Put(recordKey(nil, timeNanos(rec.Time), uint64(i+1)), appendRecord(nil, &rec)); err != nil {
				return err
			}
		}
		return rb.SetSequence(10)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Late ones, odd seconds between the old ones.
	var late []Record
	for i := range 9 {
		late = append(late, Record{Time: t0.Add(time.Duration(2*i+1) * time.Second), User: "bob", Model: "m", Endpoint: "/v1/completions", Status: 200, PromptTokens: 100 + int64(i)})
	}
	if err := s.Commit(&Batch{Records: late}); err != nil {
		t.Fatal(err)
	}
	got := allRecords(t, s, RecordQuery{Limit: 4})
	if len(got) != 19 {
		t.Fatalf("%d records, want 19", len(got))
	}
	for i, rec := range got {
		if want := t0.Add(time.Duration(18-i) * time.Second); !rec.Time.Equal(want) {
			t.Fatalf("record %d at %v, want %v", i, rec.Time, want)
		}
	}
	entries(t, s)

	n, err := s.Prune(t0.Add(5 * time.Second))
	if err != nil || n != 5 {
		t.Fatalf("Prune = %d, %v; want 5", n, err)
	}
	got = allRecords(t, s, RecordQuery{})
	if len(got) != 14 || !got[len(got)-1].Time.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("after Prune: %d records, the oldest at %v", len(got), got[len(got)-1].Time)
	}
	entries(t, s)
}

// Prune through the middle of a block keeps the block's later records,
// under the key of the first of them.
func TestPruneCutsABlock(t *testing.T) {
	s := newStore(t)
	var recs []Record
	for i := range 20 {
		recs = append(recs, Record{Time: t0.Add(time.Duration(i) * time.Second), User: "alice", Model: "m", Endpoint: "/v1/x", Status: 200})
	}
	if err := s.Commit(&Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	if keys, _ := entries(t, s); len(keys) != 1 {
		t.Fatalf("20 records in %d entries, want 1", len(keys))
	}
	n, err := s.Prune(t0.Add(7 * time.Second))
	if err != nil || n != 7 {
		t.Fatalf("Prune = %d, %v; want 7", n, err)
	}
	keys, counts := entries(t, s)
	if len(keys) != 1 || counts[0] != 13 || !bytes.Equal(keys[0], recordKey(nil, timeNanos(t0.Add(7*time.Second)), 8)) {
		t.Fatalf("after Prune: entries %x holding %v", keys, counts)
	}
	if got := allRecords(t, s, RecordQuery{}); len(got) != 13 {
		t.Errorf("%d records left, want 13", len(got))
	}
}

// A damaged entry is reported by reads, and does not stop commits: records
// that fall in it, or after it, go to entries of their own.
func TestBlocksDamagedEntry(t *testing.T) {
	s := newStore(t)
	bad := recordKey(nil, timeNanos(t0), 1)
	err := s.db.Update(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRecords)
		if err := rb.SetSequence(1); err != nil {
			return err
		}
		return rb.Put(bad, []byte{blockFormat, 3, 0xff})
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Time: t0.Add(time.Second), User: "alice", Model: "m", Endpoint: "/v1/x", Status: 200}
	late := rec
	late.Time = t0.Add(-time.Second)
	if err := s.Commit(&Batch{Records: []Record{rec, late}}); err != nil {
		t.Fatalf("commit after a damaged entry: %v", err)
	}
	if _, _, err := s.Records(RecordQuery{}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("corrupt")) {
		t.Errorf("Records over a damaged entry: %v", err)
	}
	if got, _, err := s.Records(RecordQuery{Since: t0.Add(time.Second)}); err != nil || len(got) != 1 {
		t.Errorf("Records after the damaged entry: %d, %v", len(got), err)
	}
	if got, _, err := s.Records(RecordQuery{Until: t0}); err != nil || len(got) != 1 {
		t.Errorf("Records before the damaged entry: %d, %v", len(got), err)
	}
	// Prune past it deletes it (one record as far as it can tell) with the
	// record before it, and keeps the one after.
	if n, err := s.Prune(t0.Add(time.Second / 2)); err != nil || n != 2 {
		t.Fatalf("Prune over the damaged entry = %d, %v; want 2", n, err)
	}
	if got, _, err := s.Records(RecordQuery{}); err != nil || len(got) != 1 || !got[0].Time.Equal(rec.Time) {
		t.Errorf("after Prune: %v, %v", got, err)
	}
}

// Blocks stay within half a page, so that two fill one leaf; a record larger
// than that has a block of its own.
func TestBlockSize(t *testing.T) {
	s := newStore(t)
	long := string(bytes.Repeat([]byte("m"), MaxFieldLen))
	var recs []Record
	for i := range 100 {
		model := "m"
		if i%10 == 0 {
			model = long
		}
		recs = append(recs, Record{Time: t0.Add(time.Duration(i) * time.Millisecond), User: "alice", Model: model, Endpoint: "/v1/chat/completions", Status: 200})
	}
	if err := s.Commit(&Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	limit := s.blockBytes
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			recs, _ := parseEntry(nil, k, v)
			if len(v) > limit && len(recs) > 1 || len(recs) > blockRecords {
				t.Errorf("entry %x: %d bytes, %d records (limits %d bytes, %d records)", k, len(v), len(recs), limit, blockRecords)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := allRecords(t, s, RecordQuery{}); len(got) != 100 {
		t.Errorf("%d records, want 100", len(got))
	}
}

func FuzzParseEntry(f *testing.F) {
	r := Record{Time: t0, User: "alice", Model: "m", Endpoint: "/v1/x", Status: 200}
	k1, k2 := recordKey(nil, timeNanos(t0), 1), recordKey(nil, timeNanos(t0), 2)
	v := appendRecord(nil, &r)
	f.Add(k1, appendBlock(nil, []stored{{k1, v}, {k2, v}}))
	f.Add(k1, v)
	f.Add(k1, []byte{blockFormat, 1})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		recs, err := parseEntry(nil, k, v)
		if err != nil {
			return
		}
		if !bytes.Equal(recs[0].key, k) {
			t.Fatalf("first record %x under key %x", recs[0].key, k)
		}
		if v[0] == blockFormat && !bytes.Equal(appendBlock(nil, recs), v) {
			t.Fatalf("block does not encode back to itself")
		}
	})
}
