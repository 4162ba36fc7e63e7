package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// Defaults applied by NewVerifier to zero-valued JWTConfig fields.
const (
	DefaultUserClaim          = "sub"
	DefaultMaxTokenSize       = 8192
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultJWKSTimeout        = 10 * time.Second
)

// MinSecretSize is the shortest HMAC secret NewVerifier accepts, in bytes.
const MinSecretSize = 32

// JWTConfig configures a Verifier. At least one key source (Secrets,
// PublicKeyFiles, PublicKeysPEM or JWKS) is required.
type JWTConfig struct {
	// Secrets are HMAC keys for HS256/384/512, each at least 32 bytes.
	Secrets [][]byte
	// PublicKeyFiles are PEM files holding RSA, EC (P-256/384/521) or
	// Ed25519 public keys (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE blocks;
	// a file may hold several). A block may carry a "kid: <id>" PEM header;
	// without one the key has no kid.
	PublicKeyFiles []string
	// PublicKeysPEM are PEM documents given inline (mostly for tests).
	PublicKeysPEM [][]byte
	// JWKS are JWK Set locations: http(s) URLs, or file paths (optionally
	// file://). Fetched at construction, cached, refreshed in the background
	// and when a token names an unknown kid.
	JWKS []string

	// Algorithms is the explicit list of accepted algorithms. When empty it
	// is derived from the keys: HS* for secrets, the family of each PEM key,
	// and every asymmetric algorithm when a JWKS is configured (its keys may
	// rotate to another type; each key still verifies only its own family).
	// "none" is never accepted.
	Algorithms []string
	// Issuers, when set, require `iss` to equal one of them.
	Issuers []string
	// Audiences, when set, require `aud` to contain one of them.
	Audiences []string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration

	// UserClaim names the claim holding the user id (default "sub"). It must
	// be a non-empty string in every token.
	UserClaim string
	// PlanClaim optionally names a string claim carrying the user's plan.
	PlanClaim string
	// LimitClaim optionally names a claim carrying a token limit, as a JSON
	// number or a numeric string.
	LimitClaim string

	// MaxTokenSize refuses longer tokens before parsing (default 8192).
	MaxTokenSize int
	// HTTPClient fetches JWKS URLs (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// RefreshInterval is the period of the background JWKS refresh
	// (default 5m).
	RefreshInterval time.Duration
	// MinRefetchInterval is the minimum gap between JWKS fetches triggered by
	// tokens with an unknown kid (default 30s), so that a flood of random kids
	// cannot hammer the identity provider.
	MinRefetchInterval time.Duration
	// Logger receives warnings about JWKS failures and key changes (default: no logging).
	Logger *zap.Logger
	// Now returns the current time (default time.Now); tests inject a clock.
	Now func() time.Time
}

// Identity is what a verified token says about its bearer.
type Identity struct {
	User     string    // value of the user claim
	Plan     string    // value of the plan claim, "" when absent or not configured
	Limit    int64     // value of the limit claim, when HasLimit
	HasLimit bool      // the limit claim was present
	Expires  time.Time // the token's exp
}

// Verifier verifies JWTs. It is safe for concurrent use; Close stops its
// background JWKS refresh.
//
// The per-request path reads the current key set through an atomic pointer
// and takes no lock. Only a token with an unknown kid, when a JWKS is
// configured, may take the refetch mutex, and the rate limit behind it bounds
// how often that leads to a fetch.
type Verifier struct {
	parser     *jwt.Parser
	keyFunc    jwt.Keyfunc // bound once so Verify does not allocate a method value
	algs       []string
	issuers    []string
	userClaim  string
	planClaim  string
	limitClaim string
	maxSize    int
	tooLarge   error
	now        func() time.Time
	log        *zap.Logger

	static []*key                 // secrets and PEM keys, fixed for the Verifier's life
	keys   atomic.Pointer[keySet] // current snapshot: static + cached JWKS keys

	// JWKS state.
	sources      []*jwksSource
	client       *http.Client
	refreshEvery time.Duration
	minRefetch   time.Duration
	fetchMu      sync.Mutex // serializes fetches and guards sources[i].keys

	rfMu       sync.Mutex    // guards the unknown-kid rate limiter
	rfLast     time.Time     // start of the last unknown-kid fetch
	rfInflight chan struct{} // closed when the running unknown-kid fetch ends

	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed when the refresh loop exits; nil without JWKS
	closeOnce sync.Once

	cache verifiedCache
}

