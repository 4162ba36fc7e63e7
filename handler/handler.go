// Package handler is the llm_gate HTTP middleware: it identifies the caller,
// admits the request against the caller's plan, forwards it to the next
// handler (reverse_proxy), counts the tokens of the response as it streams,
// and settles the usage.
package handler

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/meter"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's settings.
const (
	DefaultReserveOutput = 4096
	DefaultMaxBodySize   = 16 << 20
)

// Handler is the `llm_gate` HTTP handler. Place it before reverse_proxy (the
// Caddyfile directive does so by itself).
type Handler struct {
	// JWT verification. Absent: JWTs are not accepted.
	JWT *JWTConfig `json:"jwt,omitempty"`
	// Whether API keys issued through the admin API are accepted.
	// Default: true.
	APIKeys *bool `json:"api_keys,omitempty"`
	// The plan of users who have none of their own. Default: the app's
	// default_plan.
	Plan string `json:"plan,omitempty"`
	// What happens to the usage chunk the gate asked vLLM for: "hide"
	// (default; the client sees vLLM's stream byte for byte) or "forward".
	UsageChunk string `json:"usage_chunk,omitempty"`
	// How prompts are counted before admission: "estimate" (local
	// tokenizer, default) or "tokenize" (exact, via the upstream's
	// /tokenize).
	PromptCount string `json:"prompt_count,omitempty"`
	// Output tokens reserved per choice for a request that sets no
	// max_tokens, lowered to what the model can still produce when the
	// upstream's /v1/models gives max_model_len. Default: 4096.
	ReserveOutput int64 `json:"reserve_output,omitempty"`
	// A path where GET shows callers their own plan, usage and remaining
	// budget. Empty: disabled.
	SelfService string `json:"self_service,omitempty"`
	// The largest request body accepted, in bytes. Default: 16 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	app       *gate.App
	state     *gate.State
	verifier  *auth.Verifier
	apiKeys   bool
	hide      bool
	modelLens *modelLens
	// uncounted numbers the requests admitted on a bound of their prompt
	// whose usage the upstream reported, to count one in estimateEvery.
	uncounted *atomic.Uint64
	// twice warns once that a request reached this gate identified.
	twice  *sync.Once
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_gate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, joins the llm_gate app and builds the JWT
// verifier (fetching JWKS once).
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("llm_gate")
	if err != nil {
		return fmt.Errorf("llm_gate: loading the llm_gate app: %w", err)
	}
	h.app = appIface.(*gate.App)
	h.state = h.app.State()
	h.apiKeys = h.APIKeys == nil || *h.APIKeys
	if h.UsageChunk == "" {
		h.UsageChunk = "hide"
	}
	if h.PromptCount == "" {
		h.PromptCount = "estimate"
	}
	if h.ReserveOutput == 0 {
		h.ReserveOutput = DefaultReserveOutput
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = DefaultMaxBodySize
	}
	h.hide = h.UsageChunk == "hide"
	h.modelLens = &modelLens{}
	h.uncounted = new(atomic.Uint64)
	h.twice = new(sync.Once)
	if h.JWT != nil {
		cfg, err := h.JWT.verifierConfig(h.logger)
		if err != nil {
			return err
		}
		if h.verifier, err = auth.NewVerifier(cfg); err != nil {
			return fmt.Errorf("llm_gate jwt: %w", err)
		}
	}
	return nil
}

// Validate checks the settings.
func (h *Handler) Validate() error {
	switch h.UsageChunk {
	case "hide", "forward":
	default:
		return fmt.Errorf("llm_gate: usage_chunk must be hide or forward, not %q", h.UsageChunk)
	}
	switch h.PromptCount {
	case "estimate", "tokenize":
	default:
		return fmt.Errorf("llm_gate: prompt_count must be estimate or tokenize, not %q", h.PromptCount)
	}
	if h.ReserveOutput < 0 || h.MaxBodySize < 0 {
		return errors.New("llm_gate: reserve_output and max_body_size must be positive")
	}
	if h.Plan != "" && h.app.Plan(h.Plan) == nil {
		return fmt.Errorf("llm_gate: plan %q is not defined in the global llm_gate option (defined: %v)", h.Plan, h.app.PlanNames())
	}
	if h.verifier == nil && !h.apiKeys {
		return errors.New("llm_gate: no credential can be accepted: configure jwt, or leave api_keys on")
	}
	if h.SelfService != "" {
		if err := ValidSelfService(h.SelfService); err != nil {
			return fmt.Errorf("llm_gate: %w", err)
		}
	}
	return nil
}

