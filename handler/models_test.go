package handler

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// modelsUpstream answers GET /v1/models with one model of length n (or a
// 502 when fail is set), after signalling asked and waiting for hold to be
// closed when hold is set; fetches counts the questions. The test sets the
// fields before the requests that read them start.
type modelsUpstream struct {
	n       int64
	fail    bool
	hold    chan struct{}
	asked   chan struct{}
	fetches atomic.Int64
}

func (u *modelsUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet || r.URL.Path != "/v1/models" {
		return fmt.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}
	u.fetches.Add(1)
	if u.hold != nil {
		u.asked <- struct{}{}
		<-u.hold
	}
	if u.fail {
		w.WriteHeader(http.StatusBadGateway)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	_, err := fmt.Fprintf(w, `{"object":"list","data":[{"id":"m","max_model_len":%d}]}`, u.n)
	return err
}

var _ caddyhttp.Handler = (*modelsUpstream)(nil)

// expire makes m's lengths due to be asked again.
func expire(m *modelLens) {
	m.cur.Store(&lensSnapshot{lens: m.cur.Load().lens})
}

// TestModelLensRefreshBlocksNoOne: once the lengths are stale, one request
// asks the upstream again and waits for it; the others meanwhile go on with
// the lengths known, however long the upstream takes to answer.
func TestModelLensRefreshBlocksNoOne(t *testing.T) {
	up := &modelsUpstream{asked: make(chan struct{}, 1)}
	up.n = 300
	m := &modelLens{ttl: time.Hour}
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	if n := m.get(req, up, "m"); n != 300 {
		t.Fatalf("first answer %d, want 300", n)
	}
	if n := m.get(req, up, "m"); n != 300 || up.fetches.Load() != 1 {
		t.Fatalf("within the TTL: %d after %d fetches, want 300 after 1", n, up.fetches.Load())
	}

	// Stale: the next request asks again, and the upstream holds it.
	expire(m)
	hold := make(chan struct{})
	up.hold = hold
	up.n = 400
	refreshed := make(chan int64, 1)
	go func() { refreshed <- m.get(req, up, "m") }()
	select {
	case <-up.asked:
	case <-time.After(10 * time.Second):
		t.Fatal("a stale answer was not asked again")
	}
	other := make(chan int64, 1)
	go func() { other <- m.get(req, up, "m") }()
	select {
	case n := <-other:
		if n != 300 {
			t.Errorf("during the refresh: %d, want the known 300", n)
		}
	case <-time.After(10 * time.Second):
		close(hold)
		t.Fatal("a request waited for another's refresh of the models' lengths")
	}
	close(hold)
	if n := <-refreshed; n != 400 {
		t.Errorf("the refreshing request got %d, want the new 400", n)
	}
	if f := up.fetches.Load(); f != 2 {
		t.Errorf("%d fetches, want 2 (one refresh at a time)", f)
	}
	if n := m.get(req, up, "m"); n != 400 {
		t.Errorf("after the refresh: %d, want 400", n)
	}
}

// TestModelLensFirstAnswerIsWaitedFor: before the first answer there are no
// lengths to go on with, so concurrent first requests wait for it, and the
// upstream is asked once.
func TestModelLensFirstAnswerIsWaitedFor(t *testing.T) {
	up := &modelsUpstream{asked: make(chan struct{}, 1)}
	up.n = 300
	hold := make(chan struct{})
	up.hold = hold
	m := &modelLens{}
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	got := make(chan int64, 2)
	for range 2 {
		go func() { got <- m.get(req, up, "m") }()
	}
	<-up.asked
	close(hold)
	for range 2 {
		if n := <-got; n != 300 {
			t.Errorf("a first request got %d, want 300", n)
		}
	}
	if f := up.fetches.Load(); f != 1 {
		t.Errorf("%d fetches, want 1", f)
	}
}

// TestModelLensFailedAskIsRetried: a failed ask (vLLM still loading, say) is
// tried again after the retry interval rather than the TTL, and keeps the
// lengths known before it.
func TestModelLensFailedAskIsRetried(t *testing.T) {
	up := &modelsUpstream{}
	up.fail = true
	m := &modelLens{ttl: 2 * time.Hour, retry: time.Hour}
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	if n := m.get(req, up, "m"); n != 0 {
		t.Fatalf("with no answer: %d, want 0", n)
	}
	if s := m.cur.Load(); s == nil || time.Until(s.expires) > time.Hour || time.Until(s.expires) < 59*time.Minute {
		t.Fatalf("a failed ask expires at %v, want in the retry interval", s)
	}
	m.get(req, up, "m")
	if f := up.fetches.Load(); f != 1 {
		t.Fatalf("%d fetches within the retry interval, want 1", f)
	}

	up.fail = false
	up.n = 300
	expire(m) // the retry interval is up
	if n := m.get(req, up, "m"); n != 300 {
		t.Fatalf("once the upstream answers: %d, want 300", n)
	}

	up.fail = true
	expire(m)
	if n := m.get(req, up, "m"); n != 300 || up.fetches.Load() != 3 {
		t.Fatalf("after a failed refresh: %d after %d fetches, want the known 300 after 3", n, up.fetches.Load())
	}
}
