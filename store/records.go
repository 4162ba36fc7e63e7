package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxFieldLen is the longest key id, model, endpoint or plan a Record may
// carry, in bytes. Models come from client request bodies: the cap keeps a
// hostile name from bloating every aggregate key.
const MaxFieldLen = 1024

// Record is one request as metered.
type Record struct {
	// Time is when the request started; records are ordered by it.
	Time  time.Time `json:"time"`
	User  string    `json:"user"`
	KeyID string    `json:"key_id,omitempty"`
	Model string    `json:"model"`
	// Endpoint is the request path, e.g. /v1/chat/completions.
	Endpoint         string `json:"endpoint"`
	Status           int    `json:"status"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	CachedTokens     int64  `json:"cached_tokens"`
	// Estimated is set when the upstream reported no usage and the counts
	// come from the tokenizer.
	Estimated bool `json:"estimated"`
	// Duration and TTFT (time to first token; zero when unknown) are stored
	// with microsecond precision and appear in JSON as duration_ms and
	// ttft_ms, fractional milliseconds.
	Duration time.Duration `json:"-"`
	TTFT     time.Duration `json:"-"`
	Plan     string        `json:"plan,omitempty"`
	// Incomplete marks a request that was still running when its gate
	// stopped without finishing it (a crash, kill -9): the record holds
	// what the request had produced at the last commit before, as its
	// open record did (see Batch.Open), and its counts are estimated.
	Incomplete bool `json:"incomplete,omitempty"`
}

// recordJSON is Record with its durations as milliseconds.
type recordJSON struct {
	plainRecord
	DurationMS float64 `json:"duration_ms"`
	TTFTMS     float64 `json:"ttft_ms"`
}

type plainRecord Record

// MarshalJSON writes the record with snake_case names and durations in
// milliseconds.
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(recordJSON{
		plainRecord: plainRecord(r),
		DurationMS:  float64(r.Duration) / float64(time.Millisecond),
		TTFTMS:      float64(r.TTFT) / float64(time.Millisecond),
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Record) UnmarshalJSON(b []byte) error {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Record(j.plainRecord)
	r.Duration = time.Duration(math.Round(j.DurationMS * float64(time.Millisecond)))
	r.TTFT = time.Duration(math.Round(j.TTFTMS * float64(time.Millisecond)))
	return nil
}

// Record times must fit an unsigned 64-bit count of nanoseconds since 1970
// (the record key) and time.Time.UnixNano.
var (
	minRecordTime = time.Unix(0, 0)
	maxRecordTime = time.Unix(0, math.MaxInt64)
)

// Validate reports why Commit would refuse r, or nil. Callers that queue
// records from untrusted input should check each one before it joins a
// Batch: Commit refuses a whole batch for one bad record.
func (r *Record) Validate() error {
	switch {
	case r.Time.IsZero():
		return fmt.Errorf("record has no time: %w", ErrInvalid)
	case r.Time.Before(minRecordTime) || r.Time.After(maxRecordTime):
		return fmt.Errorf("record time %s is outside 1970-2262: %w", r.Time.Format(time.RFC3339), ErrInvalid)
	case len(r.KeyID) > MaxFieldLen || len(r.Model) > MaxFieldLen || len(r.Endpoint) > MaxFieldLen || len(r.Plan) > MaxFieldLen:
		return fmt.Errorf("record has a key id, model, endpoint or plan longer than %d bytes: %w", MaxFieldLen, ErrInvalid)
	case r.PromptTokens < 0 || r.CompletionTokens < 0 || r.CachedTokens < 0:
		return fmt.Errorf("record has negative token counts: %w", ErrInvalid)
	case r.Duration < 0 || r.TTFT < 0:
		return fmt.Errorf("record has a negative duration: %w", ErrInvalid)
	case r.Status < 0 || r.Status > 999:
		return fmt.Errorf("record has status %d: %w", r.Status, ErrInvalid)
	}
	if err := ValidUserID(r.User); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

const recordFormat = 1

// Bits of a record's flags byte.
const (
	flagEstimated  = 1
	flagIncomplete = 2
	knownFlags     = flagEstimated | flagIncomplete
)

// appendRecord encodes a record's value (its time is in the bucket key).
func appendRecord(b []byte, r *Record) []byte {
	e := encoder{b: b}
	e.byte(recordFormat)
	// The user comes first so filters can test it without decoding the rest.
	e.str(r.User)
	e.str(r.KeyID)
	e.str(r.Model)
	e.str(r.Endpoint)
	e.str(r.Plan)
	e.uvarint(uint64(r.Status))
	e.uvarint(uint64(r.PromptTokens))
	e.uvarint(uint64(r.CompletionTokens))
	e.uvarint(uint64(r.CachedTokens))
	var flags byte
	if r.Estimated {
		flags |= flagEstimated
	}
	if r.Incomplete {
		flags |= flagIncomplete
	}
	e.byte(flags)
	e.uvarint(uint64(r.Duration / time.Microsecond))
	e.uvarint(uint64(r.TTFT / time.Microsecond))
	return e.b
}

func decodeRecord(k, v []byte) (Record, error) {
	var r Record
	if len(k) != 16 {
		return r, errCorrupt
	}
	r.Time = time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
	d := decoder{b: v}
	if d.byte() != recordFormat {
		return r, errCorrupt
	}
	r.User = d.str()
	r.KeyID = d.str()
	r.Model = d.str()
	r.Endpoint = d.str()
	r.Plan = d.str()
	status := d.uvarint()
	r.PromptTokens = d.int64()
	r.CompletionTokens = d.int64()
	r.CachedTokens = d.int64()
	flags := d.byte()
	dur := d.uvarint()
	ttft := d.uvarint()
	if status > 999 || flags&^knownFlags != 0 || dur > math.MaxInt64/1000 || ttft > math.MaxInt64/1000 {
		d.fail()
	}
	if err := d.done(); err != nil {
		return Record{}, err
	}
	r.Status = int(status)
	r.Estimated = flags&flagEstimated != 0
	r.Incomplete = flags&flagIncomplete != 0
	r.Duration = time.Duration(dur) * time.Microsecond
	r.TTFT = time.Duration(ttft) * time.Microsecond
	return r, nil
}

// recordUserIs reports whether an encoded record belongs to user, without
// decoding it.
func recordUserIs(v []byte, user string) bool {
	if len(v) < 2 || v[0] != recordFormat {
		return false
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n != uint64(len(user)) || uint64(len(v)-1-w) < n {
		return false
	}
	return string(v[1+w:1+w+int(n)]) == user
}

// recordKey is the bucket key of a record: Unix nanoseconds then a sequence
// number, both big-endian, so keys sort by time and never collide.
func recordKey(b []byte, nanos, seq uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, nanos)
	return binary.BigEndian.AppendUint64(b, seq)
}

// putOrder returns the indexes of n 16-byte keys, concatenated in keys,
// in ascending key order.
func putOrder(keys []byte, n int) []int {
	order := make([]int, n)
	sorted := true
	for i := range order {
		order[i] = i
		if i > 0 && bytes.Compare(keys[16*(i-1):16*i], keys[16*i:16*i+16]) > 0 {
			sorted = false
		}
	}
	if !sorted {
		slices.SortFunc(order, func(a, b int) int {
			return bytes.Compare(keys[16*a:16*a+16], keys[16*b:16*b+16])
		})
	}
	return order
}

// timeNanos clamps t to the range of record keys.
func timeNanos(t time.Time) uint64 {
	switch {
	case t.Before(minRecordTime):
		return 0
	case t.After(maxRecordTime):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// Batch is what one Commit writes.
type Batch struct {
	Records []Record
	// Counters maps a user to the quota engine's opaque state; an empty
	// value deletes the user's state. Users that no longer exist are
	// skipped, so a flush racing DeleteUser does not bring counters back.
	Counters map[string][]byte
	// KeyLastUsed maps a key id to when it was last used. A time is kept
	// only if later than the stored one; unknown keys are skipped.
	KeyLastUsed map[string]time.Time
	// Open holds the open records of requests still running, by an id of
	// the writer's: what each has produced so far. They are kept apart
	// from the records (neither listed nor summed) until Closed names
	// them: the request's own record then replaces them. Those a crash
	// leaves are its records: the next Open turns them into Incomplete
	// records, summed like the others.
	Open map[uint64]Record
	// Closed are open records to delete, after Open's are written.
	Closed []uint64
}

func (b *Batch) empty() bool {
	return b == nil || len(b.Records) == 0 && len(b.Counters) == 0 && len(b.KeyLastUsed) == 0 &&
		len(b.Open) == 0 && len(b.Closed) == 0
}

// Validate reports the first part of b that Commit would refuse, or nil.
func (b *Batch) Validate() error {
	for i := range b.Records {
		if err := b.Records[i].Validate(); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	for id, r := range b.Open {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("open record %d: %w", id, err)
		}
	}
	for user := range b.Counters {
		if err := ValidUserID(user); err != nil {
			return fmt.Errorf("counters: %w", err)
		}
	}
	for id, t := range b.KeyLastUsed {
		if id == "" || len(id) > MaxKeyIDLen {
			return fmt.Errorf("last-used key id must be 1 to %d bytes: %w", MaxKeyIDLen, ErrInvalid)
		}
		if t.IsZero() {
			return fmt.Errorf("key %q: zero last-used time: %w", id, ErrInvalid)
		}
	}
	return nil
}

// Commit writes a batch in one transaction: its records, their sums added
// to the hourly aggregates, the counters and the keys' last-used times. It
// validates everything first and writes nothing if any part is invalid
// (wrapping ErrInvalid). An empty batch starts no transaction.
func (s *Store) Commit(b *Batch) error {
	if b.empty() {
		return nil
	}
	if err := b.Validate(); err != nil {
		return err
	}
	// Encode and aggregate before the transaction: bbolt has one writer at a
	// time, so work done inside it delays every other writer.
	n := len(b.Records)
	size := 0
	for i := range b.Records {
		r := &b.Records[i]
		size += 40 + len(r.User) + len(r.KeyID) + len(r.Model) + len(r.Endpoint) + len(r.Plan)
	}
	// One buffer holds every record's value; the blocks are built from it.
	buf := make([]byte, 0, size)
	ends := make([]int, n)
	for i := range b.Records {
		buf = appendRecord(buf, &b.Records[i])
		ends[i] = len(buf)
	}
	deltas := aggregate(b.Records, int(s.aggGroups.Load()))
	s.aggGroups.Store(int64(len(deltas)))
	// The journal takes counters and sums in any order (a fold sorts
	// them), so neither is sorted here.
	users := slices.AppendSeq(make([]string, 0, len(b.Counters)), maps.Keys(b.Counters))

	s.jmu.Lock()
	defer s.jmu.Unlock()
	counters := b.Counters
	var journal []byte
	var jends []int
	encode := func() {
		if len(users) > 0 || len(deltas) > 0 {
			journal, jends = encodeJournal(counters, users, deltas, s.blockBytes)
		}
	}
	// A user deleted while the process runs: a flush racing DeleteUser
	// must not give its counters back to it, nor to a user created again
	// with its id, so those batches keep only the counters of users that
	// exist at the commit (counters of users that never existed are
	// dropped when folded). Other batches are encoded before the
	// transaction, which bbolt runs one at a time.
	deleted := s.anyDeleted(users)
	if !deleted {
		encode()
	}
	folded := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if deleted {
			counters, users = existing(tx, counters, users)
			encode()
		}
		if n > 0 {
			rb := tx.Bucket(bucketRecords)
			// Records arrive roughly in time order, i.e. at the end of the
			// bucket: fuller pages make a smaller file.
			rb.FillPercent = 0.9
			seq := rb.Sequence()
			if err := rb.SetSequence(seq + uint64(n)); err != nil {
				return err
			}
			keys := make([]byte, 0, 16*n)
			for i := range b.Records {
				keys = recordKey(keys, timeNanos(b.Records[i].Time), seq+1+uint64(i))
			}
			recs := make([]stored, n)
			for j, i := range putOrder(keys, n) {
				start := 0
				if i > 0 {
					start = ends[i-1]
				}
				recs[j] = stored{keys[16*i : 16*i+16 : 16*i+16], buf[start:ends[i]:ends[i]]}
			}
			if err := putRecords(rb, recs, s.blockBytes); err != nil {
				return err
			}
		}

		// The counters and the sums go to the journal, folded into their
		// buckets every foldEvery commits.
		if journal != nil {
			var err error
			if folded, err = journalPut(tx, journal, jends, s.j.commits, s.j.size); err != nil {
				return err
			}
		}

		for _, id := range sortedKeys(b.KeyLastUsed) {
			t := b.KeyLastUsed[id]
			k, err := getKey(tx, id)
			if err != nil {
				continue // keys are never deleted, so this is a made-up id
			}
			if !t.After(k.LastUsed) {
				continue
			}
			k.LastUsed = t.UTC()
			if err := putKeyValue(tx, k); err != nil {
				return err
			}
		}
		return commitOpen(tx, b)
	})
	if err == nil && journal != nil {
		s.j.committed(users, journal, jends, folded)
	}
	return err
}

// commitOpen writes a batch's open records, then deletes the closed ones.
func commitOpen(tx *bolt.Tx, b *Batch) error {
	if len(b.Open) == 0 && len(b.Closed) == 0 {
		return nil
	}
	ob := tx.Bucket(bucketOpen)
	ids := make([]uint64, 0, len(b.Open))
	for id := range b.Open {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := b.Open[id]
		if err := ob.Put(openKey(id), appendOpen(nil, &r)); err != nil {
			return err
		}
	}
	for _, id := range b.Closed {
		if err := ob.Delete(openKey(id)); err != nil {
			return err
		}
	}
	return nil
}

// openKey is the bucket key of an open record: its id, big-endian.
func openKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// appendOpen encodes an open record: its time (Unix nanoseconds,
// big-endian), then the record as the records bucket holds it.
func appendOpen(b []byte, r *Record) []byte {
	return appendRecord(binary.BigEndian.AppendUint64(b, timeNanos(r.Time)), r)
}

// recoverOpen turns the open records a previous process left (it stopped
// without closing them: a crash) into Incomplete records, summed into the
// hourly aggregates, in one commit. Their tokens are in the counters
// already: the commits that wrote them charged them. An open record that
// cannot be decoded is dropped. It returns how many were recovered and
// dropped.
func (s *Store) recoverOpen() (recovered, dropped int, err error) {
	var b Batch
	var badKeys [][]byte // not an id: nothing of ours wrote them
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOpen).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				badKeys = append(badKeys, bytes.Clone(k))
				return nil
			}
			b.Closed = append(b.Closed, binary.BigEndian.Uint64(k))
			var r Record
			var err error
			if len(v) < 8 {
				err = errCorrupt
			} else if r, err = decodeRecord(append(v[:8:8], make([]byte, 8)...), v[8:]); err == nil {
				err = r.Validate()
			}
			if err != nil {
				dropped++
				return nil
			}
			r.Incomplete = true
			b.Records = append(b.Records, r)
			return nil
		})
	})
	if err == nil && len(badKeys) > 0 {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, k := range badKeys {
				if err := tx.Bucket(bucketOpen).Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err == nil {
		err = s.Commit(&b)
	}
	if err != nil {
		return 0, 0, err
	}
	return len(b.Records), dropped + len(badKeys), nil
}

// seekValue is the bucket's Get(key) through a cursor of the bucket: nil if
// key is absent (or a nested bucket). Seek repositions the cursor from the
// root, so it stays right after writes to the bucket.
func seekValue(c *bolt.Cursor, key []byte) []byte {
	k, v := c.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// LoadCounters returns the user's counter state as the last Commit left it,
// or nil, nil when there is none.
//
// It waits for a commit in progress (jmu), so that the journal's copy and the
// file agree: the engine calls it once per user it has not seen yet.
func (s *Store) LoadCounters(user string) ([]byte, error) {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	var state []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if latest, ok := s.j.latest[user]; ok {
			// As the next fold will have it: kept if the user exists.
			if len(latest) > 0 && tx.Bucket(bucketUsers).Get([]byte(user)) != nil {
				state = bytes.Clone(latest)
			}
			return nil
		}
		if v := tx.Bucket(bucketCounters).Get([]byte(user)); v != nil {
			state = bytes.Clone(v)
		}
		return nil
	})
	return state, err
}

// RecordQuery selects records.
type RecordQuery struct {
	// User keeps only this user's records; "" keeps all.
	User string
	// Since (inclusive) and Until (exclusive) bound the records' times; zero
	// means unbounded.
	Since, Until time.Time
	// Limit is the page size: default 100, at most 1000.
	Limit int
	// Cursor continues from a previous page ("" for the first).
	Cursor string
}

// Records returns the records q selects, newest first, and the cursor of the
// next page ("" after the last one). A malformed cursor is ErrInvalid.
//
// Records are keyed by time, so the walk starts at Until and goes back; a
// user filter skips other users' records without decoding them.
func (s *Store) Records(q RecordQuery) ([]Record, string, error) {
	limit := clamp(q.Limit)
	var start []byte
	if !q.Until.IsZero() {
		start = recordKey(nil, timeNanos(q.Until), 0)
	}
	if q.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(c) != 16 {
			return nil, "", fmt.Errorf("bad records cursor %q: %w", q.Cursor, ErrInvalid)
		}
		if start == nil || bytes.Compare(c, start) < 0 {
			start = c
		}
	}
	var since uint64
	if !q.Since.IsZero() {
		since = timeNanos(q.Since)
	}

	out := []Record{}
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		var k, v []byte
		if start == nil {
			k, v = c.Last()
		} else if k, _ = c.Seek(start); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		// Entries newest first, each one's records newest first; the entry
		// before start may hold records from start on.
		var recs []stored
		var last []byte
		for ; k != nil; k, v = c.Prev() {
			var err error
			if recs, err = parseEntry(recs[:0], k, v); err != nil {
				if len(k) == 16 && binary.BigEndian.Uint64(k) < since {
					return nil // what it held is older than since, or lost
				}
				return entryError(k)
			}
			for i := len(recs) - 1; i >= 0; i-- {
				rk, rv := recs[i].key, recs[i].val
				if start != nil && bytes.Compare(rk, start) >= 0 {
					continue
				}
				if binary.BigEndian.Uint64(rk) < since {
					return nil
				}
				if q.User != "" && !recordUserIs(rv, q.User) {
					continue
				}
				if len(out) == limit {
					next = base64.RawURLEncoding.EncodeToString(last)
					return nil
				}
				r, err := decodeRecord(rk, rv)
				if err != nil {
					return entryError(rk)
				}
				out = append(out, r)
				last = rk
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// pruneChunk is how many records one Prune transaction deletes, so the
// writer lock is never held for long; a variable for tests.
var pruneChunk = 10000

// Prune deletes the records older than before and reports how many it
// deleted. It works in transactions of about pruneChunk records so commits
// can interleave. Aggregates are kept: they are small and carry the history.
func (s *Store) Prune(before time.Time) (int, error) {
	if before.IsZero() {
		return 0, nil
	}
	cut := recordKey(nil, timeNanos(before), 0)
	total := 0
	for {
		n, done := 0, false
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			// Collect first: deleting under a moving bbolt cursor skips
			// entries. The entry that holds the cut keeps its records from
			// the cut on, under the key of the first.
			var doomed [][]byte
			var kept []stored
			var recs []stored
			c := b.Cursor()
			k, v := c.First()
			for ; k != nil && bytes.Compare(k, cut) < 0 && n < pruneChunk; k, v = c.Next() {
				doomed = append(doomed, bytes.Clone(k))
				var err error
				if recs, err = parseEntry(recs[:0], k, v); err != nil {
					// Unreadable, and starting before the cut: it goes,
					// counted as one record, as it would have before
					// blocks, rather than keeping every later Prune from
					// deleting anything.
					n++
					continue
				}
				i := 0
				for i < len(recs) && bytes.Compare(recs[i].key, cut) < 0 {
					i++
				}
				n += i
				if i < len(recs) {
					kept = recs[i:]
					break
				}
			}
			done = k == nil || bytes.Compare(k, cut) >= 0 || kept != nil
			for _, k := range doomed {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return putBlocks(b, kept, 2*blockRecords, 2*s.blockBytes)
		})
		if err != nil {
			return total, err // this chunk rolled back
		}
		total += n
		if done {
			return total, nil
		}
	}
}
