package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// clock is an injectable, manually advanced clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(testNow.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// waitFor polls cond every few milliseconds for up to five seconds. It is
// used only where a background goroutine must act; the deadline is a
// failure bound, not a delay the test depends on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestJWKSFromURL(t *testing.T) {
	k := keys(t)
	enc := jwkOf(t, &k.rsa2.PublicKey, "enc-key")
	enc["use"] = "enc"
	srv := newIDP(t, jwksOf(t,
		jwkOf(t, &k.rsa.PublicKey, "rsa"),
		jwkOf(t, &k.p256.PublicKey, "ec"),
		jwkOf(t, &k.p384.PublicKey, "ec384"),
		jwkOf(t, k.ed.Public(), "ed"),
		enc,
		map[string]any{"kty": "oct", "kid": "sym", "k": b64url(testSecret)},
	))
	v := newTestVerifier(t, JWTConfig{JWKS: []string{srv.URL}})
	want := "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"
	if got := strings.Join(v.Algorithms(), " "); got != want {
		t.Errorf("Algorithms() = %s, want %s", got, want)
	}
	tests := []struct {
		name   string
		tok    string
		wantOK bool
	}{
		{"rsa", sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "rsa"}), true},
		{"rsa pss", sign(t, jwt.SigningMethodPS384, k.rsa, claims(nil), map[string]any{"kid": "rsa"}), true},
		{"ec", sign(t, jwt.SigningMethodES256, k.p256, claims(nil), map[string]any{"kid": "ec"}), true},
		{"ec384", sign(t, jwt.SigningMethodES384, k.p384, claims(nil), map[string]any{"kid": "ec384"}), true},
		{"ed", sign(t, jwt.SigningMethodEdDSA, k.ed, claims(nil), map[string]any{"kid": "ed"}), true},
		{"ec without kid", sign(t, jwt.SigningMethodES256, k.p256, claims(nil), nil), true},
		{"encryption key refused", sign(t, jwt.SigningMethodRS256, k.rsa2, claims(nil), map[string]any{"kid": "enc-key"}), false},
		{"symmetric jwks key refused", sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), map[string]any{"kid": "sym"}), false},
		{"ec key under another kid", sign(t, jwt.SigningMethodES256, k.p256, claims(nil), map[string]any{"kid": "rsa"}), false},
		{"ES256 naming the P-384 key", sign(t, jwt.SigningMethodES256, k.p256, claims(nil), map[string]any{"kid": "ec384"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(tt.tok)
			if (err == nil) != tt.wantOK {
				t.Fatalf("Verify err = %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}

func TestJWKSFromFile(t *testing.T) {
	k := keys(t)
	set := writeFile(t, "jwks.json", jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	lone := writeFile(t, "one.json", []byte(mustJSON(t, jwkOf(t, k.ed.Public(), "b"))))
	v := newTestVerifier(t, JWTConfig{JWKS: []string{set, "file://" + lone}})
	for _, tok := range []string{
		sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "a"}),
		sign(t, jwt.SigningMethodEdDSA, k.ed, claims(nil), map[string]any{"kid": "b"}),
	} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	// Rotating the file is picked up by a refresh.
	if err := os.WriteFile(set, jwksOf(t, jwkOf(t, &k.rsa2.PublicKey, "c")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "a"})); err == nil {
		t.Fatal("removed key still verifies")
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa2, claims(nil), map[string]any{"kid": "c"})); err != nil {
		t.Fatalf("new key: %v", err)
	}
}

func TestJWKSRotation(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "old")))
	clk := newClock()
	// A kid-less RSA key beside the JWKS, which verifies tokens whose kid
	// names no key, must not keep a rotated-in key from being fetched.
	v := newTestVerifier(t, JWTConfig{JWKS: []string{srv.URL}, Now: clk.Now, PublicKeysPEM: [][]byte{pemOf(t, &k.attackerRSA.PublicKey, "")}})
	oldTok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "old"})
	newTok := sign(t, jwt.SigningMethodRS256, k.rsa2, claims(nil), map[string]any{"kid": "new"})
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatal(err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("hits after construction = %d, want 1", got)
	}

	// The IdP publishes a new key; the first token naming it triggers a
	// refetch and verifies.
	srv.set(jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "old"), jwkOf(t, &k.rsa2.PublicKey, "new")))
	if _, err := v.Verify(newTok); err != nil {
		t.Fatalf("new kid after rotation: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("hits after unknown kid = %d, want 2", got)
	}
	// A known kid does not refetch.
	for range 10 {
		if _, err := v.Verify(newTok); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("hits after known kids = %d, want 2", got)
	}

	// The IdP retires the old key; after a refresh it is refused.
	srv.set(jwksOf(t, jwkOf(t, &k.rsa2.PublicKey, "new")))
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(oldTok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("retired key: err = %v, want ErrInvalid", err)
	}
	if _, err := v.Verify(newTok); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSIdPFailsAfterStart(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	clk := newClock()
	core, logs := observer.New(zapcore.WarnLevel)
	v := newTestVerifier(t, JWTConfig{JWKS: []string{srv.URL}, Now: clk.Now, Logger: zap.New(core)})
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "a"})

	for _, failure := range []struct {
		name string
		set  func()
	}{
		{"status 500", func() { srv.status.Store(http.StatusInternalServerError) }},
		{"empty set", func() { srv.status.Store(0); srv.set(jwksOf(t)) }},
		{"not json", func() { srv.set([]byte("<html>maintenance</html>")) }},
		{"oversize", func() { srv.set([]byte(`{"keys":[` + strings.Repeat(" ", maxJWKSSize) + `]}`)) }},
	} {
		t.Run(failure.name, func(t *testing.T) {
			failure.set()
			if err := v.Refresh(context.Background()); err == nil {
				t.Fatal("Refresh succeeded against a failing IdP")
			}
			if _, err := v.Verify(tok); err != nil {
				t.Fatalf("cached key stopped working: %v", err)
			}
			// An unknown kid while the IdP is down is refused, not an error
			// of another kind, and the cached key survives the refetch.
			clk.Advance(time.Hour)
			if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, claims(map[string]any{"exp": clk.Now().Add(time.Hour).Unix()}), map[string]any{"kid": "zzz"})); !errors.Is(err, ErrInvalid) {
				t.Fatalf("unknown kid: %v", err)
			}
			clk.Advance(-time.Hour)
			if _, err := v.Verify(tok); err != nil {
				t.Fatalf("cached key stopped working after refetch: %v", err)
			}
		})
	}
	if logs.FilterMessageSnippet("keeping the cached keys").Len() == 0 {
		t.Error("no warning logged for the failing IdP")
	}
}

