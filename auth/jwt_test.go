package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifyValid signs a token with every supported algorithm and checks it
// verifies against the matching configured key, and that the derived
// algorithm list is exactly the key's family.
func TestVerifyValid(t *testing.T) {
	k := keys(t)
	rsaPEM := func(t *testing.T) JWTConfig {
		return JWTConfig{PublicKeyFiles: []string{writeFile(t, "rsa.pem", pemOf(t, &k.rsa.PublicKey, ""))}}
	}
	ecPEM := func(priv *ecdsa.PrivateKey) func(t *testing.T) JWTConfig {
		return func(t *testing.T) JWTConfig {
			return JWTConfig{PublicKeyFiles: []string{writeFile(t, "ec.pem", pemOf(t, &priv.PublicKey, ""))}}
		}
	}
	hmac := func(*testing.T) JWTConfig { return JWTConfig{Secrets: [][]byte{testSecret}} }
	rsaAlgs := []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	tests := []struct {
		method   jwt.SigningMethod
		key      any
		cfg      func(*testing.T) JWTConfig
		wantAlgs []string
	}{
		{jwt.SigningMethodHS256, testSecret, hmac, []string{"HS256", "HS384", "HS512"}},
		{jwt.SigningMethodHS384, testSecret, hmac, []string{"HS256", "HS384", "HS512"}},
		{jwt.SigningMethodHS512, testSecret, hmac, []string{"HS256", "HS384", "HS512"}},
		{jwt.SigningMethodRS256, k.rsa, rsaPEM, rsaAlgs},
		{jwt.SigningMethodRS384, k.rsa, rsaPEM, rsaAlgs},
		{jwt.SigningMethodRS512, k.rsa, rsaPEM, rsaAlgs},
		{jwt.SigningMethodPS256, k.rsa, rsaPEM, rsaAlgs},
		{jwt.SigningMethodPS512, k.rsa, rsaPEM, rsaAlgs},
		{jwt.SigningMethodES256, k.p256, ecPEM(k.p256), []string{"ES256"}},
		{jwt.SigningMethodES384, k.p384, ecPEM(k.p384), []string{"ES384"}},
		{jwt.SigningMethodES512, k.p521, ecPEM(k.p521), []string{"ES512"}},
		{jwt.SigningMethodEdDSA, k.ed, func(t *testing.T) JWTConfig {
			return JWTConfig{PublicKeyFiles: []string{writeFile(t, "ed.pem", pemOf(t, k.ed.Public(), ""))}}
		}, []string{"EdDSA"}},
	}
	for _, tt := range tests {
		t.Run(tt.method.Alg(), func(t *testing.T) {
			v := newTestVerifier(t, tt.cfg(t))
			if got := v.Algorithms(); !slices.Equal(got, tt.wantAlgs) {
				t.Errorf("Algorithms() = %v, want %v", got, tt.wantAlgs)
			}
			tok := sign(t, tt.method, tt.key, claims(nil), nil)
			id, err := v.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.User != "alice" || !id.Expires.Equal(testNow.Add(time.Hour)) || id.HasLimit || id.Plan != "" {
				t.Errorf("identity = %+v", id)
			}
			// The same token signed by another key of the family fails.
			var other any
			switch tt.key.(type) {
			case []byte:
				other = []byte(strings.Repeat("x", 40))
			default:
				other = otherKeyLike(t, tt.key)
			}
			if _, err := v.Verify(sign(t, tt.method, other, claims(nil), nil)); !errors.Is(err, ErrInvalid) {
				t.Errorf("token signed by another key: err = %v, want ErrInvalid", err)
			}
		})
	}
}

// otherKeyLike returns a different private key of the same type and curve.
func otherKeyLike(t *testing.T, priv any) any {
	k := keys(t)
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		return k.rsa2
	case *ecdsa.PrivateKey:
		if p.Curve == elliptic.P256() {
			return k.p256b
		}
		o, err := ecdsa.GenerateKey(p.Curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return o
	default:
		return k.ed2
	}
}

