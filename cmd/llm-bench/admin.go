package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Admin talks to one Caddy's admin listener: the llm_gate admin API to set
// up users and keys, Caddy's /metrics for the Go runtime's view of memory,
// and pprof to force a garbage collection before memory is sampled.
type Admin struct {
	Base   string // http://127.0.0.1:<admin port>
	Client *http.Client
}

// NewAdmin returns an Admin for the listener at base.
func NewAdmin(base string) *Admin {
	return &Admin{Base: base, Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// call sends a JSON request and decodes a JSON answer into out (when not
// nil); a status outside 2xx is an error that quotes the body. (Which 2xx
// is the API's business: PUT answers 201 when it creates, 200 when it
// replaces.)
func (a *Admin) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: status %d: %.300s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// CreateUser creates (or replaces) user id on plan.
func (a *Admin) CreateUser(ctx context.Context, id, plan string) error {
	return a.call(ctx, http.MethodPut, "/llm_gate/users/"+url.PathEscape(id), map[string]any{"plan": plan}, nil)
}

// CreateKey issues an API key for user id and returns its secret.
func (a *Admin) CreateKey(ctx context.Context, id string) (string, error) {
	var out struct {
		Key string `json:"key"`
	}
	err := a.call(ctx, http.MethodPost, "/llm_gate/users/"+url.PathEscape(id)+"/keys", map[string]any{"name": "bench"}, &out)
	if err == nil && !strings.HasPrefix(out.Key, "sk-") {
		err = fmt.Errorf("POST keys for %s: answer has no sk- key", id)
	}
	return out.Key, err
}

// UsageRequests returns how many requests of user the store has committed
// (the usage report, grouped by user, over the last day and the next).
func (a *Admin) UsageRequests(ctx context.Context, user string) (int64, error) {
	hour := time.Now().UTC().Truncate(time.Hour) // the gate takes usage bounds on the hour
	q := url.Values{
		"user":     {user},
		"group_by": {"user"},
		"since":    {hour.Add(-24 * time.Hour).Format(time.RFC3339)},
		"until":    {hour.Add(25 * time.Hour).Format(time.RFC3339)},
	}
	var out struct {
		Rows []struct {
			User     string `json:"user"`
			Requests int64  `json:"requests"`
		} `json:"rows"`
	}
	if err := a.call(ctx, http.MethodGet, "/llm_gate/usage?"+q.Encode(), nil, &out); err != nil {
		return 0, err
	}
	var n int64
	for _, r := range out.Rows {
		if r.User == "" || r.User == user {
			n += r.Requests
		}
	}
	return n, nil
}

// ForceGC makes Caddy collect garbage now, through pprof's heap profile
// (gc=1 runs a collection before taking it), so that a memory sample
// counts live memory rather than whatever garbage happened to be pending.
func (a *Admin) ForceGC(ctx context.Context) error {
	_, err := a.get(ctx, "/debug/pprof/heap?gc=1")
	return err
}

// get fetches path from the admin listener and returns the body; a status
// other than 200 is an error that quotes it.
func (a *Admin) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %.200s", path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, nil
}

// GoMem is the Go runtime's view of a process's memory.
type GoMem struct {
	HeapInuse  float64 // bytes in in-use heap spans
	StackInuse float64 // bytes of goroutine stacks
	Goroutines float64
}

// Live is heap plus stacks: the memory the process needs for what it is
// doing right now.
func (m GoMem) Live() float64 { return m.HeapInuse + m.StackInuse }

// Mem reads the Go runtime metrics from Caddy's /metrics.
func (a *Admin) Mem(ctx context.Context) (GoMem, error) {
	b, err := a.get(ctx, "/metrics")
	if err != nil {
		return GoMem{}, err
	}
	var m GoMem
	for _, f := range []struct {
		name string
		dst  *float64
	}{
		{"go_memstats_heap_inuse_bytes", &m.HeapInuse},
		{"go_memstats_stack_inuse_bytes", &m.StackInuse},
		{"go_goroutines", &m.Goroutines},
	} {
		v, ok := MetricValue(b, f.name)
		if !ok {
			return GoMem{}, fmt.Errorf("GET /metrics: no %s", f.name)
		}
		*f.dst = v
	}
	return m, nil
}

// MetricValue returns the value of the unlabelled sample called name in a
// Prometheus text exposition.
func MetricValue(text []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			continue // another metric, a longer name, or a labelled sample
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			continue
		}
		return v, true
	}
	return 0, false
}

// CPUProfile records Caddy's CPU profile for d (whole seconds, at least 1,
// at most 25 so that the client's timeout holds) through pprof and writes
// it to path.
func (a *Admin) CPUProfile(ctx context.Context, d time.Duration, path string) error {
	secs := min(max(int(d/time.Second), 1), 25)
	b, err := a.get(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
