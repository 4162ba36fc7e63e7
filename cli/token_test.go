package cli

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/llmgate/llmgate/auth"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

// runCLI runs the llm-gate command tree in-process with args.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "llm-gate", SilenceUsage: true, SilenceErrors: true}
	Build(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func parseToken(t *testing.T, tok string, key any, alg string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{alg}))
	if err != nil {
		t.Fatalf("token %s does not verify with %s: %v", tok, alg, err)
	}
	if parsed.Method.Alg() != alg {
		t.Fatalf("alg %s, want %s", parsed.Method.Alg(), alg)
	}
	return claims
}

func TestTokenHS256(t *testing.T) {
	out, err := runCLI(t, "token", "--secret", string(testSecret), "--user", "alice", "--plan", "pro",
		"--limit", "5000", "--issuer", "https://idp", "--audience", "vllm", "--kid", "k1", "--claim", "team=ml", "--claim", "level=3")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("stdout must be the token alone on one line: %q", out)
	}
	tok := strings.TrimSpace(out)
	claims := parseToken(t, tok, testSecret, "HS256")
	if claims["sub"] != "alice" || claims["plan"] != "pro" || claims["token_limit"] != 5000.0 || claims["iss"] != "https://idp" ||
		claims["aud"] != "vllm" || claims["team"] != "ml" || claims["level"] != 3.0 {
		t.Errorf("claims %v", claims)
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if exp == nil || iat == nil || exp.Sub(iat.Time) != time.Hour || time.Since(iat.Time) > time.Minute {
		t.Errorf("exp %v iat %v", exp, iat)
	}
	hdr, _, _ := strings.Cut(tok, ".")
	if p, _ := jwt.NewParser().DecodeSegment(hdr); !bytes.Contains(p, []byte(`"kid":"k1"`)) {
		t.Errorf("header %s", p)
	}

	// The gate's own verifier accepts it (minted without a kid: the gate
	// refuses a kid none of its keys carries, and secrets carry none).
	out, err = runCLI(t, "token", "--secret", string(testSecret), "--user", "alice", "--plan", "pro",
		"--limit", "5000", "--issuer", "https://idp", "--audience", "vllm")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(out)
	v, err := auth.NewVerifier(auth.JWTConfig{Secrets: [][]byte{testSecret}, Issuers: []string{"https://idp"},
		Audiences: []string{"vllm"}, PlanClaim: "plan", LimitClaim: "token_limit"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	id, err := v.Verify(tok)
	if err != nil || id.User != "alice" || id.Plan != "pro" || !id.HasLimit || id.Limit != 5000 {
		t.Errorf("gate verifier: %+v, %v", id, err)
	}
}

func TestTokenSecretEnvAndAlgs(t *testing.T) {
	t.Setenv("TEST_LLM_GATE_SECRET", string(testSecret)+"-longer")
	for _, alg := range []string{"HS256", "HS384", "HS512", "hs512"} {
		out, err := runCLI(t, "token", "--secret-env", "TEST_LLM_GATE_SECRET", "--user", "bob", "--alg", alg)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		parseToken(t, strings.TrimSpace(out), []byte(string(testSecret)+"-longer"), strings.ToUpper(alg))
	}
}

func TestTokenTTL(t *testing.T) {
	out, err := runCLI(t, "token", "--secret", string(testSecret), "--user", "u", "--ttl", "0")
	if err != nil {
		t.Fatal(err)
	}
	claims := parseToken(t, strings.TrimSpace(out), testSecret, "HS256")
	if _, ok := claims["exp"]; ok {
		t.Errorf("--ttl 0 set exp: %v", claims)
	}
	out, err = runCLI(t, "token", "--secret", string(testSecret), "--user", "u", "--ttl", "2d")
	if err != nil {
		t.Fatal(err)
	}
	claims = parseToken(t, strings.TrimSpace(out), testSecret, "HS256")
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if exp.Sub(iat.Time) != 48*time.Hour {
		t.Errorf("2d ttl: %v", exp.Sub(iat.Time))
	}
	// A negative ttl mints an expired token, which verification refuses.
	out, err = runCLI(t, "token", "--secret", string(testSecret), "--user", "u", "--ttl=-1h")
	if err != nil {
		t.Fatal(err)
	}
	_, err = jwt.Parse(strings.TrimSpace(out), func(*jwt.Token) (any, error) { return testSecret, nil })
	if !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("expired token: %v", err)
	}
}

// writeKey writes key as PEM in the given encoding and returns the path.
func writeKey(t *testing.T, key crypto.Signer, blockType string) string {
	t.Helper()
	var der []byte
	var err error
	switch blockType {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	}
	if err != nil {
		t.Fatal(err)
	}
	// A leading block that is not a key is skipped, as openssl writes EC
	// PARAMETERS before the key.
	data := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})...)
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTokenKeyFiles(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name      string
		key       crypto.Signer
		block     string
		alg, want string
	}{
		{"ES256 PKCS8", p256, "PRIVATE KEY", "", "ES256"},
		{"ES256 SEC1", p256, "EC PRIVATE KEY", "", "ES256"},
		{"ES384", p384, "EC PRIVATE KEY", "", "ES384"},
		{"ES512", p521, "PRIVATE KEY", "ES512", "ES512"},
		{"RS256 PKCS1", rsaKey, "RSA PRIVATE KEY", "", "RS256"},
		{"PS384 PKCS8", rsaKey, "PRIVATE KEY", "PS384", "PS384"},
		{"EdDSA", edKey, "PRIVATE KEY", "", "EdDSA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeKey(t, c.key, c.block)
			args := []string{"token", "--key-file", path, "--user", "carol", "--kid", "key-1"}
			if c.alg != "" {
				args = append(args, "--alg", c.alg)
			}
			out, err := runCLI(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			tok := strings.TrimSpace(out)
			claims := parseToken(t, tok, c.key.Public(), c.want)
			if claims["sub"] != "carol" {
				t.Errorf("claims %v", claims)
			}
			// The gate's verifier accepts it with the public key.
			der, err := x509.MarshalPKIXPublicKey(c.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			v, err := auth.NewVerifier(auth.JWTConfig{PublicKeysPEM: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"kid": "key-1"}, Bytes: der})}})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if id, err := v.Verify(tok); err != nil || id.User != "carol" {
				t.Errorf("gate verifier: %+v, %v", id, err)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecPath := writeKey(t, p256, "PRIVATE KEY")
	p224Path := writeKey(t, p224, "EC PRIVATE KEY")
	smallPath := writeKey(t, small, "RSA PRIVATE KEY")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not a pem"), 0o600)
	badBlock := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(badBlock, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), 0o600)
	secret := string(testSecret)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"short secret", []string{"--secret", "short", "--user", "u"}, "at least 32"},
		{"no user", []string{"--secret", secret}, "--user"},
		{"no key", []string{"--user", "u"}, "signing key is required"},
		{"two keys", []string{"--secret", secret, "--key-file", ecPath, "--user", "u"}, "none of the others"},
		{"unset env", []string{"--secret-env", "TEST_LLM_GATE_UNSET_VAR", "--user", "u"}, "not set"},
		{"hmac with RS256", []string{"--secret", secret, "--alg", "RS256", "--user", "u"}, "does not fit"},
		{"EC with ES384", []string{"--key-file", ecPath, "--alg", "ES384", "--user", "u"}, "does not fit"},
		{"EC with none", []string{"--key-file", ecPath, "--alg", "none", "--user", "u"}, "does not fit"},
		{"small RSA", []string{"--key-file", smallPath, "--user", "u"}, "1024 bits"},
		{"P-224", []string{"--key-file", p224Path, "--user", "u"}, "unsupported EC curve"},
		{"missing file", []string{"--key-file", "/nonexistent/key.pem", "--user", "u"}, "no such file"},
		{"not PEM", []string{"--key-file", garbage, "--user", "u"}, "no PRIVATE KEY"},
		{"bad key block", []string{"--key-file", badBlock, "--user", "u"}, "parsing the PRIVATE KEY block"},
		{"bad ttl", []string{"--secret", secret, "--user", "u", "--ttl", "soon"}, "--ttl"},
		{"bad claim", []string{"--secret", secret, "--user", "u", "--claim", "novalue"}, "name=value"},
		{"extra arg", []string{"--secret", secret, "--user", "u", "extra"}, "unknown command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runCLI(t, append([]string{"token"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
			if out != "" {
				t.Errorf("printed %q on failure", out)
			}
		})
	}
	// MintToken refuses a key type it does not know.
	if _, err := MintToken(TokenOptions{User: "u", Key: fakeSigner{}}, time.Now()); err == nil || !strings.Contains(err.Error(), "unsupported key type") {
		t.Errorf("fake signer: %v", err)
	}
}