func TestSeveralKeysAndKids(t *testing.T) {
	k := keys(t)
	// One file holding two keys, one named by a PEM kid header; a second file;
	// and an HMAC secret.
	two := append(pemOf(t, &k.rsa.PublicKey, "rsa-one"), pemOf(t, &k.p256.PublicKey, "")...)
	v := newTestVerifier(t, JWTConfig{
		Secrets:        [][]byte{testSecret},
		PublicKeyFiles: []string{writeFile(t, "two.pem", two)},
		PublicKeysPEM:  [][]byte{pemOf(t, &k.rsa2.PublicKey, "")},
	})
	want := []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256"}
	if got := v.Algorithms(); !slices.Equal(got, want) {
		t.Errorf("Algorithms() = %v, want %v", got, want)
	}
	tests := []struct {
		name   string
		tok    string
		wantOK bool
	}{
		{"rsa with its kid", sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), map[string]any{"kid": "rsa-one"}), true},
		{"rsa without kid", sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), nil), true},
		{"second rsa without kid", sign(t, jwt.SigningMethodRS256, k.rsa2, claims(nil), nil), true},
		{"second rsa with first kid", sign(t, jwt.SigningMethodRS256, k.rsa2, claims(nil), map[string]any{"kid": "rsa-one"}), false},
		{"ec without kid", sign(t, jwt.SigningMethodES256, k.p256, claims(nil), nil), true},
		// A key without a kid of its own verifies tokens whatever kid the
		// issuer gave them (identity providers put one on every token);
		// a kid that names another key is held to that key.
		{"ec with a kid no key has", sign(t, jwt.SigningMethodES256, k.p256, claims(nil), map[string]any{"kid": "ec"}), true},
		{"second rsa with a kid no key has", sign(t, jwt.SigningMethodRS256, k.rsa2, claims(nil), map[string]any{"kid": "idp-2024"}), true},
		{"hmac", sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), nil), true},
		{"hmac with a kid no key has", sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), map[string]any{"kid": "k1"}), true},
		{"hmac by another secret with a kid", sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef0123"), claims(nil), map[string]any{"kid": "k1"}), false},
		{"hmac naming the rsa kid", sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), map[string]any{"kid": "rsa-one"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(tt.tok)
			if (err == nil) != tt.wantOK {
				t.Fatalf("Verify err = %v, want ok=%v", err, tt.wantOK)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

func TestExplicitAlgorithms(t *testing.T) {
	k := keys(t)
	v := newTestVerifier(t, JWTConfig{
		PublicKeysPEM: [][]byte{pemOf(t, &k.rsa.PublicKey, "")},
		Algorithms:    []string{"rs256", " PS256", "RS256"},
	})
	if got := v.Algorithms(); !slices.Equal(got, []string{"RS256", "PS256"}) {
		t.Fatalf("Algorithms() = %v", got)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, claims(nil), nil)); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	_, err := v.Verify(sign(t, jwt.SigningMethodRS512, k.rsa, claims(nil), nil))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("RS512 not in list: err = %v", err)
	}
	// The returned slice is a copy.
	v.Algorithms()[0] = "HS256"
	if v.Algorithms()[0] != "RS256" {
		t.Fatal("Algorithms() exposes internal state")
	}
}

func TestConfigErrors(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	rsaPEM := pemOf(t, &k.rsa.PublicKey, "")
	privDER, err := x509.MarshalPKCS8PrivateKey(k.p256)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakPEM := pemOf(t, &weak.PublicKey, "")
	tests := []struct {
		name string
		cfg  JWTConfig
		want string // substring of the error
	}{
		{"no key source", JWTConfig{}, "no key source"},
		{"short secret", JWTConfig{Secrets: [][]byte{[]byte("short")}}, "must be at least 32 bytes"},
		{"31 byte secret", JWTConfig{Secrets: [][]byte{make([]byte, 31)}}, "must be at least 32 bytes"},
		{"empty secret", JWTConfig{Secrets: [][]byte{testSecret, nil}}, "secret #2"},
		{"missing key file", JWTConfig{PublicKeyFiles: []string{filepath.Join(dir, "nope.pem")}}, "cannot be read"},
		{"garbage key file", JWTConfig{PublicKeyFiles: []string{writeFile(t, "g.pem", []byte("hello"))}}, "no PEM-encoded public key"},
		{"bad PEM body", JWTConfig{PublicKeysPEM: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})}}, "cannot parse PUBLIC KEY"},
		{"private key", JWTConfig{PublicKeysPEM: [][]byte{privPEM}}, "configure the public key"},
		{"unsupported block", JWTConfig{PublicKeysPEM: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: []byte{1}})}}, "not supported"},
		{"weak rsa", JWTConfig{PublicKeysPEM: [][]byte{weakPEM}}, "1024 bits"},
		{"unknown algorithm", JWTConfig{Secrets: [][]byte{testSecret}, Algorithms: []string{"HS257"}}, "unknown algorithm"},
		{"none", JWTConfig{Secrets: [][]byte{testSecret}, Algorithms: []string{"HS256", "none"}}, `"none" is never accepted`},
		{"None", JWTConfig{Secrets: [][]byte{testSecret}, Algorithms: []string{"None"}}, `"none" is never accepted`},
		{"NONE", JWTConfig{Secrets: [][]byte{testSecret}, Algorithms: []string{"NONE"}}, `"none" is never accepted`},
		{"HS without secret", JWTConfig{PublicKeysPEM: [][]byte{rsaPEM}, Algorithms: []string{"RS256", "HS256"}}, "needs an HMAC secret"},
		{"HS without secret but jwks", JWTConfig{JWKS: []string{writeFile(t, "j.json", jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "a")))}, Algorithms: []string{"HS256"}}, "needs an HMAC secret"},
		{"ES256 with only rsa", JWTConfig{PublicKeysPEM: [][]byte{rsaPEM}, Algorithms: []string{"ES256"}}, "has no EC P-256 key"},
		{"negative leeway", JWTConfig{Secrets: [][]byte{testSecret}, Leeway: -time.Second}, "leeway"},
		{"negative size", JWTConfig{Secrets: [][]byte{testSecret}, MaxTokenSize: -1}, "max token size"},
		{"negative refresh", JWTConfig{Secrets: [][]byte{testSecret}, RefreshInterval: -1}, "refresh interval"},
		{"negative refetch", JWTConfig{Secrets: [][]byte{testSecret}, MinRefetchInterval: -1}, "refetch interval"},
		{"empty issuer", JWTConfig{Secrets: [][]byte{testSecret}, Issuers: []string{""}}, "empty issuer"},
		{"empty jwks", JWTConfig{JWKS: []string{" "}}, "empty jwks"},
		{"jwks bad scheme", JWTConfig{JWKS: []string{"ftp://idp/jwks"}}, "unsupported scheme"},
		{"jwks file missing", JWTConfig{Secrets: [][]byte{testSecret}, JWKS: []string{filepath.Join(dir, "none.json")}}, "no such file"},
		{"jwks file not json", JWTConfig{Secrets: [][]byte{testSecret}, JWKS: []string{writeFile(t, "bad.json", []byte("{"))}}, "not a JWK Set"},
		{"jwks file no keys", JWTConfig{Secrets: [][]byte{testSecret}, JWKS: []string{writeFile(t, "empty.json", jwksOf(t))}}, "no usable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.cfg)
			if err == nil {
				v.Close()
				t.Fatalf("NewVerifier succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestClaims(t *testing.T) {
	v := newTestVerifier(t, JWTConfig{
		Secrets:    [][]byte{testSecret},
		Issuers:    []string{"https://a.example", "https://b.example"},
		Audiences:  []string{"vllm", "other"},
		Leeway:     30 * time.Second,
		UserClaim:  "email",
		PlanClaim:  "plan",
		LimitClaim: "token_limit",
	})
	base := map[string]any{"iss": "https://a.example", "aud": "vllm", "email": "bob@example.com", "sub": nil}
	with := func(extra map[string]any) jwt.MapClaims {
		c := claims(base)
		for k, val := range extra {
			if val == nil {
				delete(c, k)
			} else {
				c[k] = val
			}
		}
		return c
	}
	tests := []struct {
		name      string
		extra     map[string]any
		wantErr   string
		wantPlan  string
		wantLimit int64
		wantHas   bool
	}{
		{name: "base"},
		{name: "second issuer", extra: map[string]any{"iss": "https://b.example"}},
		{name: "audience list", extra: map[string]any{"aud": []string{"x", "other"}}},
		{name: "plan", extra: map[string]any{"plan": "pro"}, wantPlan: "pro"},
		{name: "limit number", extra: map[string]any{"token_limit": 5000}, wantLimit: 5000, wantHas: true},
		{name: "limit zero", extra: map[string]any{"token_limit": 0}, wantLimit: 0, wantHas: true},
		{name: "limit string", extra: map[string]any{"token_limit": "123456"}, wantLimit: 123456, wantHas: true},
		{name: "limit null", extra: map[string]any{"token_limit": jsonNull{}}},
		{name: "plan and limit", extra: map[string]any{"plan": "free", "token_limit": 7.0}, wantPlan: "free", wantLimit: 7, wantHas: true},
		{name: "exp within leeway", extra: map[string]any{"exp": testNow.Add(-20 * time.Second).Unix()}},
		{name: "nbf within leeway", extra: map[string]any{"nbf": testNow.Add(20 * time.Second).Unix()}},
		{name: "iat within leeway", extra: map[string]any{"iat": testNow.Add(20 * time.Second).Unix()}},

		{name: "plan not string", extra: map[string]any{"plan": 3}, wantErr: `"plan" is not a string`},
		{name: "limit negative", extra: map[string]any{"token_limit": -1}, wantErr: "token_limit"},
		{name: "limit fraction", extra: map[string]any{"token_limit": 1.5}, wantErr: "token_limit"},
		{name: "limit huge", extra: map[string]any{"token_limit": 1e19}, wantErr: "token_limit"},
		{name: "limit bad string", extra: map[string]any{"token_limit": "12k"}, wantErr: "token_limit"},
		{name: "limit bool", extra: map[string]any{"token_limit": true}, wantErr: "token_limit"},
		{name: "wrong issuer", extra: map[string]any{"iss": "https://evil.example"}, wantErr: "issuer"},
		{name: "missing issuer", extra: map[string]any{"iss": nil}, wantErr: "issuer"},
		{name: "wrong audience", extra: map[string]any{"aud": "somebody"}, wantErr: "audience"},
		{name: "missing audience", extra: map[string]any{"aud": nil}, wantErr: "aud"},
		{name: "missing user", extra: map[string]any{"email": nil}, wantErr: `"email" is missing`},
		{name: "user claim uses email not sub", extra: map[string]any{"email": nil, "sub": "alice"}, wantErr: `"email" is missing`},
		{name: "empty user", extra: map[string]any{"email": ""}, wantErr: "empty"},
		{name: "numeric user", extra: map[string]any{"email": 42}, wantErr: "not a string"},
		{name: "user with newline", extra: map[string]any{"email": "a\nb"}, wantErr: "control"},
		{name: "expired beyond leeway", extra: map[string]any{"exp": testNow.Add(-31 * time.Second).Unix()}, wantErr: "expired"},
		{name: "nbf beyond leeway", extra: map[string]any{"nbf": testNow.Add(31 * time.Second).Unix()}, wantErr: "not valid yet"},
		{name: "iat beyond leeway", extra: map[string]any{"iat": testNow.Add(31 * time.Second).Unix()}, wantErr: "before issued"},
		{name: "no exp", extra: map[string]any{"exp": nil}, wantErr: "exp claim is required"},
		{name: "exp string", extra: map[string]any{"exp": "tomorrow"}, wantErr: "exp is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, with(tt.extra), nil))
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.User != "bob@example.com" || id.Plan != tt.wantPlan || id.Limit != tt.wantLimit || id.HasLimit != tt.wantHas {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
}

// jsonNull marshals as JSON null, to put an explicit null claim in a token.
type jsonNull struct{}

func (jsonNull) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// TestClaimsNotConfigured checks plan and limit claims are ignored, whatever
// their type, when not configured; and that the default user claim is sub.
func TestClaimsNotConfigured(t *testing.T) {
	v := newTestVerifier(t, JWTConfig{Secrets: [][]byte{testSecret}})
	id, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, claims(map[string]any{"plan": 3, "token_limit": "x", "iss": "any", "aud": "any"}), nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "alice" || id.Plan != "" || id.HasLimit {
		t.Fatalf("identity = %+v", id)
	}
}

func TestVerifyAllocs(t *testing.T) {
	v := newTestVerifier(t, JWTConfig{Secrets: [][]byte{testSecret}})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), nil)
	oversize := strings.Repeat("a", DefaultMaxTokenSize+1)
	if n := testing.AllocsPerRun(50, func() { _, _ = v.Verify(oversize) }); n != 0 {
		t.Errorf("refusing an oversize token allocates %v times", n)
	}
	// Measure jwt/v5 alone with the same parser options and key, to check
	// Verify adds only the Identity on top.
	p := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(fixedNow), jwt.WithStrictDecoding())
	var key any = testSecret
	kf := func(*jwt.Token) (any, error) { return key, nil }
	base := testing.AllocsPerRun(50, func() { _, _ = p.ParseWithClaims(tok, jwt.MapClaims{}, kf) })
	ours := testing.AllocsPerRun(50, func() { _, _ = v.Verify(tok) })
	if ours > base+1 { // the returned *Identity
		t.Errorf("Verify allocates %v times, jwt/v5 alone %v", ours, base)
	}
	t.Logf("allocs: jwt/v5 %v, Verify %v", base, ours)
}
