package gate

import (
	"errors"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// TestWakeFollowsFlushInterval: the writer's wakes after a flush land on
// the next flush's due time, whatever the interval (1.5 s used to flush
// every 2 s, losing more than an interval in a crash), and come at least
// once a second.
func TestWakeFollowsFlushInterval(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	defer s.Destruct()
	for _, every := range []time.Duration{250 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2500 * time.Millisecond, 5 * time.Second} {
		s.configure(every, 0)
		elapsed, wakes := time.Duration(0), 0
		for elapsed < every {
			d := s.wakeIn(elapsed)
			if d > time.Second || d <= 0 {
				t.Fatalf("flush_interval %v: a sleep of %v", every, d)
			}
			elapsed += d
			wakes++
		}
		if elapsed != every {
			t.Errorf("flush_interval %v: the writer wakes to flush after %v (%d wakes)", every, elapsed, wakes)
		}
	}
	s.configure(0, 0)
	if got := s.wakeIn(time.Hour); got != time.Second {
		t.Errorf("flush_interval 0: the writer wakes every %v, want 1s", got)
	}
}

// TestRecordAndDestruct: with a flush interval the record waits in memory,
// a failed validation is refused at once, and Destruct commits what waits.
func TestRecordAndDestruct(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := newState(path, zap.NewNop())
	s.configure(time.Hour, 0)
	if err := s.Record(store.Record{Time: time.Now(), User: "a", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 3, CompletionTokens: 4}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(store.Record{Time: time.Now(), User: ""}); err == nil {
		t.Fatal("an invalid record was queued")
	}
	if s.db != nil {
		t.Fatal("the store opened before anything needed it")
	}
	if err := s.Destruct(); err != nil {
		t.Fatal(err)
	}
	// A request that outlived the config (a reload to another file): its
	// record is refused, said so, and the file is not opened again, which
	// would keep it locked for the next config that uses it.
	late := store.Record{Time: time.Now(), User: "late", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 1}
	if err := s.Record(late); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("a record after Destruct: %v", err)
	}
	if _, err := s.DB(); err == nil {
		t.Fatal("the store opened again after Destruct")
	}
	db, err := store.Open(path, store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, _, err := db.Records(store.RecordQuery{User: "a"})
	if err != nil || len(recs) != 1 || recs[0].CompletionTokens != 4 {
		t.Fatalf("after Destruct: %+v %v", recs, err)
	}
}

// TestFlushReusesRecords: records are queued in chunks that later batches
// reuse, and a batch of several chunks is joined in a slice kept for the
// next one while it fits; every record of every batch lands in the file
// intact, and batches far smaller than the slice let it go.
func TestFlushReusesRecords(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	defer s.Destruct()
	s.configure(time.Hour, 0)
	base := time.Now()
	rec := func(i int) store.Record {
		return store.Record{Time: base.Add(time.Duration(i) * time.Millisecond), User: "u" + strconv.Itoa(i%3), Model: "m" + strconv.Itoa(i),
			Endpoint: "chat", Status: 200, PromptTokens: int64(i), CompletionTokens: 1}
	}
	record := func(from, to int) {
		for i := from; i < to; i++ {
			if err := s.Record(rec(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	n := 2*recordChunk + 10 // three chunks
	record(0, n)
	if len(s.free) != 3 || cap(s.batch) < n || len(s.batch) != 0 {
		t.Fatalf("after a flush of three chunks: %d free chunks, the joined slice has len %d cap %d", len(s.free), len(s.batch), cap(s.batch))
	}
	chunk, joined := &s.free[2][:1][0], &s.batch[:1][0]
	record(n, 2*n)
	if &s.batch[:1][0] != joined {
		t.Fatal("the second batch was not joined in the first one's slice")
	}
	if !slices.ContainsFunc(s.free, func(c []store.Record) bool { return &c[:1][0] == chunk }) {
		t.Fatal("the second batch did not reuse the first one's chunks")
	}
	record(2*n, 2*n+2) // one chunk, not joined: the slice goes
	if s.batch != nil || len(s.free) != 1 {
		t.Fatalf("after a batch of 2: the joined slice has cap %d, %d free chunks", cap(s.batch), len(s.free))
	}
	db, err := s.DB()
	if err != nil {
		t.Fatal(err)
	}
	recs := allRecords(t, db)
	if len(recs) != 2*n+2 {
		t.Fatalf("%d records in the file, want %d", len(recs), 2*n+2)
	}
	for _, r := range recs {
		i := int(r.PromptTokens)
		if want := rec(i); r.User != want.User || r.Model != want.Model || !r.Time.Equal(want.Time) {
			t.Fatalf("record %d reads back as %+v", i, r)
		}
	}
}

// keyedState is a State whose user u has the API key k1 (hash {1}), and
// that key as the State's cache gives it.
func keyedState(t *testing.T, u *store.User) (*State, *APIKey) {
	t.Helper()
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	t.Cleanup(func() { s.Destruct() })
	if err := s.PutUser(u); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKey(&store.Key{ID: "k1", UserID: u.ID, Hash: [32]byte{1}, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	k, err := s.KeyByHash([32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

// TestKeyLastUsedGrain: a key's last-used time reaches the store on its
// first use, then again only once it is a minute older than what was
// written; a use older than the last one queued (a request that started
// earlier) changes nothing.
func TestKeyLastUsedGrain(t *testing.T) {
	s, k := keyedState(t, &store.User{ID: "a"})
	s.configure(time.Hour, 0)
	db, err := s.DB()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Second)
	stored := func() time.Time {
		t.Helper()
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		k, err := db.GetKey("k1")
		if err != nil {
			t.Fatal(err)
		}
		return k.LastUsed
	}
	for _, step := range []struct{ at, want time.Duration }{
		{0, 0},
		{10 * time.Second, 0},
		{59 * time.Second, 0},
		{60 * time.Second, 60 * time.Second},
		{61 * time.Second, 60 * time.Second},
		{3 * time.Minute, 3 * time.Minute},
	} {
		s.KeyUsed(k, t0.Add(step.at))
		if got := stored(); !got.Equal(t0.Add(step.want)) {
			t.Errorf("after a use at +%v the stored last use is +%v, want +%v", step.at, got.Sub(t0), step.want)
		}
	}
	s.KeyUsed(k, t0.Add(5*time.Minute))
	s.KeyUsed(k, t0.Add(2*time.Minute))
	if got := stored(); !got.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("stored last use +%v, want +5m", got.Sub(t0))
	}
}

// TestKeyUserFollowsChanges: a key's requests take its user from the key's
// entry, and see every change to the user from the request after it on
// (disabled, another user changed, replaced, deleted).
func TestKeyUserFollowsChanges(t *testing.T) {
	s, k := keyedState(t, &store.User{ID: "a", Plan: "free"})
	user := func() *store.User {
		t.Helper()
		u, err := s.KeyUser(k)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	first := user()
	if again := user(); again != first || first.Plan != "free" {
		t.Fatalf("the second request's user %p %+v, want the first's %p", again, again, first)
	}
	if _, err := s.UpdateUser("a", func(u *store.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if u := user(); !u.Disabled {
		t.Fatalf("after disabling: %+v", u)
	}
	// A change to another user moves the generation on too: the key
	// reads its own user again and finds it unchanged.
	if err := s.PutUser(&store.User{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	if u := user(); !u.Disabled {
		t.Fatalf("after another user's change: %+v", u)
	}
	if err := s.PutUser(&store.User{ID: "a", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	if u := user(); u.Plan != "pro" || u.Disabled {
		t.Fatalf("after replacing: %+v", u)
	}
	if err := s.DeleteUser("a"); err != nil {
		t.Fatal(err)
	}
	if u, err := s.KeyUser(k); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after deleting: %+v, %v", u, err)
	}
}

// TestActiveRequests: the active_requests gauge reads the in-flight count
// the handler keeps, which InFlight also answers.
func TestActiveRequests(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Metrics.ActiveRequests)
	gauge := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("gather: %v, %d families", err, len(mfs))
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	base := InFlight()
	RequestStarted()
	RequestStarted()
	if got := InFlight(); got != base+2 {
		t.Errorf("InFlight %d after two starts, want %d", got, base+2)
	}
	if got := gauge(); got != float64(base+2) {
		t.Errorf("active_requests %v, want %d", got, base+2)
	}
	RequestDone()
	RequestDone()
	if got := gauge(); got != float64(base) {
		t.Errorf("active_requests %v after both ended, want %d", got, base)
	}
}

// TestUserCacheKeepsNoStaleRead: a user read from the store before a change
// and cached after it would be served until the next change; the cache
// refuses a read made before any change since.
func TestUserCacheKeepsNoStaleRead(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	defer s.Destruct()
	if err := s.PutUser(&store.User{ID: "a", Plan: "free"}); err != nil {
		t.Fatal(err)
	}
	gen := s.users.generation()
	stale, err := s.User("a") // the read, before the update
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateUser("a", func(u *store.User) error { u.Plan = "pro"; return nil }); err != nil {
		t.Fatal(err)
	}
	s.users.put("a", stale, gen) // cached after the update, as a slow reader would
	if u, err := s.User("a"); err != nil || u.Plan != "pro" {
		t.Fatalf("User after the update: %+v, %v; want plan pro", u, err)
	}
}

// TestKeyCacheKeepsNoStaleRead: a key read from the store before it was
// revoked, or before its user was deleted, and cached after that would be
// accepted until evicted; the cache refuses a read made before a revocation
// since.
func TestKeyCacheKeepsNoStaleRead(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	defer s.Destruct()
	db, err := s.DB()
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		name   string
		revoke func(user, key string) error
	}{
		{"revoked", func(_, key string) error { _, err := s.RevokeKey(key, time.Now()); return err }},
		{"user deleted", func(user, _ string) error { return s.DeleteUser(user) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			user, id, h := "u"+strconv.Itoa(i), "k"+strconv.Itoa(i), [32]byte{byte(i + 1)}
			if err := s.PutUser(&store.User{ID: user}); err != nil {
				t.Fatal(err)
			}
			if err := s.PutKey(&store.Key{ID: id, UserID: user, Hash: h, Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
			// A request's cache miss reads the key; the revocation lands;
			// then the request caches what it read.
			gen := s.keys.generation()
			stale, err := db.KeyByHash(h)
			if err != nil || !stale.Active(time.Now()) {
				t.Fatalf("the key before: %+v, %v", stale, err)
			}
			if err := c.revoke(user, id); err != nil {
				t.Fatal(err)
			}
			s.keys.put(h, &APIKey{Key: *stale}, gen)
			if k, err := s.KeyByHash(h); err == nil && k.Active(time.Now()) {
				t.Fatalf("the key is still accepted: %+v", k)
			}
		})
	}
}

// spend charges 100 tokens to user, as a settled request would.
func spend(t *testing.T, s *State, user string) {
	t.Helper()
	r, err := s.Engine.Admit(quota.Request{User: user, Prompt: 10, Output: 10})
	if err != nil {
		t.Fatal(err)
	}
	r.Settle(100, 0)
}

func totalUsed(t *testing.T, s *State, user string) int64 {
	t.Helper()
	tok, _, err := s.Engine.Usage(user)
	if err != nil {
		t.Fatal(err)
	}
	return tok[quota.Total]
}

// TestDeletedUsersUsageStaysDeleted: a user deleted and created again
// starts with no usage, even when a commit was under way during the
// deletion (its counters read before it), or a failed commit left the old
// counters waiting.
func TestDeletedUsersUsageStaysDeleted(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	defer s.Destruct()
	recreate := func() {
		if err := s.DeleteUser("zed"); err != nil {
			t.Error(err)
		}
		if err := s.PutUser(&store.User{ID: "zed"}); err != nil {
			t.Error(err)
		}
	}
	t.Run("failed commit", func(t *testing.T) {
		if err := s.PutUser(&store.User{ID: "zed"}); err != nil {
			t.Fatal(err)
		}
		spend(t, s, "zed")
		s.pending.Counters = s.Engine.Dirty() // as requeue leaves them
		recreate()
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := totalUsed(t, s, "zed"); n != 0 {
			t.Fatalf("the new zed has used %d tokens", n)
		}
	})
	t.Run("commit under way", func(t *testing.T) {
		inherited := 0
		for range 200 {
			spend(t, s, "zed")
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Flush() }()
			recreate()
			<-done
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			if totalUsed(t, s, "zed") != 0 {
				inherited++
				recreate()
			}
		}
		if inherited > 0 {
			t.Errorf("%d of 200 re-created users started with the deleted one's usage", inherited)
		}
	})
}

// closed reports whether c is closed, without waiting.
func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestRecordDuringDestruct: a record accepted while the store closes is in
// the file; one that comes too late is refused, never silently dropped.
func TestRecordDuringDestruct(t *testing.T) {
	for run := range 50 {
		path := filepath.Join(t.TempDir(), "g.db")
		s := newState(path, zap.NewNop())
		s.configure(time.Hour, 0)
		if _, err := s.DB(); err != nil {
			t.Fatal(err)
		}
		var accepted atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for !closed(stop) {
					if s.Record(store.Record{Time: time.Now(), User: "a", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 1}) == nil {
						accepted.Add(1)
					}
					runtime.Gosched()
				}
			})
		}
		for accepted.Load() == 0 { // the writers are running: Destruct meets them
			runtime.Gosched()
		}
		if err := s.Destruct(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		db, err := store.Open(path, store.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Usage(store.UsageQuery{})
		db.Close()
		if err != nil || len(rows) != 1 {
			t.Fatal(rows, err)
		}
		if rows[0].Requests != accepted.Load() {
			t.Fatalf("run %d: %d records accepted, %d in the file", run, accepted.Load(), rows[0].Requests)
		}
	}
}

// TestFailedCommitKeepsEveryRecord: a batch of several chunks whose commit
// fails goes back in front of the records queued since, full chunks and
// all, and the next commit writes every one of them once.
func TestFailedCommitKeepsEveryRecord(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	defer s.Destruct()
	s.configure(time.Hour, 0)
	base := time.Now()
	next := 0
	rec := func() store.Record {
		next++
		return store.Record{Time: base.Add(time.Duration(next) * time.Millisecond), User: "u", Model: "m",
			Endpoint: "chat", Status: 200, PromptTokens: int64(next)}
	}
	record := func(n int) {
		for range n {
			if err := s.Record(rec()); err != nil {
				t.Fatal(err)
			}
		}
	}
	db, err := s.DB()
	if err != nil {
		t.Fatal(err)
	}
	record(2*recordChunk + 1)
	if err := db.Close(); err != nil { // the commit below fails
		t.Fatal(err)
	}
	if err := s.Flush(); err == nil {
		t.Fatal("a commit to a closed file succeeded")
	}
	record(recordChunk + 1) // after the requeued batch, into chunks again
	// A batch failing while two chunks and a bit were queued behind it
	// goes in front of them all.
	failed := store.Batch{Records: []store.Record{rec(), rec()}}
	s.pendMu.Lock()
	behind := slices.Concat(append(slices.Clone(s.full), s.pending.Records)...)
	s.pendMu.Unlock()
	record(2*recordChunk + 1)
	s.requeue(failed)
	s.pendMu.Lock()
	queued := slices.Concat(append(slices.Clone(s.full), s.pending.Records)...)
	s.pendMu.Unlock()
	if len(queued) != len(behind)+2+2*recordChunk+1 || queued[0] != failed.Records[0] || queued[1] != failed.Records[1] ||
		queued[2] != behind[0] || queued[len(queued)-1].PromptTokens != int64(next) {
		t.Fatalf("%d records queued after the failed batch's", len(queued))
	}
	record(3)
	s.openMu.Lock()
	s.db = nil // the next commit opens the file again
	s.openMu.Unlock()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if db, err = s.DB(); err != nil {
		t.Fatal(err)
	}
	seen := make(map[int64]int)
	for _, r := range allRecords(t, db) {
		seen[r.PromptTokens]++
	}
	for i := 1; i <= next; i++ {
		if seen[int64(i)] != 1 {
			t.Errorf("record %d is in the file %d times", i, seen[int64(i)])
		}
	}
	if len(seen) != next {
		t.Errorf("%d records in the file, want %d", len(seen), next)
	}
}

// allRecords reads every record in the file, page by page.
func allRecords(t *testing.T, db *store.Store) []store.Record {
	t.Helper()
	var recs []store.Record
	for q := (store.RecordQuery{Limit: 1000}); ; {
		page, next, err := db.Records(q)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, page...)
		if next == "" {
			return recs
		}
		q.Cursor = next
	}
}
