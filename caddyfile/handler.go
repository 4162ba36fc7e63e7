package caddyfile

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/handler"
)

// algorithms are the JWT signing algorithms the handler can verify. "none"
// is not among them and never will be.
var algorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// minSecret is the shortest HMAC secret accepted: shorter ones can be
// brute-forced offline from a single token.
const minSecret = 32

// parseHandler sets up the `llm_gate` handler from its directive. It
// reads the global option first so a site naming an undefined plan fails
// here, at its own line, rather than at provision.
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	plans, err := globalPlans(h)
	if err != nil {
		return nil, err
	}
	return unmarshalHandler(h.Dispenser, plans)
}

// globalPlans returns the plans of the global llm_gate option, which
// httpcaddyfile evaluates before any site block.
func globalPlans(h httpcaddyfile.Helper) (map[string]*gate.PlanConfig, error) {
	app, ok := h.Option("llm_gate").(httpcaddyfile.App)
	if !ok {
		return nil, nil
	}
	var cfg gate.Config
	if err := json.Unmarshal(app.Value, &cfg); err != nil {
		return nil, h.Errf("reading the global llm_gate option: %v", err)
	}
	return cfg.Plans, nil
}

// unmarshalHandler reads the directive. Syntax:
//
//	llm_gate [<matcher>] {
//		jwt {
//			secret <secret>
//			public_key <pem file>
//			jwks <url or file>
//			algorithms <alg...>
//			issuer <iss>
//			audience <aud>
//			leeway <duration>
//			user_claim <claim>
//			plan_claim <claim>
//			limit_claim <claim>
//		}
//		api_keys [on|off]
//		plan <name>
//		usage_chunk hide|forward
//		prompt_count estimate|tokenize
//		reserve_output <n>
//		self_service <path>
//		max_body_size <size>
//	}
//
// plans are those of the global option: `plan` must name one of them.
func unmarshalHandler(d *caddyfile.Dispenser, plans map[string]*gate.PlanConfig) (*handler.Handler, error) {
	d.Next() // consume directive name
	directive := d.Token()
	if d.NextArg() {
		return nil, d.Errf("llm_gate: unexpected argument %q; settings go in a block", d.Val())
	}

	h := new(handler.Handler)
	single, jwtSingle := once{}, once{}     // jwtSingle spans the site's jwt blocks
	var apiKeysTok, algTok *caddyfile.Token // checked once every block is read
	for d.NextBlock(0) {
		switch word := d.Val(); word {
		case "jwt":
			if h.JWT == nil {
				h.JWT = new(handler.JWTConfig)
			}
			if err := parseJWT(d, h.JWT, jwtSingle, &algTok); err != nil {
				return nil, err
			}

		case "api_keys":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			on := true // the bare word turns keys on
			if d.NextArg() {
				switch v := d.Val(); v {
				case "on", "true":
				case "off", "false":
					on = false
				default:
					return nil, d.Errf("api_keys: unknown value %q; use on or off", v)
				}
			}
			if err := noMore(d, word); err != nil {
				return nil, err
			}
			h.APIKeys = &on
			tok := d.Token()
			apiKeysTok = &tok

		case "plan":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			name, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if plans[name] == nil {
				return nil, d.Errf("plan %q is not defined in the global llm_gate option; %s", name, definedPlans(plans))
			}
			h.Plan = name

		case "usage_chunk":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			v, err := oneOf(d, "hide", "forward")
			if err != nil {
				return nil, err
			}
			h.UsageChunk = v

		case "prompt_count":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			v, err := oneOf(d, "estimate", "tokenize")
			if err != nil {
				return nil, err
			}
			h.PromptCount = v

		case "reserve_output":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			n, err := countArg(d)
			if err != nil {
				return nil, err
			}
			if n > maxJSONInt {
				return nil, d.Errf("reserve_output: %d is too large (at most %d: Caddy's JSON config carries a handler's numbers as floats)", n, maxJSONInt)
			}
			h.ReserveOutput = n

		case "self_service":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			p, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if err := handler.ValidSelfService(p); err != nil {
				return nil, d.Errf("%v", err)
			}
			h.SelfService = p

		case "max_body_size":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			s, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			// humanize drops commas and cuts fractions of a byte: 1,5MB
			// would read 15 MB and 1.5 one byte.
			m := sizeSyntax.FindStringSubmatch(s)
			if m == nil || m[2] != "" && (m[3] == "" || strings.EqualFold(m[3], "b")) {
				return nil, d.Errf("max_body_size: bad size %q (examples: 16MB, 1MiB, 512KiB, 1.5MB)", s)
			}
			size, err := humanize.ParseBytes(s)
			if err != nil || size == 0 || size > math.MaxInt64 {
				return nil, d.Errf("max_body_size: bad size %q (examples: 16MB, 1MiB, 512KiB)", s)
			}
			if size > maxJSONInt {
				return nil, d.Errf("max_body_size: %s is too large (at most %d bytes: Caddy's JSON config carries a handler's numbers as floats)", s, maxJSONInt)
			}
			h.MaxBodySize = int64(size)

		default:
			return nil, d.Errf("unrecognized llm_gate subdirective %q (known: jwt, api_keys, plan, usage_chunk, prompt_count, reserve_output, self_service, max_body_size)", word)
		}
	}
	if h.JWT == nil && h.APIKeys != nil && !*h.APIKeys {
		at := directive
		if apiKeysTok != nil {
			at = *apiKeysTok
		}
		return nil, errAt(at, "llm_gate: no credential can be accepted: configure jwt, or leave api_keys on")
	}
	if h.JWT != nil && algTok != nil {
		hasSecret, hasPublic := len(h.JWT.Secrets) > 0, len(h.JWT.PublicKeys)+len(h.JWT.JWKS) > 0
		for _, a := range h.JWT.Algorithms {
			if hmac := strings.HasPrefix(a, "HS"); hmac && !hasSecret || !hmac && !hasPublic {
				need := "a public_key or jwks"
				if hmac {
					need = "a secret"
				}
				return nil, errAt(*algTok, "jwt algorithms: %s needs %s, and the site's jwt blocks give none", a, need)
			}
		}
		// Each algorithm needs a key of its kind (ES256 a P-256 key, EdDSA
		// an Ed25519 one), known here when the public keys are files.
		var pems [][]byte
		known := true
		for _, p := range h.JWT.PublicKeys {
			if hasPlaceholder(p) { // resolved, and checked, at provision
				known = false
				break
			}
			b, err := os.ReadFile(p) // checkPEM read it in parseJWT
			if err != nil {
				return nil, errAt(*algTok, "jwt public_key: %v", err)
			}
			pems = append(pems, b)
		}
		if known {
			if err := auth.CheckAlgorithms(h.JWT.Algorithms, hasSecret, pems, len(h.JWT.JWKS) > 0); err != nil {
				return nil, errAt(*algTok, "%v", err)
			}
		}
	}
	return h, nil
}

