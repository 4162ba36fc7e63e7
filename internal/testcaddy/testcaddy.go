// Package testcaddy runs a real Caddy, with every module of this repository,
// inside a test process, on free ports, so that several test packages can
// each run their own Caddy at the same time (caddytest binds fixed ports and
// cannot).
//
// Caddy's running config is process-global: one Instance per test binary at
// a time, and tests that use it must not call t.Parallel.
package testcaddy

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/llmgate/llmgate/internal/freeport"

	// Caddy's standard modules and the whole plugin.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/llmgate/llmgate"
)

// Instance is a running Caddy.
type Instance struct {
	// AdminAddr is host:port of the admin listener; Admin is its base URL.
	AdminAddr, Admin string
	// HTTPPort and HTTPSPort are the ports {HTTP} and {HTTPS} stood for.
	HTTPPort, HTTPSPort int
	// HTTP is http://127.0.0.1:{HTTP}.
	HTTP string
	// Vars are the values substituted into Caddyfiles: {ADMIN}, {HTTP},
	// {HTTPS} and whatever the test adds.
	Vars map[string]string
}

// FreePort returns a TCP port below the kernel's ephemeral range that
// was free a moment ago (see freeport) and that no other test process of
// this machine has taken through FreePort in the last ten minutes. The second
// condition matters: Caddy listens with SO_REUSEPORT on Linux, so two test
// binaries that pick the same port both bind it and each silently gets half
// of the other's traffic.
func FreePort(t testing.TB) int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "llmgate-test-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Pick(func(port int) bool {
		claim := filepath.Join(dir, fmt.Sprint(port))
		if fi, err := os.Stat(claim); err == nil && time.Since(fi.ModTime()) < 10*time.Minute {
			return false // another test process holds it
		}
		os.Remove(claim) // stale
		f, err := os.OpenFile(claim, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return false // taken between the check and now
		}
		f.Close()
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Start adapts the Caddyfile, after replacing {ADMIN}, {HTTP}, {HTTPS} and
// any vars given, and runs it. The Caddyfile should set
// `admin 127.0.0.1:{ADMIN}` and `http_port {HTTP}`. Caddy stops when the
// test ends.
func Start(t testing.TB, caddyfileText string, vars map[string]string) *Instance {
	t.Helper()
	in := &Instance{HTTPPort: FreePort(t), HTTPSPort: FreePort(t), Vars: map[string]string{}}
	in.AdminAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	in.Admin = "http://" + in.AdminAddr
	in.HTTP = fmt.Sprintf("http://127.0.0.1:%d", in.HTTPPort)
	in.Vars["{ADMIN}"] = strings.TrimPrefix(in.AdminAddr, "127.0.0.1:")
	in.Vars["{HTTP}"] = fmt.Sprint(in.HTTPPort)
	in.Vars["{HTTPS}"] = fmt.Sprint(in.HTTPSPort)
	for k, v := range vars {
		in.Vars[k] = v
	}
	if err := in.Load(caddyfileText); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Logf("stopping caddy: %v", err)
		}
	})
	return in
}

// Adapt turns a Caddyfile (after substitution) into JSON.
func (in *Instance) Adapt(caddyfileText string) ([]byte, error) {
	for k, v := range in.Vars {
		caddyfileText = strings.ReplaceAll(caddyfileText, k, v)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

// Load replaces the running config (a reload when one is running) and waits
// for the admin listener to answer.
func (in *Instance) Load(caddyfileText string) error {
	cfg, err := in.Adapt(caddyfileText)
	if err != nil {
		return err
	}
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(in.Admin + "/config/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("admin listener %s does not answer: %w", in.AdminAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Main runs a test binary's tests with Caddy's autosaved config and default
// data directory in a temporary directory, out of the user's home. Call it
// from TestMain.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "llm-gate-test")
	if err != nil {
		panic(err)
	}
	caddy.ConfigAutosavePath = filepath.Join(dir, "autosave.json")
	// Computed at init from the environment of the time: set it too.
	caddy.DefaultStorage.Path = filepath.Join(dir, "data", "caddy")
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
