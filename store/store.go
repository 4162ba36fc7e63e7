// Package store keeps llm_gate's durable state in one bbolt file: users, API
// keys (as hashes), the quota engine's opaque counters, hourly usage
// aggregates and per-request records.
//
// The store knows nothing of quota rules: counters are bytes per user that
// the quota engine alone interprets. All methods are safe for concurrent use.
// bbolt allows one writer at a time and every write fsyncs (unless
// Options.NoSync), so usage is meant to reach the store in batches through
// Commit from a background writer, never one transaction per request.
//
// Layout (one bucket each):
//
//	meta      "schema" → schema version (8-byte big-endian)
//	users     user id → User as JSON
//	keys      key id → Key (binary)
//	keyhash   sha-256 of the secret → key id
//	userkeys  user id, 0x00, key id → empty (lists a user's keys)
//	counters  user id → opaque quota state
//	agg       hour (8-byte big-endian Unix seconds), user id, 0x00, model → sums
//	records   8-byte big-endian Unix nanoseconds, 8-byte sequence → a block of Records from that one on (binary; version 4, one Record before)
//	open      8-byte big-endian id → Unix nanoseconds, Record: requests in flight (version 2)
//	journal   8-byte big-endian sequence → counters and agg deltas of a commit (a commit's in one value or more), not yet folded into those buckets (version 3)
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrNotFound is returned (wrapped) when a user or key does not exist.
var ErrNotFound = errors.New("not found")

// ErrInvalid is returned (wrapped) for arguments the store refuses: a bad
// user id, cursor, group_by word or record. The admin API answers it with 400.
var ErrInvalid = errors.New("invalid argument")

// SchemaVersion is the layout version this build reads and writes. Bump it
// with a migration in migrations whenever the layout changes incompatibly.
const SchemaVersion = 5

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Options tune Open.
type Options struct {
	// Timeout is how long Open waits for another holder of the file (another
	// process, or another Open in this one) to let go. Default 5s. It is
	// always passed to bbolt, whose zero value would wait forever.
	Timeout time.Duration
	// NoSync skips fsync after each commit: much faster, but a machine crash
	// (not a process crash) can lose or corrupt recent commits. For tests and
	// benchmarks.
	NoSync bool
}

// Store is an open store file.
type Store struct {
	db   *bolt.DB
	path string
	// now is the clock for Created/Updated/Revoked stamps; tests replace it.
	now func() time.Time
	// recovered and dropped: see Recovered.
	recovered, dropped int
	// blockBytes bounds the records' blocks (see blocks.go).
	blockBytes int

	// jmu is held by the writes to the journal and by LoadCounters, so
	// that j and the file agree for it.
	jmu sync.Mutex
	j   journalCounters
	// deleted holds the users DeleteUser deleted (under jmu).
	deleted map[string]struct{}
	// aggGroups is how many aggregate keys the last commit summed.
	aggGroups atomic.Int64
}

var (
	bucketMeta     = []byte("meta")
	bucketUsers    = []byte("users")
	bucketKeys     = []byte("keys")
	bucketKeyHash  = []byte("keyhash")
	bucketUserKeys = []byte("userkeys")
	bucketCounters = []byte("counters")
	bucketAgg      = []byte("agg")
	bucketRecords  = []byte("records")
	bucketOpen     = []byte("open")
	bucketJournal  = []byte("journal")

	allBuckets = [][]byte{
		bucketMeta, bucketUsers, bucketKeys, bucketKeyHash, bucketUserKeys,
		bucketCounters, bucketAgg, bucketRecords, bucketOpen, bucketJournal,
	}

	metaSchema = []byte("schema")
)

// migration upgrades an open write transaction's layout from version N to
// N+1.
type migration func(tx *bolt.Tx) error

// migrations[i] upgrades a file from version i+1 to i+2, so the table has
// SchemaVersion-1 entries. Version 1 is the first layout; version 2 adds
// the open bucket (created with any missing bucket) and the Incomplete flag
// of records, which a version 1 build would refuse to decode; version 3 the
// journal (see journal.go), which a version 2 build would not read;
// version 4 records in blocks (see blocks.go), which a version 3 build
// would refuse to decode (records of one per entry read as blocks of one);
// version 5 counters the quota engine writes in its state version 2, which
// a version 4 build would refuse to decode (the store does not read
// counters: the number is moved on so that such a build refuses the file
// rather than every user whose counters changed).
var migrations = []migration{
	func(*bolt.Tx) error { return nil }, // 1 → 2
	func(*bolt.Tx) error { return nil }, // 2 → 3
	func(*bolt.Tx) error { return nil }, // 3 → 4
	func(*bolt.Tx) error { return nil }, // 4 → 5
}