// NewVerifier validates cfg, loads every key, fetches each JWKS once and, when
// a JWKS is configured, starts refreshing it in the background.
//
// Every configuration problem is an error whose message says what to fix.
// A JWKS URL that cannot be fetched at start is an error only when no other
// source yields a key: a gate whose identity provider is briefly down should
// still start and serve tokens signed with the keys it does have, so the
// failure is logged as a warning and the URL is retried in the background
// (from MinRefetchInterval, backing off to RefreshInterval) and on the first
// unknown kid. A JWKS file that cannot be read or parsed is always an error:
// that is a mistake in the configuration, not an outage.
func NewVerifier(cfg JWTConfig) (*Verifier, error) {
	v := &Verifier{
		userClaim:    cfg.UserClaim,
		planClaim:    cfg.PlanClaim,
		limitClaim:   cfg.LimitClaim,
		maxSize:      cfg.MaxTokenSize,
		now:          cfg.Now,
		log:          cfg.Logger,
		client:       cfg.HTTPClient,
		refreshEvery: cfg.RefreshInterval,
		minRefetch:   cfg.MinRefetchInterval,
	}
	if v.userClaim == "" {
		v.userClaim = DefaultUserClaim
	}
	if v.maxSize == 0 {
		v.maxSize = DefaultMaxTokenSize
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = zap.NewNop()
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: DefaultJWKSTimeout}
	}
	if v.refreshEvery == 0 {
		v.refreshEvery = DefaultRefreshInterval
	}
	if v.minRefetch == 0 {
		v.minRefetch = DefaultMinRefetchInterval
	}
	switch {
	case v.maxSize < 0:
		return nil, fmt.Errorf("jwt: max token size %d is negative; leave it 0 for the default %d", v.maxSize, DefaultMaxTokenSize)
	case cfg.Leeway < 0:
		return nil, fmt.Errorf("jwt: leeway %s is negative; use a positive duration such as 30s", cfg.Leeway)
	case v.refreshEvery < 0:
		return nil, fmt.Errorf("jwt: jwks refresh interval %s is negative", v.refreshEvery)
	case v.minRefetch < 0:
		return nil, fmt.Errorf("jwt: jwks minimum refetch interval %s is negative", v.minRefetch)
	}
	v.tooLarge = &invalidError{msg: fmt.Sprintf("token is larger than %d bytes", v.maxSize)}
	for _, list := range [][]string{cfg.Issuers, cfg.Audiences} {
		if slices.Contains(list, "") {
			return nil, errors.New("jwt: empty issuer or audience; remove it or give a value")
		}
	}
	v.issuers = slices.Clone(cfg.Issuers)

	if err := v.loadStatic(cfg); err != nil {
		return nil, err
	}
	for _, loc := range cfg.JWKS {
		s, err := newJWKSSource(loc)
		if err != nil {
			return nil, err
		}
		if s.url && strings.HasPrefix(s.loc, "http://") {
			v.log.Warn("JWKS fetched over plain http can be tampered with in transit; use https",
				zap.String("jwks", s.loc))
		}
		v.sources = append(v.sources, s)
	}
	if len(v.static) == 0 && len(v.sources) == 0 {
		return nil, errors.New("jwt: no key source; configure secret, public_key or jwks")
	}

	algs, err := chooseAlgorithms(cfg.Algorithms, v.static, len(v.sources) > 0)
	if err != nil {
		return nil, err
	}
	v.algs = algs
	for _, k := range v.static {
		if !slices.ContainsFunc(algs, k.accepts) {
			v.log.Warn("configured key matches no accepted algorithm and will never verify a token",
				zap.String("key", k.src), zap.Strings("algorithms", algs))
		}
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(v.now),
		// Strict base64 refuses non-canonical encodings, so one token has
		// exactly one spelling.
		jwt.WithStrictDecoding(),
	}
	if len(cfg.Audiences) > 0 {
		// jwt/v5 accepts any one of several audiences. Issuers are checked
		// in Verify instead: WithIssuer takes only one.
		opts = append(opts, jwt.WithAudience(slices.Clone(cfg.Audiences)...))
	}
	v.parser = jwt.NewParser(opts...)
	v.keyFunc = v.lookupKey

	v.ctx, v.cancel = context.WithCancel(context.Background())
	if err := v.initialFetch(); err != nil {
		v.cancel()
		return nil, err
	}
	return v, nil
}

