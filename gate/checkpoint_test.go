package gate

import (
	"math/rand/v2"
	"path/filepath"
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
					p := res.Track()
					s.Track(p)
					n := int64(20)
					for range r.IntN(20) {
						n += r.Int64N(10)
						p.Report(n)
					}
					if i%7 == 0 {
						res.Cancel()
					} else {
						res.Settle(20, n-20+r.Int64N(21)-10)
					}
					_ = s.Record(store.Record{Time: time.Now(), User: user, Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 1})
					s.Untrack(p)
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
	}
}
