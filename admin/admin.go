// Package admin is the `admin.api.llm_gate` module: routes under /llm_gate/
// on Caddy's admin listener to manage users, API keys and limits, and to read
// usage reports and per-request records.
//
// Every write goes through the gate's State, so that its caches stay right:
// a revoked key or a disabled user is refused on the very next request.
package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/gate"
)

func init() {
	caddy.RegisterModule(API{})
}

// Prefix is the path every route of the module lives under. Remote admin
// access control applies by path, so one prefix grants or denies them all.
const Prefix = "/llm_gate/"

// API is the admin module. It has no configuration: it serves the
// `llm_gate` app of the running config, or one with defaults when the config
// has none (so users and keys can be managed before any site uses the gate).
type API struct {
	app    *gate.App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (API) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.llm_gate",
		New: func() caddy.Module { return new(API) },
	}
}

// Provision takes the config's `llm_gate` app, instantiating it with
// defaults when the config has none. The store is not opened here: it opens
// on the first call that needs it.
func (a *API) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger(a)
	v, err := ctx.App("llm_gate")
	if err != nil {
		return fmt.Errorf("llm_gate admin API: %w", err)
	}
	app, ok := v.(*gate.App)
	if !ok {
		return fmt.Errorf("llm_gate admin API: app llm_gate is a %T, not *gate.App", v)
	}
	a.app = app
	return nil
}

// Routes returns the one route under which the module dispatches itself:
// http.ServeMux cannot answer 405 in Caddy's error shape, nor unescape path
// parameters that may hold any printable character.
func (a *API) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: Prefix, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// handlerFunc serves one method of one route; params are the route's
// wildcard segments, unescaped, in order.
type handlerFunc func(a *API, w http.ResponseWriter, r *http.Request, params []string) error

// route is a path under Prefix, split at '/'; "*" segments match any one
// segment and become params.
type route struct {
	path    []string
	methods map[string]handlerFunc
	allow   string // the Allow header: the methods, in a fixed order
}

func newRoute(path string, methods map[string]handlerFunc) route {
	rt := route{path: strings.Split(path, "/"), methods: methods}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if methods[m] != nil || (m == http.MethodHead && methods[http.MethodGet] != nil) {
			allow = append(allow, m)
		}
	}
	rt.allow = strings.Join(append(allow, http.MethodOptions), ", ")
	return rt
}

func (rt *route) match(segs []string) ([]string, bool) {
	if len(segs) != len(rt.path) {
		return nil, false
	}
	var params []string
	for i, p := range rt.path {
		switch {
		case p == "*":
			params = append(params, segs[i])
		case p != segs[i]:
			return nil, false
		}
	}
	return params, true
}

// routes is the API of SPEC §5.
var routes = []route{
	newRoute("users", map[string]handlerFunc{
		http.MethodGet: (*API).listUsers,
	}),
	newRoute("users/*", map[string]handlerFunc{
		http.MethodGet:    noQuery((*API).getUser),
		http.MethodPut:    noQuery((*API).putUser),
		http.MethodPatch:  noQuery((*API).patchUser),
		http.MethodDelete: noQuery((*API).deleteUser),
	}),
	newRoute("users/*/keys", map[string]handlerFunc{
		http.MethodGet:  noQuery((*API).listKeys),
		http.MethodPost: noQuery((*API).createKey),
	}),
	newRoute("users/*/reset", map[string]handlerFunc{
		http.MethodPost: noQuery((*API).resetUser),
	}),
	newRoute("keys/*", map[string]handlerFunc{
		http.MethodGet:    noQuery((*API).getKey),
		http.MethodDelete: noQuery((*API).revokeKey),
	}),
	newRoute("usage", map[string]handlerFunc{
		http.MethodGet: (*API).usage,
	}),
	newRoute("requests", map[string]handlerFunc{
		http.MethodGet: (*API).requests,
	}),
	newRoute("plans", map[string]handlerFunc{
		http.MethodGet: (*API).plans,
	}),
}

// noQuery refuses a query string on a route that takes none: a parameter
// the route does not know (say ?dry_run=1 on a DELETE) must not be ignored
// while the request does what it would do without it.
func noQuery(h handlerFunc) handlerFunc {
	return func(a *API, w http.ResponseWriter, r *http.Request, params []string) error {
		if _, err := parseQuery(r); err != nil {
			return err
		}
		return h(a, w, r, params)
	}
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) error {
	segs, err := splitPath(r.URL)
	if err != nil {
		return err
	}
	for i := range routes {
		rt := &routes[i]
		params, ok := rt.match(segs)
		if !ok {
			continue
		}
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		h := rt.methods[method]
		switch {
		case h != nil:
			return h(a, w, r, params)
		case r.Method == http.MethodOptions:
			// A CORS preflight: Caddy has already set the Access-Control
			// headers when the origin is allowed.
			w.Header().Set("Allow", rt.allow)
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		w.Header().Set("Allow", rt.allow)
		return apiErrorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rt.allow)
	}
	return apiErrorf(http.StatusNotFound, "no llm_gate admin endpoint at %s (see the routes under %s in the docs)", r.URL.Path, Prefix)
}

// splitPath returns the segments of the path after Prefix, each unescaped on
// its own so that an escaped '/' inside a segment cannot split it. One
// trailing slash is ignored.
func splitPath(u *url.URL) ([]string, error) {
	p := u.EscapedPath()
	rest, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		return nil, apiErrorf(http.StatusNotFound, "no llm_gate admin endpoint at %s", u.Path)
	}
	rest = strings.TrimSuffix(rest, "/")
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		un, err := url.PathUnescape(s)
		if err != nil { // EscapedPath's output always unescapes; kept for safety
			return nil, apiErrorf(http.StatusBadRequest, "bad escape in path segment %q: %v", s, err)
		}
		segs[i] = un
	}
	return segs, nil
}

// apiErrorf is an error Caddy's admin server renders as {"error":"…"} with
// the given status.
func apiErrorf(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// gateApp is the running config's llm_gate app. Caddy replaces its admin
// endpoint, and with it this module, before the new config's apps start,
// and keeps the new endpoint when they fail to: the app this module was
// provisioned with may then belong to a config that was refused, whose
// plans never applied and whose store may be closed.
func (a *API) gateApp() *gate.App {
	if ctx := caddy.ActiveContext(); ctx.Context != nil {
		if v, err := ctx.App("llm_gate"); err == nil {
			if app, ok := v.(*gate.App); ok {
				return app
			}
		}
	}
	return a.app // the first config, while it starts
}

// state is the gate's process-wide state.
func (a *API) state() *gate.State { return a.gateApp().State() }

// now is the time stamped on keys created or revoked.
func now() time.Time { return time.Now().UTC() }

// asAPIError reports whether err already carries its status.
func asAPIError(err error) bool {
	var ae caddy.APIError
	return errors.As(err, &ae)
}

// Interface guards.
var (
	_ caddy.Module      = (*API)(nil)
	_ caddy.Provisioner = (*API)(nil)
	_ caddy.AdminRouter = (*API)(nil)
)
