package gate

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// TestCheckpointStress: streams tracked and reported while commits
// checkpoint them, records commit synchronously (flush_interval 0) or not,
// the admin resets and deletes users: no race, no deadlock, every Track
// undone, nothing left reserved.
func TestCheckpointStress(t *testing.T) {
	for _, flush := range []time.Duration{0, 5 * time.Millisecond} {
		s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
		s.configure(flush, 0)
		s.start()
		for _, u := range []string{"a", "b", "c"} {
			if err := s.PutUser(&store.User{ID: u}); err != nil {
				t.Fatal(err)
			}
		}
		var l quota.Limits
		l.Tokens[quota.Day] = 1 << 40
		l.Tokens[quota.Minute] = 1 << 40
		stop := make(chan struct{})
		var bg, streams sync.WaitGroup
		bg.Go(func() {
			for !closed(stop) {
				_ = s.Flush()
			}
		})
		bg.Go(func() {
			for !closed(stop) {
				_ = s.Engine.Reset("a")
				_ = s.Flush()
				_ = s.DeleteUser("b")
				_ = s.PutUser(&store.User{ID: "b"})
				time.Sleep(time.Millisecond)
			}
		})
		for g := range 8 {
			streams.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 2))
				for i := range 200 {
					user := []string{"a", "b", "c"}[r.IntN(3)]
					res, err := s.Engine.Admit(quota.Request{User: user, Limits: l, Prompt: 20, Output: 100})
					if err != nil {
						t.Error(err)
						return
					}
					rec := store.Record{Time: time.Now(), User: user, Model: "m", Endpoint: "chat"}
					st := s.Track(res.Track(), rec)
					n := int64(20)
					for range r.IntN(20) {
						n += r.Int64N(10)
						st.Report(200, 20, n)
						if r.IntN(4) == 0 {
							time.Sleep(time.Millisecond) // let commits write open records
						}
					}
					rec.Status, rec.PromptTokens = 200, 20
					if i%7 == 0 {
						res.Cancel()
						s.Untrack(st)
					} else {
						res.Settle(20, n-20+r.Int64N(21)-10)
						_ = s.Finish(st, rec)
						s.Untrack(st) // as the handler's defer does: nothing more
					}
				}
			})
		}
		done := make(chan struct{})
		go func() { streams.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("deadlock")
		}
		close(stop)
		bg.Wait()
		if s.streaming() || s.Engine.Reservations() != 0 {
			t.Errorf("flush %v: %d streams tracked, %d reservations", flush, len(s.streams), s.Engine.Reservations())
		}
		for _, u := range []string{"a", "b", "c"} {
			st, _ := s.Engine.Status(u, l)
			for _, w := range st {
				if w.Reserved != 0 {
					t.Errorf("flush %v: user %s: %+v", flush, u, w)
				}
			}
		}
		if err := s.Destruct(); err != nil {
			t.Fatal(err)
		}
		// Every open record was replaced by its request's record or
		// deleted with its cancel: none is left for a restart to recover.
		db, err := store.Open(s.path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if n, dropped := db.Recovered(); n != 0 || dropped != 0 {
			t.Errorf("flush %v: %d open records left (%d unreadable)", flush, n, dropped)
		}
		db.Close()
	}
}

// TestStreamOutlivesStore: a stream still running when its store closes (a
// reload to another file, a stop that did not wait for it) keeps its open
// record there, with what it had produced: its own record is refused, and
// the next open of the file makes the open record an incomplete one.
func TestStreamOutlivesStore(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	s.configure(time.Hour, 0)
	s.start()
	var l quota.Limits
	l.Tokens[quota.Day] = 1 << 40
	res, err := s.Engine.Admit(quota.Request{User: "a", Limits: l, Prompt: 20, Output: 500})
	if err != nil {
		t.Fatal(err)
	}
	rec := store.Record{Time: time.Now(), User: "a", Model: "m", Endpoint: "chat", Plan: "p"}
	st := s.Track(res.Track(), rec)
	st.Report(200, 20, 120)
	if err := s.Destruct(); err != nil {
		t.Fatal(err)
	}
	res.Settle(20, 150)
	rec.Status, rec.PromptTokens, rec.CompletionTokens = 200, 20, 150
	if err := s.Finish(st, rec); err == nil {
		t.Fatal("a record was accepted after the store closed")
	}
	db, err := store.Open(s.path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, _, err := db.Records(store.RecordQuery{})
	if n, _ := db.Recovered(); n != 1 || err != nil || len(recs) != 1 {
		t.Fatalf("recovered %d: %+v %v", n, recs, err)
	}
	if r := recs[0]; !r.Incomplete || r.Status != 200 || r.PromptTokens != 20 || r.CompletionTokens != 100 || r.Plan != "p" {
		t.Errorf("recovered %+v", r)
	}
}

// TestInvalidOpenRecordSkipped: a stream whose record the store would
// refuse (a model name longer than it keeps, from the request body) is
// checkpointed without an open record: one in a batch failed every commit
// after it (it was requeued with the batch), other users' records and
// counters with them, and the last commit at a stop.
func TestInvalidOpenRecordSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := newState(path, zap.NewNop())
	s.configure(time.Hour, 0) // commits only when the test flushes
	if _, err := s.DB(); err != nil {
		t.Fatal(err)
	}
	var l quota.Limits
	l.Tokens[quota.Day] = 1 << 40
	res, err := s.Engine.Admit(quota.Request{User: "mallory", Limits: l, Prompt: 20, Output: 500})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("m", store.MaxFieldLen+1) // a model name from a request body
	rec := store.Record{Time: time.Now(), User: "mallory", Model: long, Endpoint: "chat"}
	st := s.Track(res.Track(), rec)
	st.Report(200, 20, 120)

	// Another user's ordinary request.
	if err := s.Record(store.Record{Time: time.Now(), User: "alice", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 7}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Errorf("first commit: %v", err)
	}
	// The stream ends.
	res.Settle(20, 150)
	rec.Status, rec.PromptTokens, rec.CompletionTokens = 200, 20, 150
	_ = s.Finish(st, rec)
	s.Untrack(st)
	for i := range 3 {
		if err := s.Flush(); err != nil {
			t.Errorf("commit %d after the stream ended: %v", i+2, err)
		}
	}
	if err := s.Destruct(); err != nil {
		t.Errorf("Destruct: %v", err)
	}
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, _, err := db.Records(store.RecordQuery{User: "alice"})
	if err != nil || len(recs) != 1 {
		t.Errorf("alice's record: %d stored (%v); want 1: it was lost with the batch the open record poisoned", len(recs), err)
	}
}
