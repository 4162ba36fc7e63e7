package store

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// t0 is the tests' fake "now": a Tuesday, mid-hour, so hour and day
// boundaries are exercised on both sides.
var t0 = time.Date(2025, 3, 4, 10, 30, 0, 0, time.UTC)

// newStore opens a fresh store in a temporary directory with a clock that
// starts at t0 and advances one second per reading.
func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "gate.db"), Options{NoSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := t0
	s.now = func() time.Time {
		now = now.Add(time.Second)
		return now
	}
	return s
}

// setSchema writes a raw schema version into a closed store file.
func setSchema(t *testing.T, path string, v uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(metaSchema, binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readSchema(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	db.View(func(tx *bolt.Tx) error {
		v = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(metaSchema))
		return nil
	})
	return v
}

func TestOpenCreatesFileAndBuckets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "gate.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if s.Size() <= 0 {
		t.Errorf("Size() = %d, want > 0", s.Size())
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				t.Errorf("bucket %s missing", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readSchema(t, path); got != SchemaVersion {
		t.Errorf("schema = %d, want %d", got, SchemaVersion)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", p, got, want)
		}
	}
	if s.Size() <= 0 {
		t.Errorf("Size() after close = %d, want the file's size", s.Size())
	}
	os.Remove(path)
	if s.Size() != 0 {
		t.Errorf("Size() of a missing file = %d, want 0", s.Size())
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	// A parent "directory" that is a file.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "gate.db"), Options{}); err == nil {
		t.Error("Open under a file succeeded")
	}
	// Not a bbolt file.
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, Options{Timeout: time.Second}); err == nil {
		t.Error("Open of a junk file succeeded")
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	setSchema(t, path, SchemaVersion+1)
	_, err = Open(path, Options{NoSync: true})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: err = %v, want one saying it is newer", err)
	}
	if got := readSchema(t, path); got != SchemaVersion+1 {
		t.Errorf("refused open rewrote the schema to %d", got)
	}
}

func TestOpenRefusesCorruptSchema(t *testing.T) {
	for _, v := range []uint64{0, 1 << 40} {
		path := filepath.Join(t.TempDir(), "gate.db")
		setSchema(t, path, v)
		if _, err := Open(path, Options{NoSync: true}); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("schema %d: err = %v, want corrupt", v, err)
		}
	}
	path := filepath.Join(t.TempDir(), "gate.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(bucketMeta)
		return b.Put(metaSchema, []byte{1})
	})
	db.Close()
	if _, err := Open(path, Options{NoSync: true}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("short schema value: err = %v, want corrupt", err)
	}
}

func TestOpenRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone-else"))
		return err
	})
	db.Close()
	if _, err := Open(path, Options{NoSync: true}); err == nil || !strings.Contains(err.Error(), "not an llm_gate store") {
		t.Errorf("err = %v, want not an llm_gate store", err)
	}
}

// TestOpenRefusesCutShortFile: a file cut short (copied while in use, a
// full disk) is an error naming it, never a panic or a fault, whatever the
// cut; with the pages its metadata counts, it used to open and fault on the
// first read of a missing page, or panic on its freelist.
func TestOpenRefusesCutShortFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]Record, 20000)
	for i := range recs {
		recs[i] = Record{Time: time.Unix(1e9+int64(i), 0), User: "u", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 1}
	}
	if err := s.Commit(&Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var used int64 // bytes up to the last page in use; the rest is room to grow
	if err := s.db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, size := range []int{int(used) / 2, int(used) - 4096, 3 * 4096, 100} {
		cut := filepath.Join(t.TempDir(), "cut.db")
		if err := os.WriteFile(cut, whole[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("cut to %d bytes: panic %v", size, r)
				}
			}()
			s, err := Open(cut, Options{NoSync: true, Timeout: time.Second})
			if err == nil {
				s.Close()
				t.Fatalf("cut to %d bytes, %d in use: opened", size, used)
			}
			if !strings.Contains(err.Error(), cut) {
				t.Fatalf("cut to %d bytes: %v does not name the file", size, err)
			}
		}()
	}
}

func TestMigrationTableMatchesSchemaVersion(t *testing.T) {
	if len(migrations) != SchemaVersion-1 {
		t.Fatalf("%d migrations for schema version %d: want %d", len(migrations), SchemaVersion, SchemaVersion-1)
	}
}

func TestPrepareRunsMigrationsInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	setSchema(t, path, 1)
	var ran []int
	step := func(from int) migration {
		return func(tx *bolt.Tx) error {
			// Each step sees the previous step's work.
			if prev := tx.Bucket(bucketMeta).Get([]byte("step")); from > 1 && (len(prev) != 1 || int(prev[0]) != from-1) {
				t.Errorf("step %d saw step %v before it", from, prev)
			}
			ran = append(ran, from)
			return tx.Bucket(bucketMeta).Put([]byte("step"), []byte{byte(from)})
		}
	}
	table := []migration{step(1), step(2), step(3)}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// A failing step rolls everything back, version included.
	failing := []migration{step(1), func(*bolt.Tx) error { return errors.New("boom") }}
	if err := db.Update(func(tx *bolt.Tx) error { return prepare(tx, 3, failing) }); err == nil || !strings.Contains(err.Error(), "migrating schema 2 to 3: boom") {
		t.Fatalf("failing migration: err = %v", err)
	}
	db.View(func(tx *bolt.Tx) error {
		if v := binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(metaSchema)); v != 1 {
			t.Errorf("after a failed migration the version is %d, want 1", v)
		}
		return nil
	})

	ran = nil
	if err := db.Update(func(tx *bolt.Tx) error { return prepare(tx, 4, table) }); err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 3}; !slices.Equal(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	db.View(func(tx *bolt.Tx) error {
		if v := binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(metaSchema)); v != 4 {
			t.Errorf("version %d, want 4", v)
		}
		return nil
	})

	// Up to date: nothing runs.
	ran = nil
	if err := db.Update(func(tx *bolt.Tx) error { return prepare(tx, 4, table) }); err != nil || len(ran) != 0 {
		t.Errorf("second prepare: err %v, ran %v", err, ran)
	}
	// A table too short for the target is a bug, not a silent skip.
	if err := db.Update(func(tx *bolt.Tx) error { return prepare(tx, 6, table) }); err == nil {
		t.Error("prepare with a missing migration succeeded")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(&User{ID: "alice", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	k := &Key{ID: "k1", UserID: "alice", Hash: [32]byte{1}}
	if err := s.PutKey(k); err != nil {
		t.Fatal(err)
	}
	rec := Record{Time: t0, User: "alice", Model: "m", PromptTokens: 3, CompletionTokens: 4}
	if err := s.Commit(&Batch{Records: []Record{rec}, Counters: map[string][]byte{"alice": []byte("state")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if u, err := s.GetUser("alice"); err != nil || u.Plan != "pro" {
		t.Errorf("user after reopen: %+v, %v", u, err)
	}
	if got, err := s.KeyByHash([32]byte{1}); err != nil || got.ID != "k1" {
		t.Errorf("key after reopen: %+v, %v", got, err)
	}
	if c, err := s.LoadCounters("alice"); err != nil || string(c) != "state" {
		t.Errorf("counters after reopen: %q, %v", c, err)
	}
	if recs, _, err := s.Records(RecordQuery{}); err != nil || len(recs) != 1 || recs[0] != rec {
		t.Errorf("records after reopen: %+v, %v", recs, err)
	}
	rows, err := s.Usage(UsageQuery{})
	if err != nil || len(rows) != 1 || rows[0].TotalTokens != 7 {
		t.Errorf("usage after reopen: %+v, %v", rows, err)
	}
}

// A second Open of a held file must fail after its timeout, not hang: bbolt
// locks the file even against the same process.
func TestSecondOpenTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	done := make(chan error, 1)
	go func() {
		s2, err := Open(path, Options{Timeout: 50 * time.Millisecond})
		if err == nil {
			s2.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, berrors.ErrTimeout) || !strings.Contains(err.Error(), "locked") {
			t.Errorf("second Open: err = %v, want a lock timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("second Open hung")
	}
	// The first holder is unaffected.
	if err := s.PutUser(&User{ID: "still-works"}); err != nil {
		t.Error(err)
	}
}

func TestClosedStoreFails(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "gate.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.GetUser("a"); err == nil {
		t.Error("GetUser on a closed store succeeded")
	}
	if err := s.Commit(&Batch{Records: []Record{{Time: t0, User: "a"}}}); err == nil {
		t.Error("Commit on a closed store succeeded")
	}
}
