package store

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestOpenRecords: open records are neither listed nor summed; the record
// that closes one replaces it; those a crash leaves (no close) become
// incomplete records, summed, when the file is next opened, and the
// unreadable ones go.
func TestOpenRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(user string, prompt, completion int64) Record {
		return Record{Time: t0, User: user, Model: "m", Endpoint: "chat", Status: 200,
			PromptTokens: prompt, CompletionTokens: completion, Estimated: true, Duration: 2 * time.Second}
	}
	commit := func(b *Batch) {
		t.Helper()
		if err := s.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	totals := func() (records int, requests, tokens int64) {
		t.Helper()
		recs, _, err := s.Records(RecordQuery{})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.Usage(UsageQuery{})
		if err != nil || len(rows) > 1 {
			t.Fatalf("usage %+v %v", rows, err)
		}
		if len(rows) == 0 {
			return len(recs), 0, 0
		}
		return len(recs), rows[0].Requests, rows[0].TotalTokens
	}

	commit(&Batch{Open: map[uint64]Record{1: rec("a", 10, 5), 2: rec("b", 20, 7), 3: rec("c", 1, 1)}})
	commit(&Batch{Open: map[uint64]Record{1: rec("a", 10, 50)}}) // a later checkpoint
	if n, req, tok := totals(); n != 0 || req != 0 || tok != 0 {
		t.Fatalf("open records listed or summed: %d records, %d requests, %d tokens", n, req, tok)
	}
	// a ends: its record replaces its open one; c's is written and closed
	// in one batch.
	commit(&Batch{Records: []Record{rec("a", 10, 60)}, Open: map[uint64]Record{3: rec("c", 2, 2)}, Closed: []uint64{1, 3}})
	if n, req, tok := totals(); n != 1 || req != 1 || tok != 70 {
		t.Fatalf("after a's record: %d records, %d requests, %d tokens", n, req, tok)
	}
	s.Close()

	// Damage next to b's open record: a key that is no id, a value too
	// short for its time, a record that does not decode.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOpen)
		if ob.Get(openKey(1)) != nil || ob.Get(openKey(3)) != nil || ob.Get(openKey(2)) == nil {
			t.Error("the open bucket does not hold b's record alone")
		}
		for k, v := range map[string][]byte{"xyz": {1}, string(openKey(7)): {1, 2}, string(openKey(8)): make([]byte, 12)} {
			if err := ob.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if n, dropped := s.Recovered(); n != 1 || dropped != 3 {
		t.Errorf("Recovered() = %d, %d; want 1, 3", n, dropped)
	}
	recs, _, err := s.Records(RecordQuery{User: "b"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("b's records: %+v %v", recs, err)
	}
	want := rec("b", 20, 7)
	want.Incomplete = true
	if recs[0] != want {
		t.Errorf("recovered %+v\nwant      %+v", recs[0], want)
	}
	if n, req, tok := totals(); n != 2 || req != 2 || tok != 97 {
		t.Fatalf("after recovery: %d records, %d requests, %d tokens", n, req, tok)
	}
	s.Close()
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, dropped := s.Recovered(); n != 0 || dropped != 0 {
		t.Errorf("a second open recovered %d, %d", n, dropped)
	}
}

// TestOpenRecordsValidated: an invalid open record fails its batch like an
// invalid record, writing nothing.
func TestOpenRecordsValidated(t *testing.T) {
	s := newStore(t)
	err := s.Commit(&Batch{Records: []Record{{Time: t0, User: "a"}}, Open: map[uint64]Record{1: {Time: t0, User: ""}}})
	if err == nil {
		t.Fatal("an open record without a user was committed")
	}
	if recs, _, _ := s.Records(RecordQuery{}); len(recs) != 0 {
		t.Errorf("%d records written", len(recs))
	}
}