// Open opens the store file at path, creating it (mode 0600, parent
// directories 0700) and its buckets when missing. It refuses a file written
// by a newer schema and migrates an older one in the same transaction that
// checks it. If another holder keeps the file locked for longer than
// o.Timeout, Open fails with an error wrapping bbolt's errors.ErrTimeout.
func Open(path string, o Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty path")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: creating directory for %s: %w", path, err)
	}
	db, err := openChecked(path, &bolt.Options{
		Timeout: o.Timeout,
		NoSync:  o.NoSync,
		// The hashmap freelist keeps allocation cheap as records churn
		// (commits and pruning free many pages).
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is locked by another process or another open instance (waited %s): %w", path, o.Timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	s := &Store{db: db, path: path, now: time.Now, blockBytes: blockBytes(db.Info().PageSize)}
	// What a process that stopped without Close left in the journal.
	if err := db.Update(fold); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: folding the journal of %s: %w", path, err)
	}
	if s.recovered, s.dropped, err = s.recoverOpen(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: recovering the requests %s left open: %w", path, err)
	}
	return s, nil
}

// Recovered is how many requests the last process using the file left
// running (it crashed) that Open turned into Incomplete records, and how
// many of their open records it dropped as unreadable.
func (s *Store) Recovered() (recovered, dropped int) { return s.recovered, s.dropped }

// openChecked opens the file, checks that it holds every page its metadata
// counts and prepares its layout. A damaged file is an error here rather
// than a crash later: bbolt panics on some damage, and reading a page past
// the end of a file cut short faults.
func openChecked(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, fmt.Errorf("the file is damaged (%v); restore it from a backup", r)
		}
	}()
	if db, err = bolt.Open(path, 0o600, opts); err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error {
			if tx.Size() > fi.Size() {
				return fmt.Errorf("the file is %d bytes but its pages reach byte %d: it was cut short (copied while in use, or a full disk); restore it from a backup", fi.Size(), tx.Size())
			}
			return nil
		})
	}
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error { return prepare(tx, SchemaVersion, migrations) })
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// prepare checks the file's schema version against target, runs the
// migrations it needs from table (table[i] goes from i+1 to i+2) and creates
// any missing bucket.
func prepare(tx *bolt.Tx, target int, table []migration) error {
	if len(table) < target-1 {
		return fmt.Errorf("no migration to schema version %d", target)
	}
	var version int
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if v := meta.Get(metaSchema); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("corrupt schema version (%d bytes)", len(v))
			}
			u := binary.BigEndian.Uint64(v)
			if u == 0 || u > 1<<31 {
				return fmt.Errorf("corrupt schema version %d", u)
			}
			version = int(u)
		}
	}
	if version == 0 {
		// No version: a new file, unless it holds someone else's buckets.
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if !isOurBucket(name) {
				return fmt.Errorf("not an llm_gate store (unknown bucket %q)", name)
			}
			return nil
		}); err != nil {
			return err
		}
		version = target
	}
	if version > target {
		return fmt.Errorf("schema version %d is newer than the %d this build supports: upgrade llm_gate or point it at another file", version, target)
	}
	// Migrations see the file as its version left it; buckets new in this
	// version are created after them.
	for v := version; v < target; v++ {
		if err := table[v-1](tx); err != nil {
			return fmt.Errorf("migrating schema %d to %d: %w", v, v+1, err)
		}
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(target))
	return tx.Bucket(bucketMeta).Put(metaSchema, buf[:])
}

func isOurBucket(name []byte) bool {
	for _, b := range allBuckets {
		if string(b) == string(name) {
			return true
		}
	}
	return false
}

// Close folds the journal and closes the file. The Store must not be used
// afterwards.
func (s *Store) Close() error {
	s.jmu.Lock()
	err := s.db.Update(fold)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		err = nil // closed before: nothing to fold, as bbolt has nothing to close
	}
	s.j.reset()
	s.jmu.Unlock()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	} else if cerr == nil {
		err = fmt.Errorf("store: folding the journal of %s: %w (the next Open folds it)", s.path, err)
	}
	return err
}

// Path returns the file's path as given to Open.
func (s *Store) Path() string { return s.path }

// Size returns the file's size in bytes (0 if it cannot be read), for
// metrics. bbolt grows the file ahead of its data and never shrinks it.
func (s *Store) Size() int64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// clamp applies the default and maximum page sizes of list queries.
func clamp(limit int) int {
	switch {
	case limit <= 0:
		return 100
	case limit > 1000:
		return 1000
	}
	return limit
}
