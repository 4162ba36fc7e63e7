package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"
)

// MinSecretSize is the shortest HMAC secret the token command signs with,
// the same floor the gate's verifier enforces.
const MinSecretSize = 32

// minRSABits is the smallest RSA key the gate's verifier accepts.
const minRSABits = 2048

// TokenOptions say what token to mint.
type TokenOptions struct {
	// Secret is an HMAC secret (HS256/384/512); Key a private key
	// (RSA, ECDSA P-256/384/521, Ed25519). Exactly one must be set.
	Secret []byte
	Key    crypto.Signer
	// Alg is the algorithm; "" picks HS256 for a secret and the key's
	// natural one (RS256, ES256/384/512, EdDSA) for a key.
	Alg string
	// KeyID becomes the header's kid when set.
	KeyID string

	// User is the subject (sub); required.
	User string
	// TTL sets exp to now+TTL; 0 leaves exp out; negative mints an expired
	// token (for tests).
	TTL time.Duration
	// Plan and Limit become the plan and token_limit claims when set.
	Plan     string
	Limit    int64
	HasLimit bool
	Issuer   string
	// Audience is one aud string, or a list when it holds several.
	Audience []string
	// Claims are added last and may override any of the above.
	Claims map[string]any
}

// MintToken signs a JWT as o says, stamped at now.
func MintToken(o TokenOptions, now time.Time) (string, error) {
	if o.User == "" {
		return "", errors.New("a user (--user) is required: it becomes the token's sub")
	}
	method, key, err := signer(o)
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{"sub": o.User, "iat": now.Unix()}
	if o.TTL != 0 {
		claims["exp"] = now.Add(o.TTL).Unix()
	}
	if o.Plan != "" {
		claims["plan"] = o.Plan
	}
	if o.HasLimit {
		claims["token_limit"] = o.Limit
	}
	if o.Issuer != "" {
		claims["iss"] = o.Issuer
	}
	switch len(o.Audience) {
	case 0:
	case 1:
		claims["aud"] = o.Audience[0]
	default:
		claims["aud"] = o.Audience
	}
	for k, v := range o.Claims {
		claims[k] = v
	}
	tok := jwt.NewWithClaims(method, claims)
	if o.KeyID != "" {
		tok.Header["kid"] = o.KeyID
	}
	s, err := tok.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("signing the token: %w", err)
	}
	return s, nil
}

// signer picks the signing method and key, refusing any combination the
// gate's verifier would refuse.
func signer(o TokenOptions) (jwt.SigningMethod, any, error) {
	pick := func(def string, allowed ...string) (string, error) {
		alg := o.Alg
		if alg == "" {
			alg = def
		}
		for _, a := range allowed {
			if strings.EqualFold(a, alg) {
				return a, nil
			}
		}
		return "", fmt.Errorf("algorithm %s does not fit this key; use one of %s", alg, strings.Join(allowed, ", "))
	}
	var alg string
	var key any
	var err error
	switch {
	case o.Secret != nil && o.Key != nil:
		return nil, nil, errors.New("give either a secret or a key file, not both")
	case o.Secret != nil:
		if len(o.Secret) < MinSecretSize {
			return nil, nil, fmt.Errorf("the HMAC secret is %d bytes; the gate requires at least %d", len(o.Secret), MinSecretSize)
		}
		alg, err = pick("HS256", "HS256", "HS384", "HS512")
		key = o.Secret
	case o.Key != nil:
		switch k := o.Key.(type) {
		case *rsa.PrivateKey:
			if k.N.BitLen() < minRSABits {
				return nil, nil, fmt.Errorf("the RSA key has %d bits; the gate requires at least %d", k.N.BitLen(), minRSABits)
			}
			alg, err = pick("RS256", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
		case *ecdsa.PrivateKey:
			switch k.Curve {
			case elliptic.P256():
				alg, err = pick("ES256", "ES256")
			case elliptic.P384():
				alg, err = pick("ES384", "ES384")
			case elliptic.P521():
				alg, err = pick("ES512", "ES512")
			default:
				return nil, nil, fmt.Errorf("unsupported EC curve %s (use P-256, P-384 or P-521)", k.Curve.Params().Name)
			}
		case ed25519.PrivateKey:
			alg, err = pick("EdDSA", "EdDSA")
		default:
			return nil, nil, fmt.Errorf("unsupported key type %T", o.Key)
		}
		key = o.Key
	default:
		return nil, nil, errors.New("a signing key is required: --secret, --secret-env or --key-file")
	}
	if err != nil {
		return nil, nil, err
	}
	return jwt.GetSigningMethod(alg), key, nil
}

// ParsePrivateKey reads the first private key of a PEM document: PKCS #8
// ("PRIVATE KEY"), PKCS #1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY").
// Other blocks (EC PARAMETERS, certificates) are skipped.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the %s block: %w", block.Type, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return s, nil
	}
}

