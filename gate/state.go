package gate

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// statePool holds one State per bbolt file for the whole process, so that a
// config reload (which provisions the new app before cleaning up the old one)
// shares the open file, the counters and the reservations in flight.
var statePool = caddy.NewUsagePool()

// State is what must exist once per process and DB file: the store (opened
// by the app's Start, so `caddy validate` never touches the file), the quota engine with
// its reservations, caches of users and keys, and the usage waiting to be
// committed.
type State struct {
	path   string
	logger *zap.Logger

	openMu sync.Mutex
	db     *store.Store
	// closed is set once Destruct has closed the file: a request that
	// outlived the config (a reload to another file) must not open it
	// again, which would keep it locked for good. Guarded by openMu.
	closed bool
	// closing refuses records from the start of Destruct on, so that none
	// lands after its last commit and is left uncommitted. Guarded by
	// pendMu, which a record holds from the check to its append.
	closing bool

	// Engine holds every user's windows and reservations.
	Engine *quota.Engine

	users readCache[string, *store.User] // by ID; forgotten when changed
	keys  readCache[[32]byte, *APIKey]   // by hash; forgotten when revoked

	pendMu  sync.Mutex
	pending store.Batch
	// pending.Records is the chunk records are appended to: when it is
	// full it joins full and an empty chunk from free takes its place, so
	// that no record is ever copied under pendMu (a slice growing there
	// would copy the whole batch while every request waits). Flush joins
	// the chunks into batch.
	full, free [][]store.Record
	// batch is the record slice of the last committed batch, emptied, for
	// the next one to be joined in; guarded by flushMu.
	batch []store.Record

	// streams are the requests in flight that each commit checkpoints
	// (see Track).
	streamsMu sync.Mutex
	streams   map[*Stream]struct{}
	// lastOpenID numbers the streams' open records; guarded by streamsMu.
	lastOpenID uint64
	// lastCheckpoint is when checkpoint last ran; guarded by flushMu.
	lastCheckpoint time.Time

	flushMu    sync.Mutex // one commit at a time
	flushEvery atomic.Int64
	retention  atomic.Int64
	startOnce  sync.Once
	stopOnce   sync.Once
	stop       chan struct{}
	done       chan struct{}
}

func newState(path string, logger *zap.Logger) *State {
	s := &State{
		path:    path,
		logger:  logger,
		streams: make(map[*Stream]struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.Engine = quota.NewEngine(quota.Options{Load: s.loadCounters})
	s.flushEvery.Store(int64(time.Second))
	liveStates.Store(s, struct{}{})
	return s
}

// Path is the bbolt file's path.
func (s *State) Path() string { return s.path }

// DB returns the store, opening the file on first use (the app's Start).
func (s *State) DB() (*store.Store, error) {
	s.openMu.Lock()
	defer s.openMu.Unlock()
	if s.db != nil {
		return s.db, nil
	}
	if s.closed {
		return nil, fmt.Errorf("llm_gate store %s was closed when the config using it was replaced", s.path)
	}
	db, err := store.Open(s.path, store.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening llm_gate store %s: %w", s.path, err)
	}
	s.logger.Info("store opened", zap.String("path", s.path))
	if n, dropped := db.Recovered(); n+dropped > 0 {
		// Requests whose process stopped without ending them (a crash),
		// or that outlived a reload away from this file: their records
		// hold what they had produced at the last commit.
		s.logger.Warn("recorded the requests left running at the file's last use as incomplete",
			zap.String("path", s.path), zap.Int("requests", n), zap.Int("unreadable", dropped))
	}
	s.db = db
	return db, nil
}

func (s *State) loadCounters(user string) ([]byte, error) {
	db, err := s.DB()
	if err != nil {
		return nil, err
	}
	return db.LoadCounters(user)
}

// FlushInterval is how often pending usage is committed; 0 means the
// caller of Record commits before it returns.
func (s *State) FlushInterval() time.Duration { return time.Duration(s.flushEvery.Load()) }

func (s *State) configure(flush, retention time.Duration) {
	s.flushEvery.Store(int64(flush))
	s.retention.Store(int64(retention))
}

// start launches the background writer once per State.
func (s *State) start() {
	s.startOnce.Do(func() { go s.run() })
}

func (s *State) run() {
	defer close(s.done)
	// The writer wakes when the next flush is due, and at least once a
	// second, so that a reload that changes the interval takes effect
	// within a second.
	lastFlush := time.Now()
	wake := time.NewTimer(s.wakeIn(0))
	defer wake.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-s.stop:
			return
		case now := <-wake.C:
			every := s.FlushInterval()
			if every == 0 && s.streaming() {
				// Requests commit their own records; the streams still
				// running are checkpointed every second.
				every = time.Second
			}
			if every > 0 && now.Sub(lastFlush) >= every-time.Millisecond {
				if err := s.Flush(); err != nil {
					s.logger.Error("committing usage", zap.Error(err))
				}
				lastFlush = now
			}
			if keep := time.Duration(s.retention.Load()); keep > 0 && now.Sub(lastPrune) >= time.Hour {
				lastPrune = now
				s.prune(now.Add(-keep))
			}
			wake.Reset(s.wakeIn(time.Since(lastFlush)))
		}
	}
}

