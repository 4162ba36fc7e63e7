package handler_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/golang-jwt/jwt/v5"

	"github.com/llmgate/llmgate/handler"
	"github.com/llmgate/llmgate/internal/testcaddy"
	"github.com/llmgate/llmgate/internal/vllmsim"
)

// firstReads is a listener whose connections note what their first Read
// returned: the request's headers alone, or its headers and body.
type firstReads struct {
	net.Listener
	mu    sync.Mutex
	reads []string
}

func (l *firstReads) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstReadConn{Conn: c, l: l}, nil
}

func (l *firstReads) first() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reads...)
}

type firstReadConn struct {
	net.Conn
	l    *firstReads
	done bool
}

func (c *firstReadConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done && n > 0 {
		c.done = true
		c.l.mu.Lock()
		c.l.reads = append(c.l.reads, string(p[:n]))
		c.l.mu.Unlock()
	}
	return n, err
}

// emulator serves the vLLM emulator on a listener that notes first reads.
func emulator(t *testing.T) (*firstReads, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fr := &firstReads{Listener: ln}
	srv := &http.Server{Handler: vllmsim.New(vllmsim.Config{}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(fr)
	t.Cleanup(func() { srv.Close() })
	return fr, ln.Addr().String()
}

const transportCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	http_port {HTTP}
	persist_config off
	auto_https off
	llm_gate {
		db {DB}
		plan free {
			tokens 1000000 per day
		}
		default_plan free
	}
}

http://127.0.0.1:{HTTP} {
	handle /gate/* {
		uri strip_prefix /gate
		llm_gate {
			jwt {
				secret ` + overheadSecret + `
			}
		}
		reverse_proxy {UP_GATE} {
			transport llm_gate {
				versions 1.1
				keepalive 30s
			}
		}
	}
	handle /retry/* {
		uri strip_prefix /retry
		llm_gate {
			jwt {
				secret ` + overheadSecret + `
			}
		}
		reverse_proxy {DEAD} {UP_RETRY} {
			lb_policy first
			lb_retries 2
			fail_duration 30s
			transport llm_gate
		}
	}
	handle /wrapped/* {
		uri strip_prefix /wrapped
		route {
			llm_gate {
				jwt {
					secret ` + overheadSecret + `
				}
			}
			request_body {
				max_size 1MB
			}
			reverse_proxy {UP_WRAPPED} {
				transport llm_gate
			}
		}
	}
	handle /trailer/* {
		uri strip_prefix /trailer
		llm_gate {
			jwt {
				secret ` + overheadSecret + `
			}
		}
		reverse_proxy {UP_TRAILER} {
			transport llm_gate
		}
	}
	handle /plain/* {
		uri strip_prefix /plain
		reverse_proxy {UP_PLAIN} {
			transport llm_gate
		}
	}
}
`

// The llm_gate transport sends the body the gate read with the request's
// headers, in one write, from the start on each attempt; a request the gate
// did not read goes through it as through reverse_proxy's http transport.
func TestTransport(t *testing.T) {
	gateUp, gateAddr := emulator(t)
	retryUp, retryAddr := emulator(t)
	plainUp, plainAddr := emulator(t)
	wrappedUp, wrappedAddr := emulator(t)
	// An upstream that notes the request's trailer, then answers as the
	// emulator does.
	sim := vllmsim.New(vllmsim.Config{})
	var trailer atomic.Value
	trailerUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		trailer.Store(r.Trailer.Get("X-Check"))
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(trailerUp.Close)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there: each dial is refused

	in := testcaddy.Start(t, transportCaddyfile, map[string]string{
		"{DB}": filepath.Join(t.TempDir(), "gate.db"), "{UP_GATE}": gateAddr,
		"{UP_RETRY}": retryAddr, "{UP_PLAIN}": plainAddr, "{DEAD}": deadAddr,
		"{UP_WRAPPED}": wrappedAddr, "{UP_TRAILER}": trailerUp.Listener.Addr().String(),
	})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(overheadSecret))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"sim-model","messages":[{"role":"user","content":"Say something long enough to notice."}],"max_tokens":8}`
	post := func(path string, trailers ...string) {
		t.Helper()
		var rd io.Reader = strings.NewReader(body)
		if len(trailers) > 0 {
			rd = io.MultiReader(rd) // of unknown length: sent chunked, with the trailer
		}
		req, _ := http.NewRequest("POST", in.HTTP+path, rd)
		if len(trailers) > 0 {
			req.Trailer = http.Header{trailers[0]: {trailers[1]}}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"completion_tokens":8`) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	// sends posts and returns how many attempts went with the body in memory.
	sends := func(path string, trailers ...string) int64 {
		t.Helper()
		before := handler.DirectSends()
		post(path, trailers...)
		return handler.DirectSends() - before
	}

	if n := sends("/gate/v1/chat/completions"); n != 1 {
		t.Errorf("the gate's request: %d direct sends, want 1", n)
	}
	// What the emulator read first: the whole request. (Two writes close
	// together may arrive in one read too; the count above is what tells.)
	reads := gateUp.first()
	if len(reads) != 1 {
		t.Fatalf("%d upstream connections, want 1", len(reads))
	}
	head, sent, ok := strings.Cut(reads[0], "\r\n\r\n")
	if !ok || !strings.Contains(head, "Content-Length: "+strconv.Itoa(len(sent))) || !strings.HasPrefix(sent, `{"model":"sim-model"`) {
		t.Errorf("the upstream's first read is not the whole request:\n%q", reads[0])
	}

	// The first upstream refuses the connection; the second attempt sends
	// the whole body again (the emulator refuses a body cut short).
	if n := sends("/retry/v1/chat/completions"); n < 2 {
		t.Errorf("a retried request: %d direct sends, want one per attempt (2 or more)", n)
	}
	if len(retryUp.first()) != 1 {
		t.Errorf("the second upstream saw %d connections, want 1", len(retryUp.first()))
	}

	// Another module's reader between the gate and reverse_proxy (it
	// might change the body): the body goes through it.
	if n := sends("/wrapped/v1/chat/completions"); n != 0 {
		t.Errorf("a body another module wraps: %d direct sends", n)
	}
	if len(wrappedUp.first()) != 1 {
		t.Errorf("the wrapped site's upstream saw %d connections", len(wrappedUp.first()))
	}

	// A client that declares a trailer: reverse_proxy passes it on, with
	// the body through its own readers.
	if n := sends("/trailer/v1/chat/completions", "X-Check", "yes"); n != 0 {
		t.Errorf("a request with a trailer: %d direct sends", n)
	}
	if got, _ := trailer.Load().(string); got != "yes" {
		t.Errorf("the upstream's trailer X-Check = %q, want yes", got)
	}

	// No gate: reverse_proxy's own readers, the client's body.
	if n := sends("/plain/v1/chat/completions"); n != 0 {
		t.Errorf("a request the gate did not read: %d direct sends", n)
	}
	if len(plainUp.first()) != 1 {
		t.Errorf("the plain upstream saw %d connections", len(plainUp.first()))
	}
}

// The transport takes the http transport's options, and its errors name the
// line.
func TestTransportCaddyfile(t *testing.T) {
	in := testcaddy.Start(t, `{
	admin 127.0.0.1:{ADMIN}
	http_port {HTTP}
	persist_config off
}
http://127.0.0.1:{HTTP} {
	respond ok
}`, nil)
	site := func(transport string) string {
		return "http://127.0.0.1:{HTTP} {\n\treverse_proxy 127.0.0.1:9 {\n\t\t" + transport + "\n\t}\n}\n"
	}
	js, err := in.Adapt(site("transport llm_gate {\n\t\t\tversions 1.1\n\t\t\tmax_conns_per_host 4\n\t\t}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"protocol":"llm_gate"`, `"versions":["1.1"]`, `"max_conns_per_host":4`} {
		if !bytes.Contains(js, []byte(want)) {
			t.Errorf("config lacks %s:\n%s", want, js)
		}
	}
	_, err = in.Adapt(site("transport llm_gate {\n\t\t\tbogus_option 1\n\t\t}"))
	if err == nil || !strings.Contains(err.Error(), "bogus_option") || !strings.Contains(err.Error(), ":4") {
		t.Errorf("an unknown option: %v", err)
	}
}

// TestTransportIdleTimeout: without a `keepalive` of the config's, the
// transport drops idle upstream connections before vLLM's server does (5 s),
// so that no request takes one just as vLLM closes it; a config's own
// keepalive (or none at all) is kept.
func TestTransportIdleTimeout(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, c := range []struct {
		block     string
		idle      time.Duration
		perHost   int
		keepAlive bool
	}{
		{"llm_gate", handler.UpstreamIdleTimeout, 32, true},
		{"llm_gate {\n keepalive_idle_conns_per_host 8\n}", handler.UpstreamIdleTimeout, 8, true},
		{"llm_gate {\n keepalive 30s\n}", 30 * time.Second, 32, true},
		{"llm_gate {\n keepalive off\n}", handler.UpstreamIdleTimeout, 32, false},
	} {
		var tr handler.Transport
		d := caddyfile.NewTestDispenser(c.block)
		if err := tr.UnmarshalCaddyfile(d); err != nil {
			t.Fatalf("%q: %v", c.block, err)
		}
		if err := tr.Provision(ctx); err != nil {
			t.Fatalf("%q: %v", c.block, err)
		}
		rt := tr.Transport
		if rt.IdleConnTimeout != c.idle || rt.MaxIdleConnsPerHost != c.perHost || rt.DisableKeepAlives == c.keepAlive {
			t.Errorf("%q: idle %v, %d per host, keep-alives off %v; want %v, %d, %v",
				c.block, rt.IdleConnTimeout, rt.MaxIdleConnsPerHost, rt.DisableKeepAlives, c.idle, c.perHost, !c.keepAlive)
		}
	}
	if handler.UpstreamIdleTimeout >= 5*time.Second {
		t.Errorf("UpstreamIdleTimeout %v is not below vLLM's 5 s", handler.UpstreamIdleTimeout)
	}
}
