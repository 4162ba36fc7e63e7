package auth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// segment base64url-encodes v as JSON.
func segment(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64url(b)
}

// TestAttacks is the attack corpus: every token here must be refused, with
// an error wrapping ErrInvalid that does not echo the token.
func TestAttacks(t *testing.T) {
	k := keys(t)

	// An attacker's server: any request it receives means a verifier
	// followed a header it must ignore.
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		_, _ = w.Write(jwksOf(t, jwkOf(t, &k.attackerRSA.PublicKey, "legit")))
	}))
	defer attacker.Close()

	// The legitimate IdP, for the JWKS-backed verifier.
	legit := newIDP(t, jwksOf(t, jwkOf(t, &k.rsa.PublicKey, "legit")))

	rsaPEM := pemOf(t, &k.rsa.PublicKey, "")
	rsaDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	base := JWTConfig{
		Issuers:            []string{"https://idp.example"},
		Audiences:          []string{"vllm"},
		Leeway:             30 * time.Second,
		MinRefetchInterval: time.Hour, // one refetch at most during the test
	}
	pemOnly := base
	pemOnly.PublicKeyFiles = []string{writeFile(t, "rsa.pem", rsaPEM)}
	mixed := pemOnly
	mixed.Secrets = [][]byte{testSecret}
	viaJWKS := base
	viaJWKS.JWKS = []string{legit.URL}
	viaJWKS.Secrets = [][]byte{testSecret}
	verifiers := map[string]*Verifier{
		"pem":   newTestVerifier(t, pemOnly),
		"mixed": newTestVerifier(t, mixed),
		"jwks":  newTestVerifier(t, viaJWKS),
	}

	good := func(t *testing.T, extra map[string]any, hdr map[string]any) string {
		c := claims(map[string]any{"iss": "https://idp.example", "aud": "vllm"})
		for key, val := range extra {
			if val == nil {
				delete(c, key)
			} else {
				c[key] = val
			}
		}
		return sign(t, jwt.SigningMethodRS256, k.rsa, c, hdr)
	}
	// Positive control: the legitimate token verifies everywhere (the JWKS
	// verifier needs the kid its keys carry).
	for name, v := range verifiers {
		hdr := map[string]any(nil)
		if name == "jwks" {
			hdr = map[string]any{"kid": "legit"}
		}
		if _, err := v.Verify(good(t, nil, hdr)); err != nil {
			t.Fatalf("%s: legitimate token refused: %v", name, err)
		}
	}

	validClaims := claims(map[string]any{"iss": "https://idp.example", "aud": "vllm"})
	tok := good(t, nil, nil)
	parts := strings.Split(tok, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)/2] ^= 0x01
	flippedSig := parts[0] + "." + parts[1] + "." + b64url(sig)

	// A kid that names no key, however odd: the JWKS verifier, whose keys
	// all carry kids, refuses the token; the PEM key, which has none,
	// verifies it (the signature is the legitimate one).
	for _, kid := range []string{"nope", "../../../../etc/passwd", "' OR '1'='1'; --", "legit\x00"} {
		tok := good(t, nil, map[string]any{"kid": kid})
		for name, v := range verifiers {
			_, err := v.Verify(tok)
			if wantOK := name != "jwks"; (err == nil) != wantOK {
				t.Errorf("kid %q, %s verifier: %v, want ok=%v", kid, name, err, wantOK)
			}
		}
	}

	type attack struct {
		name string
		tok  func(t *testing.T) string
	}
	attacks := []attack{
		{"tampered payload", func(t *testing.T) string {
			c := claims(map[string]any{"iss": "https://idp.example", "aud": "vllm", "sub": "admin"})
			return parts[0] + "." + segment(t, c) + "." + parts[2]
		}},
		{"tampered header extra field", func(t *testing.T) string {
			return segment(t, map[string]any{"alg": "RS256", "typ": "JWT", "x": 1}) + "." + parts[1] + "." + parts[2]
		}},
		{"tampered header alg PS256", func(t *testing.T) string {
			return segment(t, map[string]any{"alg": "PS256", "typ": "JWT"}) + "." + parts[1] + "." + parts[2]
		}},
		{"tampered header alg case", func(t *testing.T) string {
			return segment(t, map[string]any{"alg": "rs256", "typ": "JWT"}) + "." + parts[1] + "." + parts[2]
		}},
		{"tampered signature", func(*testing.T) string { return flippedSig }},
		{"signature padded", func(*testing.T) string { return tok + "=" }},
		{"signature stripped", func(*testing.T) string { return parts[0] + "." + parts[1] + "." }},
		{"HS256 with the RSA PEM as secret", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, rsaPEM, validClaims, nil)
		}},
		{"HS256 with the RSA DER as secret", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, rsaDER, validClaims, nil)
		}},
		{"HS256 with the RSA PEM as secret, legit kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, rsaPEM, validClaims, map[string]any{"kid": "legit"})
		}},
		{"attacker key", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, k.attackerRSA, validClaims, nil)
		}},
		{"attacker key, legit kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, k.attackerRSA, validClaims, map[string]any{"kid": "legit"})
		}},
		{"expired", func(t *testing.T) string {
			return good(t, map[string]any{"exp": testNow.Add(-time.Hour).Unix()}, nil)
		}},
		{"no exp", func(t *testing.T) string { return good(t, map[string]any{"exp": nil}, nil) }},
		{"exp zero", func(t *testing.T) string { return good(t, map[string]any{"exp": 0}, nil) }},
		{"not yet valid", func(t *testing.T) string {
			return good(t, map[string]any{"nbf": testNow.Add(time.Hour).Unix()}, nil)
		}},
		{"iat in the future beyond leeway", func(t *testing.T) string {
			return good(t, map[string]any{"iat": testNow.Add(5 * time.Minute).Unix()}, nil)
		}},
		{"wrong issuer", func(t *testing.T) string { return good(t, map[string]any{"iss": "https://evil.example"}, nil) }},
		{"issuer not a string", func(t *testing.T) string { return good(t, map[string]any{"iss": 7}, nil) }},
		{"wrong audience", func(t *testing.T) string { return good(t, map[string]any{"aud": "billing"}, nil) }},
		{"audience not a string", func(t *testing.T) string { return good(t, map[string]any{"aud": []any{1}}, nil) }},
		{"missing sub", func(t *testing.T) string { return good(t, map[string]any{"sub": nil}, nil) }},
		{"empty sub", func(t *testing.T) string { return good(t, map[string]any{"sub": ""}, nil) }},
		{"numeric sub", func(t *testing.T) string { return good(t, map[string]any{"sub": 1234}, nil) }},
		{"object sub", func(t *testing.T) string { return good(t, map[string]any{"sub": map[string]any{"id": "a"}}, nil) }},
		{"attacker key, odd kid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, k.attackerRSA, validClaims, map[string]any{"kid": "../../../../etc/passwd"})
		}},
		{"kid not a string", func(t *testing.T) string { return good(t, nil, map[string]any{"kid": 1}) }},
		{"kid empty", func(t *testing.T) string { return good(t, nil, map[string]any{"kid": ""}) }},
		{"jku header", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, k.attackerRSA, validClaims, map[string]any{"jku": attacker.URL + "/jwks", "kid": "legit"})
		}},
		{"x5u header", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, k.attackerRSA, validClaims, map[string]any{"x5u": attacker.URL + "/cert"})
		}},
		{"embedded jwk header", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, k.attackerRSA, validClaims, map[string]any{"jwk": jwkOf(t, &k.attackerRSA.PublicKey, "legit")})
		}},
		{"crit header", func(t *testing.T) string { return good(t, nil, map[string]any{"crit": []string{"exp"}, "exp": 1}) }},
		{"1 MB token", func(t *testing.T) string {
			return parts[0] + "." + strings.Repeat("A", 1<<20) + "." + parts[2]
		}},
		{"garbage", func(*testing.T) string { return "this is not a token" }},
		{"dots only", func(*testing.T) string { return ".." }},
		{"empty", func(*testing.T) string { return "" }},
		{"two parts", func(*testing.T) string { return parts[0] + "." + parts[1] }},
		{"four parts", func(*testing.T) string { return tok + "." + parts[2] }},
		{"bad base64 header", func(*testing.T) string { return "%%%." + parts[1] + "." + parts[2] }},
		{"header not JSON", func(*testing.T) string { return b64url([]byte("nope")) + "." + parts[1] + "." + parts[2] }},
		{"claims not an object", func(*testing.T) string { return parts[0] + "." + b64url([]byte("[1]")) + "." + parts[2] }},
		{"unknown alg", func(t *testing.T) string {
			return segment(t, map[string]any{"alg": "RS1"}) + "." + parts[1] + "." + parts[2]
		}},
		{"no alg", func(t *testing.T) string {
			return segment(t, map[string]any{"typ": "JWT"}) + "." + parts[1] + "." + parts[2]
		}},
	}
	for _, variant := range []string{"none", "None", "NONE", "nOnE", "NoNe", "nonE"} {
		h := segment(t, map[string]any{"alg": variant, "typ": "JWT"})
		p := segment(t, validClaims)
		attacks = append(attacks,
			attack{"alg " + variant + " unsigned", func(*testing.T) string { return h + "." + p + "." }},
			attack{"alg " + variant + " with signature", func(*testing.T) string { return h + "." + p + "." + parts[2] }},
		)
	}
	// none signed the way jwt/v5 would sign it, if a verifier ever passed
	// its magic constant.
	attacks = append(attacks, attack{"alg none via jwt/v5", func(t *testing.T) string {
		return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims, nil)
	}})

	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			bad := a.tok(t)
			for name, v := range verifiers {
				id, err := v.Verify(bad)
				if err == nil || id != nil {
					t.Fatalf("%s: accepted (identity %+v)", name, id)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("%s: error does not wrap ErrInvalid: %v", name, err)
				}
				for _, seg := range strings.Split(bad, ".") {
					if len(seg) >= 16 && strings.Contains(err.Error(), seg) {
						t.Fatalf("%s: error %q echoes the token", name, err)
					}
				}
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Fatalf("the attacker's server received %d requests", n)
	}
	// The unknown kids led to at most one refetch of the legitimate JWKS
	// (plus the fetch at construction).
	if n := legit.hits.Load(); n > 2 {
		t.Fatalf("legitimate IdP hit %d times, want at most 2", n)
	}
}