func TestUnknownKidFlood(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	clk := newClock()
	v := newTestVerifier(t, JWTConfig{
		JWKS:               []string{srv.URL},
		Now:                clk.Now,
		MinRefetchInterval: 30 * time.Second,
		// Keep the background refresh out of the count.
		RefreshInterval: time.Hour,
	})
	// Tokens with random kids, signed by a valid key so only the kid is wrong.
	toks := make([]string, 200)
	for i := range toks {
		var b [8]byte
		_, _ = rand.Read(b[:])
		toks[i] = sign(t, jwt.SigningMethodRS256, k.rsa, claims(map[string]any{"exp": testNow.Add(24 * time.Hour).Unix()}), map[string]any{"kid": hex.EncodeToString(b[:])})
	}
	flood := func() {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(toks); i += 8 {
					if _, err := v.Verify(toks[i]); !errors.Is(err, ErrInvalid) {
						t.Errorf("random kid: err = %v", err)
					}
				}
			}()
		}
		wg.Wait()
	}
	steps := []struct {
		advance  time.Duration
		wantHits int64
	}{
		{0, 2},                // construction + one refetch
		{10 * time.Second, 2}, // within the interval: none
		{19 * time.Second, 2}, // 29 s after the refetch: still none
		{2 * time.Second, 3},  // 31 s: one more
		{29 * time.Second, 3}, // 29 s later: none
		{time.Second, 4},      // 30 s: one more
		{10 * time.Minute, 5}, // long pause: exactly one
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		flood()
		if got := srv.hits.Load(); got != s.wantHits {
			t.Fatalf("step %d: IdP hits = %d, want %d", i, got, s.wantHits)
		}
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	srv.status.Store(http.StatusServiceUnavailable)
	core, logs := observer.New(zapcore.WarnLevel)
	clk := newClock()
	v := newTestVerifier(t, JWTConfig{
		Secrets:            [][]byte{testSecret},
		JWKS:               []string{srv.URL},
		Logger:             zap.New(core),
		Now:                clk.Now,
		MinRefetchInterval: 10 * time.Millisecond,
		RefreshInterval:    time.Hour, // the retry after a failure comes after MinRefetchInterval
	})
	if logs.FilterMessageSnippet("unavailable at start").Len() != 1 {
		t.Fatalf("want one start-up warning, got %v", logs.All())
	}
	// The other key source works meanwhile.
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), nil)); err != nil {
		t.Fatal(err)
	}
	// The asymmetric algorithms are accepted already, since the JWKS may
	// bring any family.
	if !strings.Contains(strings.Join(v.Algorithms(), " "), "RS256") {
		t.Fatalf("Algorithms() = %v", v.Algorithms())
	}
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "a"})
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("verified without the JWKS")
	}
	// The IdP comes back; the background retry picks the keys up without
	// any request asking for them.
	srv.status.Store(0)
	before := srv.hits.Load()
	waitFor(t, "background retry", func() bool { return srv.hits.Load() > before && v.keys.Load().count == 2 })
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestBackgroundRefresh(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	v, err := NewVerifier(JWTConfig{JWKS: []string{srv.URL}, Now: fixedNow, RefreshInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "a"})
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	srv.set(jwksOf(t, jwkOf(t, &k.rsa2.PublicKey, "b")))
	waitFor(t, "removed key refused after background refresh", func() bool {
		_, err := v.Verify(tok)
		return err != nil
	})
	// A failing IdP makes the loop retry, and Close stops it.
	srv.status.Store(http.StatusBadGateway)
	h := srv.hits.Load()
	waitFor(t, "retries", func() bool { return srv.hits.Load() > h+1 })
	v.Close()
	v.Close() // idempotent
	h = srv.hits.Load()
	time.Sleep(20 * time.Millisecond)
	if got := srv.hits.Load(); got != h {
		t.Fatalf("IdP hit %d times after Close", got-h)
	}
}