// ValidSelfService reports a self_service path that cannot serve: one not
// starting with /, one with a query (never part of a request's path), or
// one under /v1/, where it would answer for (and stop metering) an API path.
func ValidSelfService(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("self_service: path %q must start with /", p)
	case strings.ContainsAny(p, "?#"):
		return fmt.Errorf("self_service: path %q must not hold a query or fragment: a request's path never does", p)
	case p == "/v1" || strings.HasPrefix(p, "/v1/"):
		return fmt.Errorf("self_service: path %q is under /v1/, the API the gate serves: choose one outside it (say /llm_gate/me)", p)
	}
	return nil
}

// Cleanup stops the JWKS refresher.
func (h *Handler) Cleanup() error {
	if h.verifier != nil {
		h.verifier.Close()
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The request's one reading of the wall clock: its record's time, the
	// admission's and the JWT's now; later instants add the monotonic
	// time since (cheaper than another reading).
	start := time.Now()
	c, aerr := h.identify(r, start)
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if c != nil && repl != nil {
		// One provider answers every {http.llm_gate.*} placeholder from the
		// caller, whose counts settle fills in later: cheaper than a Set
		// (a lock and a boxed value) per placeholder.
		repl.Map(c.placeholder)
	}
	if aerr != nil {
		if aerr.Code == "missing_api_key" && identified(r) {
			// A second llm_gate on the request's way (twice in a site):
			// the first took the credential and meters the request.
			h.twice.Do(func() {
				h.logger.Warn("llm_gate handles a request a previous llm_gate already identified: it passes it on; use llm_gate once per route")
			})
			return next.ServeHTTP(w, r)
		}
		h.countOutcome(outcomeFor(aerr))
		aerr.write(w, r)
		return nil
	}
	// The caller's credential is for the gate only.
	delete(r.Header, "Authorization") // canonical keys: no Del, which canonicalizes
	delete(r.Header, "X-Api-Key")

	if h.SelfService != "" && r.URL.Path == h.SelfService {
		return h.serveSelf(w, r, c)
	}
	if r.Method == http.MethodPost {
		if ep := meter.EndpointFor(r.URL.Path); ep != meter.EndpointOther {
			return h.serveMetered(w, r, next, c, ep, start)
		}
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		errNotFound(r.URL.Path).write(w, r)
		return nil
	}
	if r.Method == http.MethodGet && r.URL.Path == "/v1/models" && len(c.eff.Models) > 0 {
		return h.serveModels(w, r, next, c)
	}
	return h.passThrough(w, r, next)
}

// identified reports whether an llm_gate before this one identified r's
// caller (its placeholders answer).
func identified(r *http.Request) bool {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return false
	}
	_, ok := repl.Get("http.llm_gate.user")
	return ok
}

// passThrough hands on a request the gate does not meter. An upstream that
// does not answer gets the metered paths' OpenAI-shaped error rather than
// Caddy's empty 502: SDKs show its message (GET /v1/models is the first
// thing many of them ask).
func (h *Handler) passThrough(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rec := caddyhttp.NewResponseRecorder(w, nil, nil) // passes everything on, notes the status
	err := next.ServeHTTP(rec, r)
	switch {
	case err != nil && rec.Status() == 0:
		h.logger.Warn("upstream failed", zap.Error(err))
		upstreamFailure(err).write(w, r)
		return nil
	case err == nil && rec.Status() == 0 && r.Context().Err() == nil:
		h.noUpstream(w, r)
	}
	return err
}

// noUpstream answers a request that nothing after llm_gate answered (a
// route without reverse_proxy, where Caddy would send an empty 200) with the
// upstream's OpenAI-shaped 502, and tells the operator why.
func (h *Handler) noUpstream(w http.ResponseWriter, r *http.Request) {
	h.logger.Error("nothing after llm_gate answered the request: put reverse_proxy (or another handler) after llm_gate in this site's route",
		zap.String("method", r.Method), zap.String("path", r.URL.Path))
	errUpstream(http.StatusBadGateway).write(w, r)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
