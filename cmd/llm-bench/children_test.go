package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSupervisor(t *testing.T) {
	dir := t.TempDir()
	var s Supervisor
	c, err := s.Start("sleeper", dir, []string{"BENCH_TEST_VAR=hello"}, "/bin/sh", "-c", `echo "$BENCH_TEST_VAR"; exec sleep 60`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Exited() || c.Pid() <= 0 {
		t.Fatalf("child not running: pid %d", c.Pid())
	}
	// The child runs in its own process group.
	if pgid, err := syscall.Getpgid(c.Pid()); err != nil || pgid != c.Pid() {
		t.Errorf("child pgid %d (%v), want its own pid %d", pgid, err, c.Pid())
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.LogTail(100) != "hello" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.LogTail(4); got != "llo" { // the trailing newline is trimmed
		t.Errorf("LogTail(3) = %q, want the environment variable's tail", got)
	}
	s.StopAll()
	if !c.Exited() {
		t.Fatal("child survived StopAll")
	}
	if err := syscall.Kill(c.Pid(), 0); err == nil {
		t.Error("child process still exists")
	}
	if _, err := s.Start("late", dir, nil, "/bin/true"); err == nil {
		t.Error("Start after StopAll succeeded")
	}
	c.stop() // stopping twice is harmless
}

func TestSupervisorStartErrors(t *testing.T) {
	var s Supervisor
	if _, err := s.Start("x", t.TempDir(), nil, "/nonexistent/binary"); err == nil {
		t.Error("started a missing binary")
	}
	if _, err := s.Start("x", "/nonexistent/dir", nil, "/bin/true"); err == nil {
		t.Error("started with an unwritable log dir")
	}
	(&Child{LogPath: "/nonexistent"}).LogTail(10) // no panic
}

func TestWaitReady(t *testing.T) {
	ctx := context.Background()
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if hits < 3 {
			w.WriteHeader(http.StatusBadGateway) // not ready yet
			return
		}
		w.WriteHeader(http.StatusUnauthorized) // ready: any answer below 500
	}))
	defer srv.Close()
	if err := WaitReady(ctx, nil, srv.URL, 5*time.Second); err != nil || hits != 3 {
		t.Errorf("WaitReady = %v after %d hits", err, hits)
	}

	port, err := FreePort()
	if err != nil || port <= 0 {
		t.Fatalf("FreePort = %d, %v", port, err)
	}
	closed := "http://127.0.0.1:" + strconv.Itoa(port)
	start := time.Now()
	if err := WaitReady(ctx, nil, closed, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("closed port: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Error("timeout not honoured")
	}

	// A child that dies is reported at once, with its output.
	var s Supervisor
	defer s.StopAll()
	c, err := s.Start("dier", t.TempDir(), nil, "/bin/sh", "-c", "echo goodbye; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	err = WaitReady(ctx, c, closed, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "dier exited") || !strings.Contains(err.Error(), "goodbye") {
		t.Errorf("dead child: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := WaitReady(cctx, nil, closed, time.Minute); err == nil {
		t.Error("cancelled context")
	}
	if err := WaitReady(ctx, nil, "http://bad host/", time.Second); err == nil {
		t.Error("bad URL")
	}
}