// wakeIn is how long the writer sleeps, elapsed after the last flush: until
// the next one is due, at most a second.
func (s *State) wakeIn(elapsed time.Duration) time.Duration {
	if every := s.FlushInterval(); every > 0 {
		return min(max(every-elapsed, time.Millisecond), time.Second)
	}
	return time.Second
}

func (s *State) prune(before time.Time) {
	s.openMu.Lock()
	db := s.db
	s.openMu.Unlock()
	if db == nil {
		return
	}
	n, err := db.Prune(before)
	if err != nil {
		s.logger.Error("pruning records", zap.Error(err))
	} else if n > 0 {
		s.logger.Info("pruned records", zap.Int("records", n), zap.Time("before", before))
	}
}

// keyUsedGrain is how precise a key's stored last-used time is: within a
// minute, like the "last used" of most API consoles, so that 10,000 keys in
// constant use cost 10,000 key writes a minute rather than one per flush.
const keyUsedGrain = time.Minute

// Record queues a per-request record and, when the flush interval is 0,
// commits it (and everything else pending) before returning.
func (s *State) Record(rec store.Record) error { return s.record(rec, 0) }

// record is Record, deleting the open record closeID (if not 0) in the
// same commit.
func (s *State) record(rec store.Record, closeID uint64) error {
	// One invalid record would fail every later commit of its batch.
	if err := rec.Validate(); err != nil {
		s.closeOpen(closeID) // the open record must not outlive the request
		return err
	}
	s.pendMu.Lock()
	if s.closing {
		// Requests still running when a reload moved to another file:
		// their open records, if any, are in it and stay there.
		s.pendMu.Unlock()
		return fmt.Errorf("llm_gate store %s was closed when the config using it was replaced: the usage of %s's request is lost", s.path, rec.User)
	}
	if len(s.pending.Records) == cap(s.pending.Records) {
		s.nextChunk()
	}
	s.pending.Records = append(s.pending.Records, rec)
	if closeID != 0 {
		s.pending.Closed = append(s.pending.Closed, closeID)
	}
	s.pendMu.Unlock()
	if s.FlushInterval() == 0 {
		return s.Flush()
	}
	return nil
}

// Flush commits pending records, key last-used times and changed counters
// (with the progress of the streams in flight) in one transaction. On
// failure the usage stays pending for the next try.
func (s *State) Flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()

	open := s.checkpoint()
	s.pendMu.Lock()
	b := s.pending
	chunks := append(s.full, b.Records)
	s.pending, s.full = store.Batch{}, nil
	s.pendMu.Unlock()
	if len(chunks) > 1 {
		recs := s.batch[:0]
		if n := len(chunks) * recordChunk; cap(recs) < n {
			recs = make([]store.Record, 0, n+n/4)
		}
		for _, c := range chunks {
			recs = append(recs, c...)
		}
		b.Records = recs
	}
	s.batch = nil // back below once committed
	b.Counters = mergeCounters(b.Counters, s.Engine.Dirty())
	b.Open = mergeOpen(b.Open, open)
	if len(b.Records) == 0 && len(b.Counters) == 0 && len(b.KeyLastUsed) == 0 && len(b.Open) == 0 && len(b.Closed) == 0 {
		return nil
	}
	start := time.Now()
	db, err := s.DB()
	if err == nil {
		err = db.Commit(&b)
	}
	observeCommit(len(b.Records), time.Since(start), err)
	if err != nil {
		s.requeue(b)
		return err
	}
	// Keep the joined slice while it fits the traffic: a burst's slice is
	// dropped once batches fill less than a quarter of it, or one chunk.
	if len(chunks) > 1 && len(b.Records) >= cap(b.Records)/4 {
		clear(b.Records) // drop the strings the records hold
		s.batch = b.Records[:0]
	}
	s.recycle(chunks)
	return nil
}