// TestConcurrentVerifyAndRefresh exercises the key-set swap under the race
// detector.
func TestConcurrentVerifyAndRefresh(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.p256.PublicKey, "a")))
	v := newTestVerifier(t, JWTConfig{JWKS: []string{srv.URL}})
	tok := sign(t, jwt.SigningMethodES256, k.p256, claims(nil), map[string]any{"kid": "a"})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := v.Verify(tok); err != nil {
					t.Errorf("Verify during refresh: %v", err)
					return
				}
			}
		}()
	}
	for range 20 {
		if err := v.Refresh(context.Background()); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestParseJWKS(t *testing.T) {
	k := keys(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := jwkOf(t, &k.rsa.PublicKey, "good")
	mod := func(base map[string]any, changes map[string]any) map[string]any {
		m := map[string]any{}
		for key, val := range base {
			m[key] = val
		}
		for key, val := range changes {
			if val == nil {
				delete(m, key)
			} else {
				m[key] = val
			}
		}
		return m
	}
	ec := jwkOf(t, &k.p256.PublicKey, "ec")
	ed := jwkOf(t, k.ed.Public(), "ed")
	skipped := []struct {
		name string
		jwk  map[string]any
	}{
		{"use enc", mod(good, map[string]any{"use": "enc"})},
		{"key_ops encrypt", mod(good, map[string]any{"key_ops": []string{"encrypt"}})},
		{"oct", map[string]any{"kty": "oct", "k": b64url(testSecret)}},
		{"unknown kty", map[string]any{"kty": "XYZ"}},
		{"rsa bad n", mod(good, map[string]any{"n": "!!"})},
		{"rsa no n", mod(good, map[string]any{"n": nil})},
		{"rsa long e", mod(good, map[string]any{"e": b64url([]byte{1, 0, 0, 0, 1})})},
		{"rsa even e", mod(good, map[string]any{"e": b64url([]byte{2})})},
		{"rsa weak", jwkOf(t, &weak.PublicKey, "weak")},
		{"rsa alg HS256", mod(good, map[string]any{"alg": "HS256"})},
		{"rsa alg none", mod(good, map[string]any{"alg": "none"})},
		{"ec bad curve", mod(ec, map[string]any{"crv": "secp256k1"})},
		{"ec short x", mod(ec, map[string]any{"x": b64url([]byte{1, 2, 3})})},
		{"ec off curve", mod(ec, map[string]any{"y": ec["x"]})},
		{"ec alg ES384", mod(ec, map[string]any{"alg": "ES384"})},
		{"okp X25519", mod(ed, map[string]any{"crv": "X25519"})},
		{"okp short", mod(ed, map[string]any{"x": b64url([]byte{1})})},
		{"not an object", nil},
	}
	for _, s := range skipped {
		t.Run(s.name, func(t *testing.T) {
			var doc []byte
			if s.jwk == nil {
				doc = []byte(`{"keys":["nope",` + mustJSON(t, good) + `]}`)
			} else {
				doc = jwksOf(t, s.jwk, good)
			}
			keys, skippedErrs, err := parseJWKS(doc, "test")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0].kid != "good" || len(skippedErrs) != 1 {
				t.Fatalf("keys=%d skipped=%v, want only the good key", len(keys), skippedErrs)
			}
			// Alone, the bad key leaves nothing usable.
			if s.jwk != nil {
				if _, _, err := parseJWKS(jwksOf(t, s.jwk), "test"); err == nil {
					t.Fatal("a set of only the bad key parsed")
				}
			}
		})
	}
	// Accepted variants.
	for name, j := range map[string]map[string]any{
		"padded base64":   mod(good, map[string]any{"n": good["n"].(string) + "=", "e": "AQAB"}),
		"pinned alg":      mod(good, map[string]any{"alg": "PS256"}),
		"no use":          mod(good, map[string]any{"use": nil}),
		"key_ops verify":  mod(good, map[string]any{"key_ops": []string{"verify"}}),
		"private members": mod(ed, map[string]any{"d": "ignored"}),
	} {
		ks, _, err := parseJWKS(jwksOf(t, j), "test")
		if err != nil || len(ks) != 1 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if ks, _, _ := parseJWKS(jwksOf(t, mod(good, map[string]any{"alg": "PS256"})), "test"); len(ks) == 1 && (ks[0].accepts("RS256") || !ks[0].accepts("PS256")) {
		t.Error("alg pin not honoured")
	}
	// Only the first maxJWKSKeys usable keys of a set are taken.
	many := make([]map[string]any, maxJWKSKeys+5)
	for i := range many {
		many[i] = mod(good, map[string]any{"kid": fmt.Sprint("k", i)})
	}
	ks, skippedErrs, err := parseJWKS(jwksOf(t, many...), "test")
	if err != nil || len(ks) != maxJWKSKeys || len(skippedErrs) != 1 || ks[maxJWKSKeys-1].kid != fmt.Sprint("k", maxJWKSKeys-1) {
		t.Errorf("oversized set: %d keys, skipped %v, err %v", len(ks), skippedErrs, err)
	}
	for _, doc := range []string{"", "[]", `{"keys":{}}`, `{"other":1}`, "null"} {
		if _, _, err := parseJWKS([]byte(doc), "test"); err == nil {
			t.Errorf("parseJWKS(%q) succeeded", doc)
		}
	}
}

func TestJWKSHTTPErrors(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	srv.status.Store(http.StatusNotFound)
	// An identity provider that does not answer fails no config: the
	// error log says why every token is refused.
	errCore, errLogs := observer.New(zapcore.ErrorLevel)
	down, err := NewVerifier(JWTConfig{JWKS: []string{srv.URL}, Logger: zap.New(errCore)})
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	if l := errLogs.FilterMessageSnippet("every token is refused").All(); len(l) != 1 ||
		!strings.Contains(l[0].ContextMap()["error"].(string), "404") || !strings.Contains(l[0].ContextMap()["error"].(string), srv.URL) {
		t.Fatalf("logs %v, want the status and the URL", errLogs.All())
	}
	// A plain-http JWKS is allowed but warned about.
	srv.status.Store(0)
	core, logs := observer.New(zapcore.WarnLevel)
	v := newTestVerifier(t, JWTConfig{JWKS: []string{srv.URL}, Logger: zap.New(core)})
	if logs.FilterMessageSnippet("plain http").Len() != 1 {
		t.Errorf("no plain-http warning: %v", logs.All())
	}
	// Close aborts a refresh in flight through the context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Refresh(ctx); err == nil {
		t.Error("Refresh with a cancelled context succeeded")
	}
}

func TestUnusableStaticKeyWarns(t *testing.T) {
	k := keys(t)
	core, logs := observer.New(zapcore.WarnLevel)
	newTestVerifier(t, JWTConfig{
		Secrets:       [][]byte{testSecret},
		PublicKeysPEM: [][]byte{pemOf(t, &k.rsa.PublicKey, "")},
		Algorithms:    []string{"HS256"},
		Logger:        zap.New(core),
	})
	if logs.FilterMessageSnippet("never verify").Len() != 1 {
		t.Errorf("want a warning for the unused RSA key, got %v", logs.All())
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJWKSLastGoodAcrossConfigs: a verifier built while its identity
// provider is down (a reload during an outage) starts with the keys an
// earlier verifier of the process fetched from the same URL; one with no
// such keys and no other source starts too, refuses every token, and takes
// the keys once the provider answers.
func TestJWKSLastGoodAcrossConfigs(t *testing.T) {
	k := keys(t)
	srv := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "a"})
	first := newTestVerifier(t, JWTConfig{JWKS: []string{srv.URL}})
	if _, err := first.Verify(tok); err != nil {
		t.Fatal(err)
	}
	srv.status.Store(http.StatusServiceUnavailable)
	core, logs := observer.New(zapcore.WarnLevel)
	second := newTestVerifier(t, JWTConfig{JWKS: []string{srv.URL}, Logger: zap.New(core)})
	if _, err := second.Verify(tok); err != nil {
		t.Fatalf("the reloaded config refuses a token the keys fetched before verify: %v", err)
	}
	if logs.FilterMessageSnippet("fetched from it before").Len() != 1 {
		t.Fatalf("logs %v", logs.All())
	}

	other := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))
	other.status.Store(http.StatusServiceUnavailable)
	cold := newTestVerifier(t, JWTConfig{JWKS: []string{other.URL}, MinRefetchInterval: 10 * time.Millisecond, RefreshInterval: time.Hour})
	if _, err := cold.Verify(tok); err == nil {
		t.Fatal("verified with no key")
	}
	other.status.Store(0)
	waitFor(t, "background retry", func() bool { return cold.keys.Load().count == 1 })
	if _, err := cold.Verify(tok); err != nil {
		t.Fatal(err)
	}
}
