package handler

import (
	"bytes"
	"io"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// Transport is reverse_proxy's `http` transport, with every option of it,
// that sends a request body the gate has read together with the request's
// headers, in one write.
//
// reverse_proxy wraps each request body in readers of its own, so Go's
// transport cannot tell that it is already in memory: it writes the headers,
// then copies the body in a second write (two syscalls, two TCP segments
// for vLLM to read). The gate has read the whole body before it passes the
// request on (it counts the prompt), so this transport finds the gate's
// reader under reverse_proxy's and hands Go's transport the bytes
// themselves. A request the gate did not read goes as with `http`.
//
//	reverse_proxy localhost:8000 {
//		transport llm_gate
//	}
type Transport struct {
	reverseproxy.HTTPTransport
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.llm_gate",
		New: func() caddy.Module { return new(Transport) },
	}
}

// UpstreamIdleTimeout is how long the transport keeps an idle connection to
// the upstream when the config sets no `keepalive`: less than the 5 s after
// which vLLM's server (uvicorn, `timeout_keep_alive`, and vLLM's
// VLLM_HTTP_TIMEOUT_KEEP_ALIVE) closes one. With the http transport's 2
// minutes, a request can take a connection from the pool just as vLLM
// closes it; Go does not send a POST again, and the client gets a 502.
const UpstreamIdleTimeout = 4 * time.Second

// Provision sets the idle timeout (UpstreamIdleTimeout) unless the config
// has one, then provisions the http transport.
func (t *Transport) Provision(ctx caddy.Context) error {
	if t.KeepAlive == nil {
		t.KeepAlive = new(reverseproxy.KeepAlive)
	}
	if t.KeepAlive.IdleConnTimeout == 0 {
		t.KeepAlive.IdleConnTimeout = caddy.Duration(UpstreamIdleTimeout)
	}
	return t.HTTPTransport.Provision(ctx)
}

// directSends counts the requests sent with their body in memory (for tests).
var directSends atomic.Int64

// RoundTrip sends req through the http transport, with the gate's body as
// a reader Go's transport knows to be in memory when it finds one.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A body of no bytes is nil here already; a body the gate may not send
	// whole has none.
	if b := gateBody(req.Body); b != nil && req.ContentLength > 0 && req.ContentLength == int64(len(b.whole)) {
		// Each attempt (reverse_proxy retries) sends the whole body.
		req.Body = io.NopCloser(bytes.NewReader(b.whole))
		directSends.Add(1)
	}
	return t.HTTPTransport.RoundTrip(req)
}

// gateBody finds the gate's reader under the readers reverse_proxy wraps a
// request body in, or returns nil. Only reverse_proxy's own readers, which
// pass the bytes on as they are, are looked through (each a struct pointer
// embedding the io.ReadCloser it wraps): a reader of another module between
// the gate and reverse_proxy may change the body, which then goes as with
// the http transport.
func gateBody(rc io.ReadCloser) *bodyReader {
	for range 4 {
		if b, ok := rc.(*bodyReader); ok {
			return b
		}
		if rc == nil {
			return nil
		}
		field := wrappedField(reflect.TypeOf(rc))
		if field < 0 {
			return nil
		}
		v := reflect.ValueOf(rc)
		if v.IsNil() {
			return nil
		}
		f := v.Elem().Field(field)
		if f.IsNil() || !f.CanInterface() {
			return nil
		}
		if rc, _ = f.Interface().(io.ReadCloser); rc == nil {
			return nil
		}
	}
	return nil
}

// wrappedFields caches wrappedField's answer for each type it has seen:
// reflect.Type → int. The types are the program's own, a handful.
var wrappedFields sync.Map

// wrappedField returns the index of the embedded io.ReadCloser of t, a
// pointer to one of reverse_proxy's readers, or -1 for any other type.
// Working that out takes names and a field search (about a µs a request
// under load, before the cache); a type seen before costs a map lookup.
func wrappedField(t reflect.Type) int {
	if i, ok := wrappedFields.Load(t); ok {
		return i.(int)
	}
	i := -1
	if t.Kind() == reflect.Pointer && passThrough(t.Elem()) {
		if f, ok := t.Elem().FieldByName("ReadCloser"); ok && f.Anonymous && len(f.Index) == 1 && f.Type.Kind() == reflect.Interface {
			i = f.Index[0]
		}
	}
	wrappedFields.Store(t, i)
	return i
}

// passThrough reports whether t is one of reverse_proxy's readers that
// gateBody looks through (unexported: known by name).
func passThrough(t reflect.Type) bool {
	const pkg = "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	if t.Kind() != reflect.Struct || t.PkgPath() != pkg {
		return false
	}
	n := t.Name()
	return n == "requestBodyWithTrailers" || n == "bodyNopCloserIfNotRead"
}

// Interface guards.
var (
	_ http.RoundTripper         = (*Transport)(nil)
	_ caddy.Provisioner         = (*Transport)(nil)
	_ caddy.CleanerUpper        = (*Transport)(nil)
	_ caddyfile.Unmarshaler     = (*Transport)(nil)
	_ reverseproxy.TLSTransport = (*Transport)(nil)
	_ reverseproxy.H2CTransport = (*Transport)(nil)
)