// recordChunk is how many records a chunk of pending holds.
const recordChunk = 256

// nextChunk moves the full chunk of pending records to full and starts an
// empty one. Under pendMu.
func (s *State) nextChunk() {
	if len(s.pending.Records) > 0 {
		s.full = append(s.full, s.pending.Records)
	}
	if n := len(s.free); n > 0 {
		s.pending.Records, s.free = s.free[n-1], s.free[:n-1]
		return
	}
	s.pending.Records = make([]store.Record, 0, recordChunk)
}

// recycle empties committed chunks for later records. The free list keeps
// as many as the last batch used.
func (s *State) recycle(chunks [][]store.Record) {
	for i, c := range chunks {
		clear(c) // drop the strings the records hold
		chunks[i] = c[:0]
	}
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	s.free = s.free[:0]
	for _, c := range chunks {
		if cap(c) == recordChunk {
			s.free = append(s.free, c)
		}
	}
}

func mergeCounters(dst, src map[string][]byte) map[string][]byte {
	if dst == nil {
		return src
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// requeue puts a batch that failed to commit back in front of what arrived
// since, so nothing is lost and order is kept.
func (s *State) requeue(b store.Batch) {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	for _, c := range s.full {
		b.Records = append(b.Records, c...)
	}
	b.Records = append(b.Records, s.pending.Records...)
	s.full = nil
	for k, v := range s.pending.KeyLastUsed {
		if b.KeyLastUsed == nil {
			b.KeyLastUsed = make(map[string]time.Time)
		}
		b.KeyLastUsed[k] = v
	}
	// Counters changed since are newer than the failed ones.
	b.Counters = mergeCounters(b.Counters, s.pending.Counters)
	b.Open = mergeOpen(b.Open, s.pending.Open)
	b.Closed = append(b.Closed, s.pending.Closed...) // after the failed batch's open records
	s.pending = b
}

// Destruct implements caddy.Destructor: it runs when the last app using this
// file lets go (process stop, or a reload to another file). It commits
// everything and closes the file.
func (s *State) Destruct() error {
	liveStates.Delete(s)
	s.stopOnce.Do(func() { close(s.stop) })
	s.startOnce.Do(func() { close(s.done) }) // never started: nothing to wait for
	<-s.done
	s.pendMu.Lock()
	s.closing = true // later records are refused, not left pending unseen
	s.pendMu.Unlock()
	err := s.Flush()
	s.openMu.Lock()
	defer s.openMu.Unlock()
	s.closed = true
	if s.db != nil {
		err = errors.Join(err, s.db.Close())
		s.db = nil
		s.logger.Info("store closed", zap.String("path", s.path))
	}
	return err
}

// User returns a user from the cache or the store; store.ErrNotFound if
// there is none.
func (s *State) User(id string) (*store.User, error) {
	if u, ok := s.users.get(id); ok {
		return u, nil
	}
	db, err := s.DB()
	if err != nil {
		return nil, err
	}
	gen := s.users.generation()
	u, err := db.GetUser(id)
	if err != nil {
		return nil, err
	}
	s.users.put(id, u, gen)
	return u, nil
}

// EnsureUser returns the stored user u.ID, creating it from u when absent
// (a JWT user's first request).
func (s *State) EnsureUser(u *store.User) (*store.User, error) {
	if got, err := s.User(u.ID); err == nil || !errors.Is(err, store.ErrNotFound) {
		return got, err
	}
	db, err := s.DB()
	if err != nil {
		return nil, err
	}
	if _, err := db.CreateUserIfMissing(u); err != nil {
		return nil, err
	}
	s.users.forget(u.ID)
	return s.User(u.ID)
}

// PutUser creates or replaces a user.
func (s *State) PutUser(u *store.User) error {
	db, err := s.DB()
	if err != nil {
		return err
	}
	if err := db.PutUser(u); err != nil {
		return err
	}
	s.users.forget(u.ID)
	return nil
}

// UpdateUser changes a user in one transaction.
func (s *State) UpdateUser(id string, fn func(*store.User) error) (*store.User, error) {
	db, err := s.DB()
	if err != nil {
		return nil, err
	}
	u, err := db.UpdateUser(id, fn)
	s.users.forget(id)
	return u, err
}

// DeleteUser deletes a user, revokes its keys at once and forgets its
// windows; its records stay.
//
// It holds off commits meanwhile: a commit's counters are read from the
// engine before they are written, and the user's old counters, read before
// the deletion, would otherwise be written after it if the id was created
// again in between (by an admin, or by its JWT's next request), and the new
// user would start with the old one's usage. For the same reason counters
// of the user waiting after a failed commit are dropped.
func (s *State) DeleteUser(id string) error {
	db, err := s.DB()
	if err != nil {
		return err
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if _, err := db.DeleteUser(id); err != nil {
		return err
	}
	s.users.forget(id)
	s.keys.forgetIf(func(_ [32]byte, k *APIKey) bool { return k.UserID == id })
	s.Engine.Forget(id)
	s.pendMu.Lock()
	delete(s.pending.Counters, id)
	s.pendMu.Unlock()
	return nil
}

// APIKey is a cached API key, with what its requests need besides: its
// user, as the users cache last gave it, where the quota engine keeps the
// user's windows, and when the key's last use was last queued for the
// store. A key's requests find them all with the key, rather than each
// with a lookup of its own among all users.
type APIKey struct {
	store.Key // by value: one memory access less for every request
	// Quota is for quota.Request.Ref.
	Quota  quota.UserRef
	user   atomic.Pointer[keyUser]
	queued atomic.Int64 // Unix nanoseconds of the last use queued; 0 none
}

// keyUser is an APIKey's user and the users cache's generation before it
// was read.
type keyUser struct {
	u   *store.User
	gen uint64
}

// KeyByHash finds an API key by the SHA-256 of its secret.
func (s *State) KeyByHash(h [32]byte) (*APIKey, error) {
	if k, ok := s.keys.get(h); ok {
		return k, nil
	}
	db, err := s.DB()
	if err != nil {
		return nil, err
	}
	gen := s.keys.generation()
	sk, err := db.KeyByHash(h)
	if err != nil {
		return nil, err
	}
	k := &APIKey{Key: *sk}
	s.keys.put(h, k, gen)
	return k, nil
}

// KeyUser is User(k.UserID), answered from k while no user has changed
// since k last asked: any change moves the users cache's generation on, so
// that the next request reads the user again.
func (s *State) KeyUser(k *APIKey) (*store.User, error) {
	gen := s.users.generation()
	if c := k.user.Load(); c != nil && c.gen == gen {
		return c.u, nil
	}
	u, err := s.User(k.UserID)
	if err != nil {
		return nil, err
	}
	k.user.Store(&keyUser{u, gen})
	return u, nil
}

// KeyUsed notes a use of k at at: the key's stored last-used time is
// written with the next commit when it is keyUsedGrain older than the last
// use queued, so that a key in constant use is written once a minute
// rather than with every commit.
func (s *State) KeyUsed(k *APIKey, at time.Time) {
	last, now := k.queued.Load(), at.UnixNano()
	if last != 0 && now-last < int64(keyUsedGrain) || !k.queued.CompareAndSwap(last, now) {
		return // queued within the minute, or by a request at the same moment
	}
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	if s.pending.KeyLastUsed == nil {
		s.pending.KeyLastUsed = make(map[string]time.Time)
	}
	// Two uses a minute apart can pass their CAS in order and reach this
	// lock in the other: the later time stays.
	if prev, ok := s.pending.KeyLastUsed[k.ID]; !ok || at.After(prev) {
		s.pending.KeyLastUsed[k.ID] = at
	}
}

// PutKey stores a new key.
func (s *State) PutKey(k *store.Key) error {
	db, err := s.DB()
	if err != nil {
		return err
	}
	return db.PutKey(k)
}

// RevokeKey revokes a key; the very next request with it is refused.
func (s *State) RevokeKey(id string, at time.Time) (*store.Key, error) {
	db, err := s.DB()
	if err != nil {
		return nil, err
	}
	k, err := db.RevokeKey(id, at)
	if err != nil {
		return nil, err
	}
	s.keys.forget(k.Hash)
	return k, nil
}

func (s *State) size() int64 {
	s.openMu.Lock()
	defer s.openMu.Unlock()
	if s.db == nil {
		return 0
	}
	return s.db.Size()
}
