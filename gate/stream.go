package gate

import (
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// Stream is a request in flight that each commit checkpoints (see Track).
type Stream struct {
	prog   *quota.Progress
	rec    store.Record // the request's record as known when it started
	status atomic.Int32
	prompt atomic.Int64

	// noOpen: rec is not a record the store takes (a model name longer
	// than it keeps), which would fail every commit it joined: the stream
	// is checkpointed without an open record.
	noOpen bool

	// Guarded by State.streamsMu.
	openID  uint64 // of its open record in the store; 0 until the first
	written int64  // the tokens of the last open record queued
	ended   bool
}

// Report is the request's progress: the status of its response, its
// prompt and all its tokens so far, the prompt's included. The request
// itself is the only reporter.
func (st *Stream) Report(status int, prompt, tokens int64) {
	if int32(status) != st.status.Load() {
		st.status.Store(int32(status))
	}
	if prompt != st.prompt.Load() {
		st.prompt.Store(prompt)
	}
	st.prog.Report(tokens)
}

// Track has every commit checkpoint the request of p until it ends
// (Finish, or Untrack): the commit charges its tokens so far to the
// counters (quota.Engine.Checkpoint) and writes them as its open record
// (store.Batch.Open), rec (its time, user, key, model, endpoint and plan)
// with the reported counts. The request's own record replaces it; a crash
// leaves it, and the next start of the store makes it an incomplete record.
// So a stream killed by a crash is in both the budget and the usage
// reports, up to the last commit before.
func (s *State) Track(p *quota.Progress, rec store.Record) *Stream {
	st := &Stream{prog: p, rec: rec, noOpen: rec.Validate() != nil}
	s.streamsMu.Lock()
	s.streams[st] = struct{}{}
	s.streamsMu.Unlock()
	return st
}

// Finish ends a stream with its record, which replaces its open record in
// the same commit.
func (s *State) Finish(st *Stream, rec store.Record) error {
	return s.record(rec, s.end(st))
}

// Untrack ends a stream without a record (a request cut short before its
// settle, which gives its tokens back): its open record goes. It does
// nothing after Finish.
func (s *State) Untrack(st *Stream) { s.closeOpen(s.end(st)) }

// closeOpen has the next commit delete the open record id, unless id is 0.
func (s *State) closeOpen(id uint64) {
	if id == 0 {
		return
	}
	s.pendMu.Lock()
	if !s.closing {
		s.pending.Closed = append(s.pending.Closed, id)
	}
	s.pendMu.Unlock()
}

// end stops tracking st and returns the id of its open record to delete, or
// 0. A commit that checkpointed st before holds its open record; one after
// does not see it.
func (s *State) end(st *Stream) (openID uint64) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if st.ended {
		return 0
	}
	st.ended = true
	delete(s.streams, st)
	return st.openID
}

func (s *State) streaming() bool {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	return len(s.streams) > 0
}

// checkpoint charges the progress of every tracked stream and returns the
// open records of those that produced tokens since the last. With a flush
// interval of 0 every request's record is a commit: the streams are then
// checkpointed once a second, not by each. The caller holds flushMu.
func (s *State) checkpoint() map[uint64]store.Record {
	now := time.Now()
	if s.FlushInterval() == 0 && now.Sub(s.lastCheckpoint) < 900*time.Millisecond { // a second, less the timer's slack
		return nil
	}
	s.lastCheckpoint = now
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	var open map[uint64]store.Record
	for st := range s.streams {
		charged := s.Engine.Checkpoint(st.prog)
		if charged == 0 || charged == st.written || st.noOpen {
			continue
		}
		if st.openID == 0 {
			s.lastOpenID++
			st.openID = s.lastOpenID
		}
		st.written = charged
		r := st.rec
		r.Status = int(st.status.Load())
		r.PromptTokens = min(st.prompt.Load(), charged)
		r.CompletionTokens = charged - r.PromptTokens
		r.Estimated = true
		r.Duration = max(now.Sub(r.Time), 0)
		if open == nil {
			open = make(map[uint64]store.Record)
		}
		open[st.openID] = r
	}
	return open
}

// mergeOpen adds src's open records to dst's, src's being newer.
func mergeOpen(dst, src map[uint64]store.Record) map[uint64]store.Record {
	if dst == nil {
		return src
	}
	for id, r := range src {
		dst[id] = r
	}
	return dst
}
