package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the fixed clock every verifier in these tests uses.
var testNow = time.Unix(1_800_000_000, 0)

func fixedNow() time.Time { return testNow }

// testSecret is a valid 40-byte HMAC secret.
var testSecret = []byte("0123456789abcdef0123456789abcdef-secret")

// testKeys holds asymmetric keys generated once per test binary: RSA key
// generation is slow enough to matter if every test did it.
type testKeySet struct {
	rsa, rsa2        *rsa.PrivateKey
	p256, p384, p521 *ecdsa.PrivateKey
	p256b            *ecdsa.PrivateKey
	ed, ed2          ed25519.PrivateKey
	attackerRSA      *rsa.PrivateKey
	attackerEC       *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	tk       testKeySet
)

func keys(tb testing.TB) *testKeySet {
	tb.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		tk.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		tk.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		tk.attackerRSA, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		tk.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.p256b, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.attackerEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		tk.p521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		_, tk.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		_, tk.ed2, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
	return &tk
}

// pemOf encodes a public key as a PKIX PEM block, with an optional kid header.
func pemOf(tb testing.TB, pub crypto.PublicKey, kid string) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	b := &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	if kid != "" {
		b.Headers = map[string]string{"kid": kid}
	}
	return pem.EncodeToMemory(b)
}

// writeFile writes data to a file in a fresh temp dir and returns its path.
func writeFile(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// claims returns valid claims for testNow, with extra merged in (a nil value
// in extra deletes the claim).
func claims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "alice",
		"exp": testNow.Add(time.Hour).Unix(),
		"iat": testNow.Add(-time.Minute).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// sign signs claims with method and key, adding header fields.
func sign(tb testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims, header map[string]any) string {
	tb.Helper()
	t := jwt.NewWithClaims(method, c)
	for k, v := range header {
		t.Header[k] = v
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// b64url encodes without padding, as JWTs do.
func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf renders a public key as a JWK map.
func jwkOf(tb testing.TB, pub crypto.PublicKey, kid string) map[string]any {
	tb.Helper()
	m := map[string]any{"kid": kid, "use": "sig"}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64url(p.N.Bytes())
		m["e"] = b64url(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, err := p.Bytes()
		if err != nil {
			tb.Fatal(err)
		}
		size := (len(raw) - 1) / 2
		m["kty"] = "EC"
		m["crv"] = p.Curve.Params().Name
		m["x"] = b64url(raw[1 : 1+size])
		m["y"] = b64url(raw[1+size:])
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64url(p)
	default:
		tb.Fatalf("jwkOf: unsupported %T", pub)
	}
	return m
}

// jwksOf builds a JWK Set document from JWKs.
func jwksOf(tb testing.TB, jwks ...map[string]any) []byte {
	tb.Helper()
	if jwks == nil {
		jwks = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// idp is a fake identity provider serving a JWKS document that tests can
// change, break and count.
type idp struct {
	*httptest.Server
	doc    atomic.Pointer[[]byte]
	status atomic.Int32 // non-zero: answer with this status
	hits   atomic.Int64
}

func newIDP(tb testing.TB, doc []byte) *idp {
	tb.Helper()
	s := &idp{}
	s.set(doc)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if st := s.status.Load(); st != 0 {
			http.Error(w, "down", int(st))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.doc.Load())
	}))
	lastGood.Delete(s.URL) // a port an earlier test's IdP had must not bring its keys
	tb.Cleanup(s.Close)
	return s
}

func (s *idp) set(doc []byte) { s.doc.Store(&doc) }

// newTestVerifier builds a verifier with the fixed clock and closes it at the
// end of the test.
func newTestVerifier(tb testing.TB, cfg JWTConfig) *Verifier {
	tb.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	tb.Cleanup(v.Close)
	return v
}