// TestOversizeRefusedBeforeParsing checks the size limit applies before any
// decoding: a token one byte over the limit fails with the size error even
// though it is otherwise well formed, and one at the limit reaches the parser.
func TestOversizeRefusedBeforeParsing(t *testing.T) {
	v := newTestVerifier(t, JWTConfig{Secrets: [][]byte{testSecret}, MaxTokenSize: 300})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims(nil), nil)
	if len(tok) >= 300 {
		t.Fatalf("token already %d bytes", len(tok))
	}
	// Pad the signature to 301 bytes: the size check must win over every
	// other problem.
	tok += strings.Repeat("A", 301-len(tok))
	_, err := v.Verify(tok)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than 300 bytes") {
		t.Fatalf("err = %v, want the size error", err)
	}
	if errors.Is(err, jwt.ErrTokenMalformed) || errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("oversize token reached the parser: %v", err)
	}
	_, err = v.Verify(tok[:300])
	if err == nil || strings.Contains(err.Error(), "larger than") {
		t.Fatalf("token at the limit: err = %v, want a parse error", err)
	}
}

// TestKeyConfusionIndex checks the key index itself: a key is never listed
// for an algorithm outside its family, even when that algorithm is accepted.
func TestKeyConfusionIndex(t *testing.T) {
	k := keys(t)
	ks := newKeySet([]*key{
		{kind: kindRSA, pub: &k.rsa.PublicKey, kid: "r"},
		{kind: kindP384, pub: &k.p384.PublicKey, kid: "e"},
		{kind: kindEd25519, pub: k.ed.Public(), kid: "d"},
		{kind: kindRSA, pub: &k.rsa2.PublicKey, kid: "pinned", alg: "PS256"},
	}, allAlgorithms)
	for _, alg := range []string{"HS256", "HS384", "HS512", "ES256", "ES512"} {
		if _, ok := ks.byAlg[alg]; ok {
			t.Errorf("a key is indexed for %s", alg)
		}
	}
	for _, tt := range []struct {
		kid, alg string
		want     bool
	}{
		{"r", "RS256", true}, {"r", "PS512", true}, {"r", "HS256", false}, {"r", "ES256", false},
		{"e", "ES384", true}, {"e", "ES256", false}, {"e", "ES512", false},
		{"d", "EdDSA", true}, {"d", "ES256", false},
		{"pinned", "PS256", true}, {"pinned", "RS256", false},
	} {
		if _, ok := ks.byKid[kidAlg{tt.kid, tt.alg}]; ok != tt.want {
			t.Errorf("key %s for %s: indexed=%v, want %v", tt.kid, tt.alg, ok, tt.want)
		}
	}
	// Two RSA keys without restriction are offered together for RS256.
	if _, ok := ks.byAlg["RS256"].(jwt.VerificationKeySet); ok {
		t.Error("pinned PS256 key offered for RS256")
	}
	if set, ok := ks.byAlg["PS256"].(jwt.VerificationKeySet); !ok || len(set.Keys) != 2 {
		t.Errorf("PS256 candidates = %#v, want a set of 2", ks.byAlg["PS256"])
	}
}