// parseClaims reads --claim name=value flags; a value that is valid JSON
// (a number, true, an object…) is taken as JSON, anything else as a string.
func parseClaims(flags []string) (map[string]any, error) {
	out := map[string]any{}
	for _, f := range flags {
		name, val, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--claim %q: want name=value", f)
		}
		var v any
		if err := json.Unmarshal([]byte(val), &v); err != nil {
			v = val
		}
		out[name] = v
	}
	return out, nil
}

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token --user ID (--secret S | --secret-env VAR | --key-file PEM) [flags]",
		Short: "Mints a JWT for testing and prints only the token",
		Long: `
Mints a JWT locally (no Caddy needed) and prints only the token, so that
scripts can capture it:

  TOKEN=$(caddy llm-gate token --secret-env LLM_GATE_JWT_SECRET --user alice)

An HMAC secret signs HS256 (or --alg HS384/HS512) and must be at least 32
bytes. A PEM private key signs by its type: RSA → RS256 (or RS384/RS512/
PS256/PS384/PS512), EC P-256 → ES256, P-384 → ES384, P-521 → ES512,
Ed25519 → EdDSA. --ttl 0 leaves exp out; --ttl=-1h mints an expired token.
--claim name=value adds any claim (JSON values are taken as JSON) and
overrides the others.`,
		Args: cobra.NoArgs,
		RunE: runToken,
	}
	f := cmd.Flags()
	f.String("secret", "", "HMAC secret (visible in the process list; prefer --secret-env)")
	f.String("secret-env", "", "Name of the environment variable holding the HMAC secret")
	f.String("key-file", "", "PEM file holding a private key (RSA, EC or Ed25519)")
	f.String("alg", "", "Signing algorithm (default: HS256 for secrets, by key type for keys)")
	f.String("kid", "", "Key id for the token's header")
	f.String("user", "", "The user (sub claim)")
	f.String("ttl", "1h", "Lifetime (Go duration or days: 1h, 30m, 7d)")
	f.String("plan", "", "plan claim")
	f.Int64("limit", 0, "token_limit claim")
	f.String("issuer", "", "iss claim")
	f.StringArray("audience", nil, "aud claim (repeat for several)")
	f.StringArray("claim", nil, "Any claim as name=value (repeatable)")
	cmd.MarkFlagsMutuallyExclusive("secret", "secret-env", "key-file")
	return cmd
}

func runToken(cmd *cobra.Command, _ []string) error {
	f := cmd.Flags()
	var o TokenOptions
	o.User, _ = f.GetString("user")
	o.Alg, _ = f.GetString("alg")
	o.KeyID, _ = f.GetString("kid")
	o.Plan, _ = f.GetString("plan")
	o.Issuer, _ = f.GetString("issuer")
	o.Audience, _ = f.GetStringArray("audience")
	if f.Changed("limit") {
		o.Limit, _ = f.GetInt64("limit")
		o.HasLimit = true
	}
	ttl, _ := f.GetString("ttl")
	d, err := caddy.ParseDuration(ttl)
	if err != nil {
		return fmt.Errorf("--ttl %q: %w", ttl, err)
	}
	o.TTL = d
	claims, _ := f.GetStringArray("claim")
	if o.Claims, err = parseClaims(claims); err != nil {
		return err
	}

	switch {
	case f.Changed("secret"):
		s, _ := f.GetString("secret")
		o.Secret = []byte(s)
	case f.Changed("secret-env"):
		name, _ := f.GetString("secret-env")
		s, ok := os.LookupEnv(name)
		if !ok {
			return fmt.Errorf("--secret-env: environment variable %s is not set", name)
		}
		o.Secret = []byte(s)
	case f.Changed("key-file"):
		path, _ := f.GetString("key-file")
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("--key-file: %w", err)
		}
		if o.Key, err = ParsePrivateKey(data); err != nil {
			return fmt.Errorf("--key-file %s: %w", path, err)
		}
	}
	tok, err := MintToken(o, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
	return err
}
