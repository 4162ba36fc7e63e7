package itest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// httpsCaddyfile serves the gate on https://localhost:{HTTPS} with a
// certificate from Caddy's local CA. The CA and the certificates live in
// {STORAGE}, a temporary directory, and skip_install_trust keeps Caddy away
// from the system trust store. HTTP/3 is not mentioned: Caddy enables it
// on every HTTPS server by default, which is what the test checks.
const httpsCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	http_port {HTTP}
	https_port {HTTPS}
	persist_config off
	skip_install_trust
	storage file_system {STORAGE}
	llm_gate {
		db {DB}
		flush_interval 0
	}
}

localhost:{HTTPS} {
	tls internal
	llm_gate {
		jwt {
			secret {SECRET}
		}
	}
	reverse_proxy {UPSTREAM}
}
`

// httpsGate is a gate serving TLS on localhost, and the pool that trusts
// its local CA.
type httpsGate struct {
	*env
	url   string // https://localhost:{HTTPS}
	addr  string // 127.0.0.1:{HTTPS}, where every client dials
	roots *x509.CertPool
}

func newHTTPSGate(t *testing.T, sim vllmsim.Config) *httpsGate {
	t.Helper()
	storage := t.TempDir()
	e := newEnv(t, envOpts{sim: sim, file: strings.ReplaceAll(httpsCaddyfile, "{STORAGE}", storage)})
	g := &httpsGate{env: e,
		url:  "https://localhost:" + e.caddy.Vars["{HTTPS}"],
		addr: "127.0.0.1:" + e.caddy.Vars["{HTTPS}"],
	}
	// Caddy creates its local CA when it starts; the client trusts its
	// root exactly as a user would after `caddy trust`.
	root, err := os.ReadFile(filepath.Join(storage, "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatalf("Caddy's local root certificate: %v", err)
	}
	g.roots = x509.NewCertPool()
	if !g.roots.AppendCertsFromPEM(root) {
		t.Fatal("root.crt holds no certificate")
	}
	return g
}

// h2Client speaks HTTP/2 over TLS to the gate, whatever localhost
// resolves to.
func (g *httpsGate) h2Client() *http.Client {
	var d net.Dialer
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: g.roots},
		ForceAttemptHTTP2: true, // a custom TLS config turns HTTP/2 off otherwise
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, g.addr)
		},
	}}
}

// h3Client speaks HTTP/3 (QUIC over UDP) to the gate.
func (g *httpsGate) h3Client(t *testing.T) *http.Client {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: g.roots},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, g.addr, tlsCfg, cfg)
		},
	}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// chat posts a streaming chat completion.
func (g *httpsGate) chat(t *testing.T, c *http.Client) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest("POST", g.url+"/v1/chat/completions",
		strings.NewReader(mustJSON(t, chatBody("sim-model", true, nil))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token(t, "tls-user", nil))
	return c.Do(req)
}

// TestHTTPSStreams: with `tls internal` on localhost the gate streams a
// chat completion over HTTP/2 and over HTTP/3, each event relayed as the
// emulator sends it, and meters both.
func TestHTTPSStreams(t *testing.T) {
	g := newHTTPSGate(t, vllmsim.Config{TokensPerSecond: 20, DefaultLength: 10})

	// The certificate is issued in the background as Caddy starts.
	h2 := g.h2Client()
	var resp *http.Response
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		if resp, err = g.chat(t, h2); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTPS request: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/2: status %d, protocol %s: %s", resp.StatusCode, resp.Proto, readAll(t, resp.Body))
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].VerifyHostname("localhost") != nil {
		t.Fatal("the gate did not present a certificate for localhost")
	}
	altSvc := resp.Header.Get("Alt-Svc")
	assertUnbuffered(t, readSSE(t, resp.Body))
	resp.Body.Close()

	streams := 1
	t.Run("HTTP/3", func(t *testing.T) {
		// Caddy advertises HTTP/3 on an HTTPS port only when it serves it
		// there (it has a UDP listener on the port).
		if !strings.Contains(altSvc, `h3=":`+g.caddy.Vars["{HTTPS}"]+`"`) {
			t.Skipf("Caddy does not serve HTTP/3 on UDP port %s here (Alt-Svc %q): no UDP listener?", g.caddy.Vars["{HTTPS}"], altSvc)
		}
		resp, err := g.chat(t, g.h3Client(t))
		if err != nil {
			var idle *quic.IdleTimeoutError
			var hs *quic.HandshakeTimeoutError
			if errors.As(err, &idle) || errors.As(err, &hs) {
				t.Skipf("HTTP/3: no QUIC answer over UDP on %s in this sandbox: %v", g.addr, err)
			}
			t.Fatalf("HTTP/3 request: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 3 {
			t.Fatalf("HTTP/3: status %d, protocol %s: %s", resp.StatusCode, resp.Proto, readAll(t, resp.Body))
		}
		assertUnbuffered(t, readSSE(t, resp.Body))
		streams++
	})

	// Every stream was metered, from the usage the gate asked vLLM for.
	recs := g.waitRecords("tls-user", streams)
	for _, r := range recs {
		if r.CompletionTokens != 10 || r.Estimated {
			t.Errorf("record %+v: want 10 completion tokens from the stream's usage", r)
		}
	}
}