// loadStatic parses secrets and PEM keys.
func (v *Verifier) loadStatic(cfg JWTConfig) error {
	for i, s := range cfg.Secrets {
		if len(s) < MinSecretSize {
			return fmt.Errorf("jwt: secret #%d is %d bytes; it must be at least %d bytes (generate one with: openssl rand -base64 48)",
				i+1, len(s), MinSecretSize)
		}
		v.static = append(v.static, &key{kind: kindHMAC, pub: bytes.Clone(s), src: fmt.Sprintf("secret #%d", i+1)})
	}
	for _, f := range cfg.PublicKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("jwt: public_key %q cannot be read: %v; check the path and its permissions", f, err)
		}
		keys, err := parsePEMKeys(data, "public_key "+f)
		if err != nil {
			return fmt.Errorf("jwt: public_key %q: %v", f, err)
		}
		v.static = append(v.static, keys...)
	}
	for i, p := range cfg.PublicKeysPEM {
		keys, err := parsePEMKeys(p, fmt.Sprintf("inline public key #%d", i+1))
		if err != nil {
			return fmt.Errorf("jwt: inline public key #%d: %v", i+1, err)
		}
		v.static = append(v.static, keys...)
	}
	return nil
}

// chooseAlgorithms validates an explicit algorithm list, or derives one from
// the configured keys.
func chooseAlgorithms(explicit []string, static []*key, hasJWKS bool) ([]string, error) {
	hasKind := func(kind keyKind) bool {
		return slices.ContainsFunc(static, func(k *key) bool { return k.kind == kind })
	}
	if len(explicit) == 0 {
		var algs []string
		for _, alg := range allAlgorithms {
			kind := algKind[alg]
			if hasKind(kind) || (hasJWKS && kind != kindHMAC) {
				algs = append(algs, alg)
			}
		}
		return algs, nil
	}
	var algs []string
	for _, a := range explicit {
		a = strings.TrimSpace(a)
		if strings.EqualFold(a, "none") {
			return nil, errors.New(`jwt: algorithm "none" is never accepted; remove it`)
		}
		i := slices.IndexFunc(allAlgorithms, func(s string) bool { return strings.EqualFold(s, a) })
		if i < 0 {
			return nil, fmt.Errorf("jwt: unknown algorithm %q; use one of %s", a, strings.Join(allAlgorithms, " "))
		}
		alg := allAlgorithms[i]
		kind := algKind[alg]
		switch {
		case kind == kindHMAC && !hasKind(kindHMAC):
			return nil, fmt.Errorf("jwt: algorithm %s needs an HMAC secret; add `secret` or remove %s", alg, alg)
		case kind != kindHMAC && !hasJWKS && !hasKind(kind):
			return nil, fmt.Errorf("jwt: algorithm %s has no %s to verify it; add a matching public_key or jwks, or remove %s", alg, kind, alg)
		}
		if !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	return algs, nil
}

// Algorithms returns the accepted algorithms.
func (v *Verifier) Algorithms() []string {
	return slices.Clone(v.algs)
}

// Close stops the background JWKS refresh and aborts fetches in flight. It is
// safe to call more than once; Verify keeps working with the cached keys.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		if v.done != nil {
			<-v.done
		}
	})
}

// verifyError wraps ErrInvalid and the reason a token was refused (often a
// jwt/v5 error, so errors.Is(err, jwt.ErrTokenExpired) works too).
type verifyError struct{ err error }

func (e *verifyError) Error() string   { return ErrInvalid.Error() + ": " + e.err.Error() }
func (e *verifyError) Unwrap() []error { return []error{ErrInvalid, e.err} }

func invalid(format string, args ...any) error {
	return &verifyError{err: fmt.Errorf(format, args...)}
}

var errEmptyToken = invalidf("empty token")

// Verify checks a token's size, signature, algorithm and claims and returns
// the identity it carries. Every error wraps ErrInvalid.
//
// The returned Identity may be shared between calls with the same token:
// callers must not modify it.
func (v *Verifier) Verify(token string) (*Identity, error) {
	return v.VerifyAt(token, v.now())
}