// sizeSyntax is a size: a number, its fraction, and a unit.
var sizeSyntax = regexp.MustCompile(`^(\d+)(\.\d+)?\s*([A-Za-z]*)$`)

// parseJWT reads a `jwt { ... }` block into cfg; the cursor is on `jwt`.
// A site may hold several jwt blocks: they add up. A setting that takes one
// value may be given in one of them only (single spans them).
func parseJWT(d *caddyfile.Dispenser, cfg *handler.JWTConfig, single once, algTok **caddyfile.Token) error {
	start := d.Token()
	if d.NextArg() {
		return d.Errf("jwt: unexpected argument %q; settings go in a block", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch word := d.Val(); word {
		case "secret":
			s, err := oneArg(d)
			if err != nil {
				return err
			}
			// A placeholder is resolved, and checked, at provision.
			if !hasPlaceholder(s) && len(s) < minSecret {
				// The secret itself is kept out of the message.
				return d.Errf("jwt secret must be at least %d bytes; generate one with: openssl rand -base64 48", minSecret)
			}
			cfg.Secrets = append(cfg.Secrets, s)

		case "public_key":
			p, err := oneArg(d)
			if err != nil {
				return err
			}
			if !hasPlaceholder(p) {
				if err := checkPEM(p); err != nil {
					return d.Errf("jwt public_key: %v", err)
				}
			}
			cfg.PublicKeys = append(cfg.PublicKeys, p)

		case "jwks":
			src, err := oneArg(d)
			if err != nil {
				return err
			}
			if strings.Contains(src, "://") {
				u, err := url.Parse(src)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					return d.Errf("jwks: %q is neither an http(s) URL nor a file path", src)
				}
			} else if !hasPlaceholder(src) {
				b, err := os.ReadFile(src)
				if err != nil {
					return d.Errf("jwt jwks: %v", err) // *PathError: the path and the reason
				}
				if err := auth.CheckJWKS(b); err != nil {
					return d.Errf("jwt jwks: %s: %v", src, err)
				}
			}
			cfg.JWKS = append(cfg.JWKS, src)

		case "algorithms":
			tok := d.Token()
			*algTok = &tok
			algs, err := someArgs(d)
			if err != nil {
				return err
			}
			for _, a := range algs {
				if strings.EqualFold(a, "none") {
					return d.Err("jwt: algorithm none is never accepted: it would let anyone forge a token")
				}
				if !slices.Contains(algorithms, a) {
					return d.Errf("jwt: unknown algorithm %q (known: %s)", a, strings.Join(algorithms, " "))
				}
			}
			cfg.Algorithms = append(cfg.Algorithms, algs...)

		case "issuer":
			iss, err := oneArg(d)
			if err != nil {
				return err
			}
			cfg.Issuers = append(cfg.Issuers, iss)

		case "audience":
			aud, err := oneArg(d)
			if err != nil {
				return err
			}
			cfg.Audiences = append(cfg.Audiences, aud)

		case "leeway":
			if err := single.check(d, word); err != nil {
				return err
			}
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			cfg.Leeway = dur

		case "user_claim", "plan_claim", "limit_claim":
			if err := single.check(d, word); err != nil {
				return err
			}
			claim, err := oneArg(d)
			if err != nil {
				return err
			}
			switch word {
			case "user_claim":
				cfg.UserClaim = claim
			case "plan_claim":
				cfg.PlanClaim = claim
			default:
				cfg.LimitClaim = claim
			}

		default:
			return d.Errf("unrecognized jwt subdirective %q (known: secret, public_key, jwks, algorithms, issuer, audience, leeway, user_claim, plan_claim, limit_claim)", word)
		}
	}
	if len(cfg.Secrets)+len(cfg.PublicKeys)+len(cfg.JWKS) == 0 {
		return errAt(start, "jwt needs a key to verify tokens with: add secret, public_key or jwks")
	}
	return nil
}

// checkPEM fails unless path is a readable file holding a PEM block. The
// key inside is parsed at provision, which knows which types it accepts.
func checkPEM(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err // *PathError: names the path and the reason
	}
	if block, _ := pem.Decode(b); block == nil {
		return &os.PathError{Op: "read", Path: path, Err: errNoPEM}
	}
	if err := auth.CheckPEM(b); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// maxJSONInt is the largest integer a float64 holds exactly: Caddy turns a
// handler's JSON into floats and back on its way to the module, so a larger
// count would fail to load, or load rounded.
const maxJSONInt = 1<<53 - 1
