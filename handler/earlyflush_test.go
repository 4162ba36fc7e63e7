package handler_test

import (
	"net/http"
	"testing"

	"github.com/llmgate/llmgate/gate"
)

// TestEarlyFlushOnlyWhenAlone: a whole JSON answer leaves the server's buffer
// before the gate's bookkeeping only while it is the one metered request in
// flight; with others in flight the server writes it when the handler
// returns, as without the gate (a flush costs deadline updates and a response
// controller, which a busy server spends better on the requests waiting).
func TestEarlyFlushOnlyWhenAlone(t *testing.T) {
	_, gated, token := overheadServers(t)
	d := &discard{hdr: http.Header{}}
	serveOne(gated, token, d)
	if d.status != http.StatusOK || d.n != len(overheadAnswer) {
		t.Fatalf("status %d, %d bytes", d.status, d.n)
	}
	if d.flushes != 1 {
		t.Errorf("alone: %d flushes, want 1 (the early one)", d.flushes)
	}
	if n := gate.InFlight(); n != 0 {
		t.Errorf("%d requests in flight after the response", n)
	}

	// Another metered request in flight, as the counter sees it.
	gate.RequestStarted()
	defer gate.RequestDone()
	serveOne(gated, token, d)
	if d.status != http.StatusOK || d.n != len(overheadAnswer) {
		t.Fatalf("status %d, %d bytes", d.status, d.n)
	}
	if d.flushes != 0 {
		t.Errorf("with another request in flight: %d flushes, want 0", d.flushes)
	}
}