// VerifyAt is Verify for a caller that has read the clock already: now
// decides whether a token verified before has expired since (a token not
// seen before is checked against the parser's clock).
func (v *Verifier) VerifyAt(token string, now time.Time) (*Identity, error) {
	if len(token) > v.maxSize {
		return nil, v.tooLarge
	}
	if token == "" {
		return nil, errEmptyToken
	}
	set := v.keys.Load()
	if id := v.cache.get(token, set, now); id != nil {
		return id, nil
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.keyFunc); err != nil {
		return nil, &verifyError{err: err}
	}
	if len(v.issuers) > 0 {
		iss, _ := claims["iss"].(string)
		if !slices.Contains(v.issuers, iss) {
			return nil, invalid("issuer %.128q is not accepted", iss)
		}
	}
	user, ok := claims[v.userClaim].(string)
	switch {
	case !ok:
		return nil, invalid("claim %q is missing or not a string", v.userClaim)
	case user == "":
		return nil, invalid("claim %q is empty", v.userClaim)
	case strings.ContainsFunc(user, isControl):
		return nil, invalid("claim %q contains control characters", v.userClaim)
	}
	id := &Identity{User: user}
	if v.planClaim != "" {
		switch p := claims[v.planClaim].(type) {
		case nil: // absent or null
		case string:
			id.Plan = p
		default:
			return nil, invalid("claim %q is not a string", v.planClaim)
		}
	}
	if v.limitClaim != "" && claims[v.limitClaim] != nil {
		n, err := parseLimit(claims[v.limitClaim])
		if err != nil {
			return nil, invalid("claim %q: %v", v.limitClaim, err)
		}
		id.Limit, id.HasLimit = n, true
	}
	// exp is required and was validated by the parser as a number (MapClaims
	// decodes numbers as float64). Converting it here rather than through
	// GetExpirationTime saves an allocation; like jwt/v5, keep whole seconds.
	if exp, ok := claims["exp"].(float64); ok {
		id.Expires = time.Unix(int64(exp), 0)
	}
	v.cache.put(token, id, set)
	return id, nil
}

// verifiedCache remembers tokens that verified, so a client that sends the
// same token on every request (as every SDK does) pays for the signature
// and the claims once. An entry is used only while the key set it verified
// against is still the current one (a JWKS refresh that drops a key drops
// its tokens) and until the token's exp (without leeway). Only valid tokens
// enter, so a flood of garbage cannot fill it; its size is bounded anyway.
type verifiedCache struct {
	mu      sync.RWMutex
	entries map[string]verifiedEntry
}

type verifiedEntry struct {
	id  *Identity
	set *keySet
}

// maxVerifiedCache bounds the cache; beyond it, an arbitrary entry goes.
const maxVerifiedCache = 16384

func (c *verifiedCache) get(token string, set *keySet, now time.Time) *Identity {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || e.set != set || !now.Before(e.id.Expires) {
		return nil
	}
	return e.id
}

func (c *verifiedCache) put(token string, id *Identity, set *keySet) {
	if id.Expires.IsZero() {
		return
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = make(map[string]verifiedEntry)
	}
	if len(c.entries) >= maxVerifiedCache {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[token] = verifiedEntry{id: id, set: set}
	c.mu.Unlock()
}

// parseLimit accepts a non-negative integer given as a JSON number or a
// decimal string.
func parseLimit(raw any) (int64, error) {
	switch x := raw.(type) {
	case float64:
		// 2^63 is the first float64 beyond int64's range.
		if x < 0 || x >= math.MaxInt64 || x != math.Trunc(x) {
			return 0, fmt.Errorf("%v is not a non-negative integer", x)
		}
		return int64(x), nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%.32q is not a non-negative integer", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("is a %T, not a number", raw)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Errors from the Keyfunc that need no formatting.
var (
	errCrit   = errors.New(`header "crit" names extensions this verifier does not understand`)
	errKidStr = errors.New(`header "kid" is not a non-empty string`)
)

// lookupKey is the jwt/v5 Keyfunc. The parser has already checked the
// algorithm against the accepted list. Headers that point at keys (jku, x5u,
// jwk, x5c) are never read: only configured keys verify tokens.
func (v *Verifier) lookupKey(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	alg := t.Method.Alg()
	rawKid, hasKid := t.Header["kid"]
	ks := v.keys.Load()
	if !hasKid {
		if k, ok := ks.byAlg[alg]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no configured key can verify %s", alg)
	}
	kid, ok := rawKid.(string)
	if !ok || kid == "" {
		return nil, errKidStr
	}
	if k, ok := ks.byKid[kidAlg{kid, alg}]; ok {
		return k, nil
	}
	if _, known := ks.kids[kid]; known {
		// The kid exists but its key belongs to another family, or is pinned
		// to another alg: a refetch would not change that.
		return nil, fmt.Errorf("key %.64q cannot verify %s", kid, alg)
	}
	// A new kid may be a key the JWKS rotated in (JWKS carry no HMAC keys).
	if len(v.sources) > 0 && !strings.HasPrefix(alg, "HS") && v.refetchForKid() {
		ks = v.keys.Load()
		if k, ok := ks.byKid[kidAlg{kid, alg}]; ok {
			return k, nil
		}
	}
	if k, ok := ks.noKid[alg]; ok {
		// A configured key with no kid of its own (a secret, a PEM key)
		// verifies tokens whatever kid their issuer gives them: identity
		// providers put one on every token.
		return k, nil
	}
	return nil, fmt.Errorf("no key with kid %.64q for %s", kid, alg)
}
