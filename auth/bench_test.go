package auth

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary strings to a verifier holding every kind of key.
// It must never panic, every failure must wrap ErrInvalid, and — because
// decoding is strict and every byte of header and claims is signed — the only
// tokens that can verify are the valid seeds themselves, byte for byte.
func FuzzVerify(f *testing.F) {
	k := keys(f)
	jwksFile := writeFile(f, "jwks.json", jwksOf(f, jwkOf(f, &k.p256.PublicKey, "ec"), jwkOf(f, k.ed.Public(), "ed")))
	v, err := NewVerifier(JWTConfig{
		Secrets:       [][]byte{testSecret},
		PublicKeysPEM: [][]byte{pemOf(f, &k.rsa.PublicKey, "rsa")},
		JWKS:          []string{jwksFile},
		Now:           fixedNow,
		PlanClaim:     "plan",
		LimitClaim:    "limit",
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)
	c := claims(map[string]any{"plan": "pro", "limit": "100"})
	valid := []string{
		sign(f, jwt.SigningMethodHS256, testSecret, c, nil),
		sign(f, jwt.SigningMethodRS256, k.rsa, c, map[string]any{"kid": "rsa"}),
		sign(f, jwt.SigningMethodES256, k.p256, c, map[string]any{"kid": "ec"}),
		sign(f, jwt.SigningMethodEdDSA, k.ed, c, nil),
	}
	for _, s := range valid {
		f.Add(s)
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(tok)
		if err != nil {
			if id != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify(%q) = %v, %v", tok, id, err)
			}
			return
		}
		if !slices.Contains(valid, tok) {
			t.Fatalf("a token that was never signed verified: %q", tok)
		}
		if id.User != "alice" || id.Plan != "pro" || id.Limit != 100 || !id.HasLimit {
			t.Fatalf("identity = %+v", id)
		}
	})
}

func benchVerify(b *testing.B, cfg JWTConfig, method jwt.SigningMethod, key any) {
	cfg.Now = fixedNow
	v, err := NewVerifier(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	tok := sign(b, method, key, claims(map[string]any{"iss": "https://idp.example", "aud": "vllm"}), nil)
	if _, err := v.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.Run("first", func(b *testing.B) { // the signature and claims checked
		b.ReportAllocs()
		for b.Loop() {
			v.cache.entries = nil
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("again", func(b *testing.B) { // the same token, from the cache
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchConfig checks issuer and audience, as a production config would.
func benchConfig() JWTConfig {
	return JWTConfig{Issuers: []string{"https://idp.example"}, Audiences: []string{"vllm"}}
}

func BenchmarkVerifyHS256(b *testing.B) {
	cfg := benchConfig()
	cfg.Secrets = [][]byte{testSecret}
	benchVerify(b, cfg, jwt.SigningMethodHS256, testSecret)
}

func BenchmarkVerifyRS256(b *testing.B) {
	k := keys(b)
	cfg := benchConfig()
	cfg.PublicKeysPEM = [][]byte{pemOf(b, &k.rsa.PublicKey, "")}
	benchVerify(b, cfg, jwt.SigningMethodRS256, k.rsa)
}

func BenchmarkVerifyES256(b *testing.B) {
	k := keys(b)
	cfg := benchConfig()
	cfg.PublicKeysPEM = [][]byte{pemOf(b, &k.p256.PublicKey, "")}
	benchVerify(b, cfg, jwt.SigningMethodES256, k.p256)
}

func BenchmarkVerifyEdDSA(b *testing.B) {
	k := keys(b)
	cfg := benchConfig()
	cfg.PublicKeysPEM = [][]byte{pemOf(b, k.ed.Public(), "")}
	benchVerify(b, cfg, jwt.SigningMethodEdDSA, k.ed)
}

func BenchmarkCredential(b *testing.B) {
	h := http.Header{"Authorization": {"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Credential(h); err != nil {
			b.Fatal(err)
		}
	}
}