type fakeSigner struct{ crypto.Signer }

func TestMintTokenAudiences(t *testing.T) {
	tok, err := MintToken(TokenOptions{User: "u", Secret: testSecret, Audience: []string{"a", "b"}, Claims: map[string]any{"sub": "override"}}, time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	_, _, err = jwt.NewParser().ParseUnverified(tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	aud, _ := claims.GetAudience()
	if len(aud) != 2 || aud[0] != "a" || aud[1] != "b" || claims["sub"] != "override" || claims["iat"] != 1_700_000_000.0 || claims["exp"] != nil {
		t.Errorf("claims %v", claims)
	}
}

func BenchmarkMintTokenHS256(b *testing.B) {
	b.ReportAllocs()
	o := TokenOptions{User: "alice", Secret: testSecret, TTL: time.Hour, Plan: "pro"}
	now := time.Now()
	for b.Loop() {
		if _, err := MintToken(o, now); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAsAPIError(t *testing.T) {
	cases := []struct {
		in     string
		status int
		msg    string
	}{
		{"caddy responded with error: HTTP 404: {\"error\":\"user \\\"x\\\": not found\"}\n", 404, `user "x": not found`},
		{"caddy responded with error: HTTP 502: upstream gone\n", 502, "upstream gone"},
		{"caddy responded with error: HTTP 400: ", 400, ""},
	}
	for _, c := range cases {
		var e *Error
		if err := asAPIError(errors.New(c.in)); !errors.As(err, &e) || e.Status != c.status || e.Message != c.msg {
			t.Errorf("%q → %v", c.in, err)
		}
	}
	for _, in := range []string{"performing request: connection refused", "caddy responded with error: HTTP abc: x"} {
		orig := errors.New(in)
		if err := asAPIError(orig); err != orig {
			t.Errorf("%q → %v, want it unchanged", in, err)
		}
	}
}
