package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMetricValue(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
go_goroutines_total_fake 7
go_memstats_heap_inuse_bytes 1.2345e+07
go_memstats_stack_inuse_bytes{x="y"} 9
go_memstats_stack_inuse_bytes	65536
caddy_llm_gate_tokens_total{kind="prompt"} 3
bad_value abc
bad_value 5
`
	tests := []struct {
		name string
		want float64
		ok   bool
	}{
		{"go_goroutines", 42, true},
		{"go_memstats_heap_inuse_bytes", 12345000, true},
		{"go_memstats_stack_inuse_bytes", 65536, true}, // the labelled sample is skipped
		{"caddy_llm_gate_tokens_total", 0, false},      // labelled only
		{"go_gorout", 0, false},                        // a prefix is not a name
		{"bad_value", 5, true},                         // an unparsable sample is skipped
		{"absent", 0, false},
	}
	for _, tt := range tests {
		got, ok := MetricValue([]byte(text), tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("MetricValue(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzMetricValue(f *testing.F) {
	f.Add([]byte("go_goroutines 1\n"), "go_goroutines")
	f.Add([]byte("a{b=\"c\"} 1\na 2"), "a")
	f.Fuzz(func(t *testing.T, text []byte, name string) {
		v, ok := MetricValue(text, name)
		if !ok && v != 0 {
			t.Fatalf("value %v without ok", v)
		}
		if ok && !strings.Contains(string(text), name) {
			t.Fatalf("found %q in a text that lacks it", name)
		}
	})
}

// fakeAdmin serves the admin routes Admin uses, recording what it got.
func fakeAdmin(t *testing.T, fail bool) (*Admin, *atomic.Int64) {
	t.Helper()
	var gcs atomic.Int64
	mux := http.NewServeMux()
	status := func(ok int) int {
		if fail {
			return http.StatusInternalServerError
		}
		return ok
	}
	mux.HandleFunc("PUT /llm_gate/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]any
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in["plan"] != "bench" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		w.WriteHeader(status(http.StatusOK))
		fmt.Fprintf(w, `{"id":%q}`, r.PathValue("id"))
	})
	mux.HandleFunc("POST /llm_gate/users/{id}/keys", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status(http.StatusCreated))
		if r.PathValue("id") == "nokey" {
			fmt.Fprint(w, `{"id":"k1"}`)
			return
		}
		fmt.Fprintf(w, `{"id":"k1","key":"sk-%s"}`, r.PathValue("id"))
	})
	mux.HandleFunc("GET /llm_gate/usage", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("group_by") != "user" || q.Get("since") == "" || q.Get("until") == "" {
			http.Error(w, `{"error":"bad query"}`, http.StatusBadRequest)
			return
		}
		for _, b := range []string{"since", "until"} { // as the gate: usage is kept per hour
			if t, err := time.Parse(time.RFC3339, q.Get(b)); err != nil || !t.Equal(t.Truncate(time.Hour)) {
				http.Error(w, `{"error":"not on the hour"}`, http.StatusBadRequest)
				return
			}
		}
		w.WriteHeader(status(http.StatusOK))
		fmt.Fprintf(w, `{"rows":[{"user":%q,"requests":40},{"user":"other","requests":1000}]}`, q.Get("user"))
	})
	mux.HandleFunc("GET /debug/pprof/heap", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			gcs.Add(1)
		}
		w.WriteHeader(status(http.StatusOK))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status(http.StatusOK))
		io.WriteString(w, "go_goroutines 12\ngo_memstats_heap_inuse_bytes 4096\ngo_memstats_stack_inuse_bytes 1024\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return NewAdmin(srv.URL), &gcs
}

func TestAdmin(t *testing.T) {
	ctx := context.Background()
	a, gcs := fakeAdmin(t, false)
	if err := a.CreateUser(ctx, "alice/x", benchPlan); err != nil {
		t.Fatal(err)
	}
	key, err := a.CreateKey(ctx, "alice")
	if err != nil || key != "sk-alice" {
		t.Fatalf("CreateKey = %q, %v", key, err)
	}
	if _, err := a.CreateKey(ctx, "nokey"); err == nil || !strings.Contains(err.Error(), "no sk- key") {
		t.Errorf("answer without a key: %v", err)
	}
	n, err := a.UsageRequests(ctx, "alice")
	if err != nil || n != 40 {
		t.Errorf("UsageRequests = %d, %v; want 40 (other users' rows ignored)", n, err)
	}
	if err := a.ForceGC(ctx); err != nil || gcs.Load() != 1 {
		t.Errorf("ForceGC: %v, %d collections", err, gcs.Load())
	}
	m, err := a.Mem(ctx)
	if err != nil || m.Goroutines != 12 || m.Live() != 5120 {
		t.Errorf("Mem = %+v, %v", m, err)
	}
	if err := a.CreateUser(ctx, "bob", "other-plan"); err == nil || !strings.Contains(err.Error(), "status 400: ") {
		t.Errorf("a refused PUT: %v", err)
	}
}

func TestAdminErrors(t *testing.T) {
	ctx := context.Background()
	a, _ := fakeAdmin(t, true)
	if _, err := a.CreateKey(ctx, "x"); err == nil {
		t.Error("CreateKey on 500")
	}
	if _, err := a.UsageRequests(ctx, "x"); err == nil {
		t.Error("UsageRequests on 500")
	}
	if err := a.ForceGC(ctx); err == nil {
		t.Error("ForceGC on 500")
	}
	if _, err := a.Mem(ctx); err == nil {
		t.Error("Mem on 500")
	}
	// Not JSON, no metrics, nobody listening.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "<html>")
	}))
	defer srv.Close()
	if _, err := NewAdmin(srv.URL).CreateKey(ctx, "x"); err == nil {
		t.Error("CreateKey with an HTML answer")
	}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "go_goroutines 1\n") }))
	defer ok.Close()
	if _, err := NewAdmin(ok.URL).Mem(ctx); err == nil || !strings.Contains(err.Error(), "no go_memstats_heap_inuse_bytes") {
		t.Errorf("Mem without heap metrics: %v", err)
	}
	// A profile is written only when Caddy answers 200, and asks for at
	// most 25 seconds, which the client's timeout holds.
	prof := filepath.Join(t.TempDir(), "p.pprof")
	if err := NewAdmin(srv.URL).CPUProfile(ctx, time.Second, prof); err == nil || !strings.Contains(err.Error(), "status 201: <html>") {
		t.Errorf("CPUProfile on 201: %v", err)
	}
	if _, err := os.Stat(prof); !os.IsNotExist(err) {
		t.Errorf("profile written on a failure (%v)", err)
	}
	var asked atomic.Value
	pp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r.URL.RequestURI())
		io.WriteString(w, "profile bytes")
	}))
	defer pp.Close()
	if err := NewAdmin(pp.URL).CPUProfile(ctx, 90*time.Second, prof); err != nil || asked.Load() != "/debug/pprof/profile?seconds=25" {
		t.Errorf("CPUProfile: %v, asked %v", err, asked.Load())
	}
	if b, err := os.ReadFile(prof); string(b) != "profile bytes" {
		t.Errorf("profile %q, %v", b, err)
	}
	dead := NewAdmin("http://127.0.0.1:1")
	if err := dead.CreateUser(ctx, "x", "p"); err == nil {
		t.Error("CreateUser without a server")
	}
	if err := dead.ForceGC(ctx); err == nil {
		t.Error("ForceGC without a server")
	}
	if _, err := dead.Mem(ctx); err == nil {
		t.Error("Mem without a server")
	}
}
