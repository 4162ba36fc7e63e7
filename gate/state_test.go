package gate

import (
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/store"
)

func TestWakeFollowsFlushInterval(t *testing.T) {
	s := newState(filepath.Join(t.TempDir(), "g.db"), zap.NewNop())
	defer s.Destruct()
	for every, want := range map[time.Duration]time.Duration{
		250 * time.Millisecond: 250 * time.Millisecond,
		5 * time.Second:        time.Second,
		0:                      time.Second,
	} {
		s.configure(every, 0)
		if got := s.wakeEvery(); got != want {
			t.Errorf("flush_interval %v: the writer wakes every %v, want %v", every, got, want)
		}
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
