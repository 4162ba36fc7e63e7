package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// journalLen is how many entries the journal holds.
func journalLen(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketJournal).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// rawCounters reads the counters bucket, bypassing the journal.
func rawCounters(t *testing.T, s *Store, user string) []byte {
	t.Helper()
	var v []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		v = append(v, tx.Bucket(bucketCounters).Get([]byte(user))...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// wantFolded checks that the journal is empty and the counters bucket holds
// user's one-byte state want.
func wantFolded(t *testing.T, s *Store, user string, want byte) {
	t.Helper()
	if n := journalLen(t, s); n != 0 {
		t.Errorf("journal holds %d entries, want it folded", n)
	}
	if c := rawCounters(t, s, user); len(c) != 1 || c[0] != want {
		t.Errorf("counters bucket holds %v for %s, want [%d]", c, user, want)
	}
}

// openAt opens the store file at path; the caller closes it.
func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func setFoldEvery(t *testing.T, n int) {
	old := foldEvery
	foldEvery = n
	t.Cleanup(func() { foldEvery = old })
}

// journalBatches commits three batches over two hours, two users and two
// models, alice's counters changing each time.
func journalBatches(t *testing.T, s *Store) {
	t.Helper()
	for _, id := range []string{"alice", "bob"} {
		if err := s.PutUser(&User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	batches := []Batch{
		{Records: []Record{
			{Time: t0, User: "alice", Model: "m1", Status: 200, PromptTokens: 10, CompletionTokens: 1},
			{Time: t0, User: "bob", Model: "m2", Status: 200, PromptTokens: 20, CompletionTokens: 2},
		}, Counters: map[string][]byte{"alice": {1}, "bob": {7}}},
		{Records: []Record{
			{Time: t0.Add(time.Minute), User: "alice", Model: "m1", Status: 200, PromptTokens: 100, CompletionTokens: 10, Estimated: true},
		}, Counters: map[string][]byte{"alice": {2}}},
		{Records: []Record{
			{Time: t0.Add(time.Hour), User: "alice", Model: "m2", Status: 200, PromptTokens: 1000, CompletionTokens: 100},
		}, Counters: map[string][]byte{"alice": {3}}},
	}
	for i := range batches {
		if err := s.Commit(&batches[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// checkJournalBatches checks what journalBatches committed, through every
// reader of counters and aggregates.
func checkJournalBatches(t *testing.T, s *Store) {
	t.Helper()
	hour := t0.Truncate(time.Hour)
	for _, c := range []struct {
		q    UsageQuery
		want []UsageRow
	}{
		{UsageQuery{GroupBy: []string{"user", "model"}}, []UsageRow{
			{User: "alice", Model: "m1", Requests: 2, PromptTokens: 110, CompletionTokens: 11, TotalTokens: 121, EstimatedRequests: 1},
			{User: "alice", Model: "m2", Requests: 1, PromptTokens: 1000, CompletionTokens: 100, TotalTokens: 1100},
			{User: "bob", Model: "m2", Requests: 1, PromptTokens: 20, CompletionTokens: 2, TotalTokens: 22},
		}},
		{UsageQuery{User: "alice", GroupBy: []string{"hour"}}, []UsageRow{
			{Hour: hour.Format(time.RFC3339), Requests: 2, PromptTokens: 110, CompletionTokens: 11, TotalTokens: 121, EstimatedRequests: 1},
			{Hour: hour.Add(time.Hour).Format(time.RFC3339), Requests: 1, PromptTokens: 1000, CompletionTokens: 100, TotalTokens: 1100},
		}},
		{UsageQuery{Model: "m2", Since: hour.Add(time.Hour)}, []UsageRow{
			{Requests: 1, PromptTokens: 1000, CompletionTokens: 100, TotalTokens: 1100},
		}},
		{UsageQuery{Until: hour.Add(time.Hour)}, []UsageRow{
			{Requests: 3, PromptTokens: 130, CompletionTokens: 13, TotalTokens: 143, EstimatedRequests: 1},
		}},
	} {
		rows, err := s.Usage(c.q)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rows, c.want) {
			t.Errorf("usage %+v:\n got %+v\nwant %+v", c.q, rows, c.want)
		}
	}
	for user, want := range map[string]byte{"alice": 3, "bob": 7} {
		if c, err := s.LoadCounters(user); err != nil || len(c) != 1 || c[0] != want {
			t.Errorf("counters of %s: %v, %v; want [%d]", user, c, err, want)
		}
	}
}

func TestJournalReadBeforeFold(t *testing.T) {
	setFoldEvery(t, 100)
	path := filepath.Join(t.TempDir(), "gate.db")
	s := openAt(t, path)
	journalBatches(t, s)
	if n := journalLen(t, s); n != 3 {
		t.Fatalf("journal holds %d entries, want 3 (nothing folded)", n)
	}
	if c := rawCounters(t, s, "alice"); c != nil {
		t.Fatalf("counters bucket already holds %v", c)
	}
	checkJournalBatches(t, s)

	// Close folds; closing again is no error, as before the journal.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s = openAt(t, path)
	defer s.Close()
	wantFolded(t, s, "alice", 3)
	checkJournalBatches(t, s)
}

func TestJournalFoldsEveryN(t *testing.T) {
	setFoldEvery(t, 3)
	s := newStore(t)
	journalBatches(t, s)
	wantFolded(t, s, "bob", 7)
	checkJournalBatches(t, s)
	// A commit of open records only writes no journal entry.
	if err := s.Commit(&Batch{Open: map[uint64]Record{1: {Time: t0, User: "bob", Model: "m"}}}); err != nil {
		t.Fatal(err)
	}
	if n := journalLen(t, s); n != 0 {
		t.Errorf("journal holds %d entries after a commit of open records", n)
	}
}

// The journal folds once its values reach foldBytes, whatever their count.
func TestJournalFoldsAtSize(t *testing.T) {
	setFoldEvery(t, 100)
	old := foldBytes
	foldBytes = 40 // more than one of journalBatches' entries, less than three
	t.Cleanup(func() { foldBytes = old })
	s := newStore(t)
	journalBatches(t, s)
	if n := journalLen(t, s); n == 3 {
		t.Fatalf("journal holds all 3 entries past %d bytes", foldBytes)
	}
	checkJournalBatches(t, s)
}

// A process that stops without Close (a crash) leaves the journal; the next
// Open folds it.
func TestJournalCrash(t *testing.T) {
	setFoldEvery(t, 100)
	path := filepath.Join(t.TempDir(), "gate.db")
	s := openAt(t, path)
	journalBatches(t, s)
	if err := s.db.Close(); err != nil { // no fold
		t.Fatal(err)
	}
	s = openAt(t, path)
	defer s.Close()
	if n := journalLen(t, s); n != 0 {
		t.Errorf("journal holds %d entries after Open, want 0", n)
	}
	checkJournalBatches(t, s)
}

func TestJournalDeletedUser(t *testing.T) {
	setFoldEvery(t, 100)
	s := newStore(t)
	journalBatches(t, s)
	if _, err := s.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if n := journalLen(t, s); n != 0 {
		t.Errorf("DeleteUser left %d journal entries, want it folded", n)
	}
	// A flush racing the delete: its counters are not alice's, now nor when
	// a user with her id exists again.
	if err := s.Commit(&Batch{Counters: map[string][]byte{"alice": {9}, "bob": {8}}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.LoadCounters("alice"); c != nil {
		t.Errorf("counters of a deleted user: %v", c)
	}
	if err := s.PutUser(&User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.LoadCounters("alice"); c != nil {
		t.Errorf("counters of a user created again: %v, want none", c)
	}
	if c, _ := s.LoadCounters("bob"); len(c) != 1 || c[0] != 8 {
		t.Errorf("bob's counters %v, want [8]", c)
	}
	// Hers again once she uses the gate.
	if err := s.Commit(&Batch{Counters: map[string][]byte{"alice": {4}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(fold); err != nil {
		t.Fatal(err)
	}
	s.j.reset()
	if c, _ := s.LoadCounters("alice"); len(c) != 1 || c[0] != 4 {
		t.Errorf("counters of the new alice: %v, want [4]", c)
	}
	// An empty state deletes, through the journal as directly.
	if err := s.Commit(&Batch{Counters: map[string][]byte{"bob": {}}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.LoadCounters("bob"); c != nil {
		t.Errorf("bob's deleted counters read %v", c)
	}
}

// A journal entry that does not decode (a damaged file) is skipped by the
// readers and dropped by the fold; the others count.
func TestJournalDamagedEntry(t *testing.T) {
	setFoldEvery(t, 100)
	s := newStore(t)
	deltas := aggregate([]Record{{Time: t0, User: "bob", Model: "m", PromptTokens: 5, CompletionTokens: 1}}, 0)
	valid, _ := encodeJournal(map[string][]byte{"bob": {7}}, []string{"bob"}, deltas, s.blockBytes)
	if err := s.PutUser(&User{ID: "bob"}); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, v := range [][]byte{valid[:len(valid)-1], {9, 9}, valid} {
			if _, err := journalPut(tx, v, []int{len(v)}, 0, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []UsageRow{{Requests: 1, PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6}}
	if rows, err := s.Usage(UsageQuery{}); err != nil || !reflect.DeepEqual(rows, want) {
		t.Errorf("usage over a damaged journal: %+v, %v; want %+v", rows, err, want)
	}
	if err := s.db.Update(fold); err != nil {
		t.Fatal(err)
	}
	if rows, err := s.Usage(UsageQuery{}); err != nil || !reflect.DeepEqual(rows, want) {
		t.Errorf("usage after the fold: %+v, %v; want %+v", rows, err, want)
	}
	wantFolded(t, s, "bob", 7)
}

// A file of schema 2 (no journal: its counters and sums in their buckets)
// opens as schema 3 with everything readable, and commits go on.
func TestJournalFromSchema2(t *testing.T) {
	setFoldEvery(t, 1) // every commit folded: the buckets hold it all, as in schema 2
	path := filepath.Join(t.TempDir(), "gate.db")
	s := openAt(t, path)
	journalBatches(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketJournal) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	setSchema(t, path, 2)

	foldEvery = 16
	s = openAt(t, path)
	defer s.Close()
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaSchema); binary.BigEndian.Uint64(v) != SchemaVersion {
			t.Errorf("schema %x after open, want %d", v, SchemaVersion)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkJournalBatches(t, s)
	if err := s.Commit(&Batch{Counters: map[string][]byte{"bob": {5}}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.LoadCounters("bob"); len(c) != 1 || c[0] != 5 {
		t.Errorf("bob's counters after a commit: %v", c)
	}
}

// Commits, folds and readers at once: every committed request is counted
// once in Usage, whatever folds ran between, and readers never fail.
func TestJournalConcurrent(t *testing.T) {
	setFoldEvery(t, 3)
	s := newStore(t)
	users := []string{"u0", "u1", "u2", "u3"}
	for _, u := range users {
		if err := s.PutUser(&User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	const commits, perCommit = 60, 5
	done := make(chan struct{})
	errs := make(chan error, 3)
	go func() { // the writer
		defer close(done)
		for i := range commits {
			b := Batch{Counters: map[string][]byte{}}
			for j := range perCommit {
				u := users[(i+j)%len(users)]
				b.Records = append(b.Records, Record{Time: t0.Add(time.Duration(i*perCommit+j) * time.Second), User: u, Model: "m", Status: 200, PromptTokens: 1, CompletionTokens: 1})
				b.Counters[u] = []byte{byte(i)}
			}
			if err := s.Commit(&b); err != nil {
				errs <- err
				return
			}
		}
	}()
	for range 2 { // readers
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if _, err := s.Usage(UsageQuery{GroupBy: []string{"user", "hour"}}); err != nil {
					errs <- err
					return
				}
				if _, err := s.LoadCounters(users[1]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	<-done
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	rows, err := s.Usage(UsageQuery{})
	if err != nil || len(rows) != 1 || rows[0].Requests != commits*perCommit || rows[0].TotalTokens != 2*commits*perCommit {
		t.Fatalf("usage %+v, %v; want %d requests", rows, err, commits*perCommit)
	}
	for _, u := range users {
		if c, _ := s.LoadCounters(u); len(c) != 1 || c[0] != commits-1 {
			t.Errorf("counters of %s: %v, want [%d]", u, c, commits-1)
		}
	}
}

// encodeJournal cuts a commit into values of at most limit bytes (one item
// larger than that alone in a value of its own), each of which decodes on
// its own, and which together hold every counter and delta in order.
func TestJournalValues(t *testing.T) {
	var users []string
	counters := map[string][]byte{}
	var recs []Record
	for i := range 300 {
		u := fmt.Sprintf("user%03d", i)
		users = append(users, u)
		counters[u] = bytes.Repeat([]byte{byte(i)}, i%90)
		recs = append(recs, Record{Time: t0, User: u, Model: "m", PromptTokens: int64(i) << 20, CompletionTokens: 1})
	}
	counters["user007"] = bytes.Repeat([]byte{7}, 5000) // larger than a value
	counters["user008"] = nil                           // a deletion
	deltas := aggregate(recs, 0)
	page := blockBytes(4096) // what a store of 4 KiB pages cuts at
	for _, limit := range []int{64, 300, page, 1 << 20} {
		buf, ends := encodeJournal(counters, users, deltas, limit)
		if ends[len(ends)-1] != len(buf) {
			t.Fatalf("limit %d: values end at %d of %d bytes", limit, ends[len(ends)-1], len(buf))
		}
		var gotUsers []string
		var gotDeltas []aggDelta
		values := 0
		err := journalValues(buf, ends, func(v []byte) error {
			values++
			items := 0
			err := decodeJournal(v, func(user, state []byte) {
				items++
				if u := string(user); !bytes.Equal(state, counters[u]) {
					t.Errorf("limit %d: %s's state %d bytes, want %d", limit, u, len(state), len(counters[u]))
				}
				gotUsers = append(gotUsers, string(user))
			}, func(key []byte, s *sums) {
				items++
				gotDeltas = append(gotDeltas, aggDelta{key: bytes.Clone(key), sums: *s})
			})
			if len(v) > limit && items > 1 {
				t.Errorf("limit %d: a value of %d bytes holds %d items", limit, len(v), items)
			}
			return err
		})
		if err != nil {
			t.Fatalf("limit %d: %v", limit, err)
		}
		if !reflect.DeepEqual(gotUsers, users) || !reflect.DeepEqual(gotDeltas, deltas) {
			t.Errorf("limit %d: the values hold %d counters and %d deltas, not the %d and %d given in order", limit, len(gotUsers), len(gotDeltas), len(users), len(deltas))
		}
		if limit == page && values < len(buf)/limit {
			t.Errorf("limit %d: %d values for %d bytes", limit, values, len(buf))
		}
	}
}

// A commit writes its own part of the journal, not the commits' before it
// again: with many users' counters a commit's journal entry is hundreds of
// kilobytes, and the leaf it lands in used to hold the three or four entries
// before it, all rewritten (bbolt rewrites a leaf whole). Counted with
// bbolt's bytes of pages allocated per transaction.
func TestJournalAppendOnly(t *testing.T) {
	setFoldEvery(t, 100)
	s := newStore(t)
	const users = 500
	var ids []string
	for i := range users {
		id := fmt.Sprintf("user%04d", i)
		ids = append(ids, id)
		if err := s.PutUser(&User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for c := range 10 {
		counters := make(map[string][]byte, users)
		for _, id := range ids {
			counters[id] = bytes.Repeat([]byte{byte(c)}, 200)
		}
		st := s.db.Stats().TxStats
		before := st.GetPageAlloc()
		size := s.j.size
		if err := s.Commit(&Batch{Counters: counters}); err != nil {
			t.Fatal(err)
		}
		st = s.db.Stats().TxStats
		alloc, own := st.GetPageAlloc()-before, s.j.size-size
		if c > 0 && alloc > 2*int64(own) {
			t.Errorf("commit %d: %d KiB of pages for its %d KiB of journal", c, alloc>>10, own>>10)
		}
	}
	if s.j.commits != 10 || journalLen(t, s) < 10*users*200/s.blockBytes {
		t.Errorf("the journal holds %d commits in %d values, want 10 commits in values of at most %d bytes", s.j.commits, journalLen(t, s), s.blockBytes)
	}
	for _, id := range ids {
		if c, err := s.LoadCounters(id); err != nil || !bytes.Equal(c, bytes.Repeat([]byte{9}, 200)) {
			t.Fatalf("counters of %s: %d bytes, %v", id, len(c), err)
		}
	}
	if err := s.db.Update(fold); err != nil {
		t.Fatal(err)
	}
	if c := rawCounters(t, s, ids[users-1]); !bytes.Equal(c, bytes.Repeat([]byte{9}, 200)) {
		t.Errorf("folded counters of %s: %v", ids[users-1], c)
	}
}
