package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// keyKind is the family a key belongs to. A key verifies only the algorithms
// of its own family: this is what makes key-confusion attacks (an RSA public
// key used as an HMAC secret, an ES256 signature checked with a P-384 key)
// impossible.
type keyKind uint8

const (
	kindHMAC keyKind = iota + 1
	kindRSA
	kindP256
	kindP384
	kindP521
	kindEd25519
)

// String names the kind for error messages.
func (k keyKind) String() string {
	switch k {
	case kindHMAC:
		return "HMAC secret"
	case kindRSA:
		return "RSA key"
	case kindP256:
		return "EC P-256 key"
	case kindP384:
		return "EC P-384 key"
	case kindP521:
		return "EC P-521 key"
	case kindEd25519:
		return "Ed25519 key"
	}
	return "unknown key"
}

// allAlgorithms lists every algorithm the verifier supports, in the order
// Algorithms reports them. "none" is deliberately absent.
var allAlgorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// algKind maps each supported algorithm to the only key family that may
// verify it.
var algKind = map[string]keyKind{
	"HS256": kindHMAC, "HS384": kindHMAC, "HS512": kindHMAC,
	"RS256": kindRSA, "RS384": kindRSA, "RS512": kindRSA,
	"PS256": kindRSA, "PS384": kindRSA, "PS512": kindRSA,
	"ES256": kindP256, "ES384": kindP384, "ES512": kindP521,
	"EdDSA": kindEd25519,
}

// RSA modulus bounds. Below 2048 bits a key is breakable or nearly so; above
// 16384 a single verification is slow enough to be a denial-of-service lever
// for whoever controls a JWKS document.
const (
	minRSABits = 2048
	maxRSABits = 16384
)

// maxJWKSKeys bounds the usable keys taken from one JWKS document. A token
// without a kid is tried against every key of its algorithm, so an endless
// set would make each forged token cost that many signature checks. Real
// identity providers publish a handful.
const maxJWKSKeys = 100

// key is one verification key, parsed once and shared by every request.
type key struct {
	kid  string  // "" when the source gives none (secrets, PEM without a kid header)
	alg  string  // restricts the key to one algorithm when its JWK says so
	kind keyKind // algorithm family
	pub  any     // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	src  string  // where it came from, for logs ("public_key /etc/jwt.pem", "jwks https://…")
}

// accepts reports whether the key may verify a token signed with alg.
func (k *key) accepts(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	return algKind[alg] == k.kind
}

// kidAlg indexes keys that have a kid. A struct of two strings as map key
// keeps the lookup allocation-free.
type kidAlg struct{ kid, alg string }

// keySet is an immutable snapshot of every usable key, indexed the way the
// per-request path needs it. Values in the maps are ready to hand to jwt/v5:
// either a single key or a jwt.VerificationKeySet, already boxed in an
// interface so that returning them from the Keyfunc allocates nothing.
type keySet struct {
	byAlg map[string]any       // every key compatible with alg (tokens without kid)
	byKid map[kidAlg]any       // keys with that kid compatible with alg
	noKid map[string]any       // keys without a kid compatible with alg
	kids  map[string]struct{}  // every kid present, whatever its algorithms
	count int                  // number of keys
	kinds map[keyKind]struct{} // families present
}

// newKeySet indexes keys for the accepted algorithms.
func newKeySet(keys []*key, algs []string) *keySet {
	byAlg := map[string][]jwt.VerificationKey{}
	byKid := map[kidAlg][]jwt.VerificationKey{}
	noKid := map[string][]jwt.VerificationKey{}
	ks := &keySet{
		byAlg: map[string]any{},
		byKid: map[kidAlg]any{},
		noKid: map[string]any{},
		kids:  map[string]struct{}{},
		kinds: map[keyKind]struct{}{},
		count: len(keys),
	}
	for _, k := range keys {
		ks.kinds[k.kind] = struct{}{}
		if k.kid != "" {
			ks.kids[k.kid] = struct{}{}
		}
		for _, alg := range algs {
			if !k.accepts(alg) {
				continue
			}
			byAlg[alg] = append(byAlg[alg], k.pub)
			if k.kid != "" {
				ka := kidAlg{k.kid, alg}
				byKid[ka] = append(byKid[ka], k.pub)
			} else {
				noKid[alg] = append(noKid[alg], k.pub)
			}
		}
	}
	for alg, ks2 := range noKid {
		ks.noKid[alg] = boxKeys(ks2)
	}
	for alg, ks2 := range byAlg {
		ks.byAlg[alg] = boxKeys(ks2)
	}
	for ka, ks2 := range byKid {
		ks.byKid[ka] = boxKeys(ks2)
	}
	return ks
}

// boxKeys returns the single key itself or a VerificationKeySet, as jwt/v5's
// Keyfunc expects.
func boxKeys(keys []jwt.VerificationKey) any {
	if len(keys) == 1 {
		return keys[0]
	}
	return jwt.VerificationKeySet{Keys: keys}
}

// publicKey classifies a parsed public key and checks that it is strong
// enough to trust.
func publicKey(pub any) (keyKind, any, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if n := p.N.BitLen(); n < minRSABits || n > maxRSABits {
			return 0, nil, fmt.Errorf("RSA key has %d bits; it must have %d to %d", n, minRSABits, maxRSABits)
		}
		if p.E < 3 || p.E%2 == 0 {
			return 0, nil, fmt.Errorf("RSA key has an invalid public exponent %d", p.E)
		}
		return kindRSA, p, nil
	case *ecdsa.PublicKey:
		switch p.Curve {
		case elliptic.P256():
			return kindP256, p, nil
		case elliptic.P384():
			return kindP384, p, nil
		case elliptic.P521():
			return kindP521, p, nil
		}
		return 0, nil, fmt.Errorf("EC key on unsupported curve %s; use P-256, P-384 or P-521", p.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return 0, nil, errors.New("Ed25519 key has the wrong size")
		}
		return kindEd25519, p, nil
	}
	return 0, nil, fmt.Errorf("unsupported key type %T; use RSA, EC (P-256/384/521) or Ed25519", pub)
}

// parsePEMKeys reads every public key in a PEM document. A block may name
// its key with a "kid: …" PEM header; otherwise the key has no kid and only
// verifies tokens without one.
func parsePEMKeys(data []byte, src string) ([]*key, error) {
	var keys []*key
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var (
			pub any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("holds a %s; configure the public key instead (openssl pkey -in key.pem -pubout)", block.Type)
			}
			return nil, fmt.Errorf("PEM block %q is not supported; use PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot parse %s block: %v", block.Type, err)
		}
		kind, p, err := publicKey(pub)
		if err != nil {
			return nil, err
		}
		keys = append(keys, &key{kid: block.Headers["kid"], kind: kind, pub: p, src: src})
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM-encoded public key found")
	}
	return keys, nil
}

// jwk holds the members of a JSON Web Key that matter for verification.
// Private members ("d", …) are ignored; x5c/x5u are ignored too, the key is
// taken from its own parameters only.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	Alg    string   `json:"alg"`
	KeyOps []string `json:"key_ops"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// parseJWKS parses a JWK Set (or a single JWK). Keys that are unusable for
// signature verification — encryption keys, symmetric keys, unknown types or
// curves, malformed parameters — are skipped and reported in skipped; the
// document is an error only if it is not JSON or yields no usable key.
func parseJWKS(data []byte, src string) (keys []*key, skipped []error, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
		Kty  string            `json:"kty"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a JWK Set: %v", err)
	}
	raw := doc.Keys
	if raw == nil && doc.Kty != "" {
		raw = []json.RawMessage{data} // a lone JWK
	}
	for i, r := range raw {
		if len(keys) == maxJWKSKeys {
			skipped = append(skipped, fmt.Errorf("keys beyond the first %d usable ones are ignored", maxJWKSKeys))
			break
		}
		var j jwk
		if err := json.Unmarshal(r, &j); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %v", i, err))
			continue
		}
		k, err := j.key(src)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %.64q): %v", i, j.Kid, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("no usable signature verification key in the JWK Set")
	}
	return keys, skipped, nil
}

// key converts a JWK into a verification key.
func (j *jwk) key(src string) (*key, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use %q is not sig", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return nil, errors.New("key_ops does not include verify")
	}
	var pub any
	switch j.Kty {
	case "RSA":
		n, err := b64(j.N)
		if err != nil || len(n) == 0 {
			return nil, errors.New("bad RSA modulus n")
		}
		e, err := b64(j.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA exponent e")
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	case "EC":
		var curve elliptic.Curve
		var size int
		switch j.Crv {
		case "P-256":
			curve, size = elliptic.P256(), 32
		case "P-384":
			curve, size = elliptic.P384(), 48
		case "P-521":
			curve, size = elliptic.P521(), 66
		default:
			return nil, fmt.Errorf("EC curve %q is not supported", j.Crv)
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinates")
		}
		point := make([]byte, 0, 1+2*size)
		point = append(append(append(point, 4), x...), y...)
		p, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, errors.New("EC point is not on the curve")
		}
		pub = p
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %q is not supported", j.Crv)
		}
		x, err := b64(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 public key x")
		}
		pub = ed25519.PublicKey(x)
	case "oct":
		// A symmetric key published in a JWKS is a shared secret anyone who
		// can read the document knows; configure secrets with `secret`.
		return nil, errors.New("symmetric (oct) keys are not accepted from a JWKS")
	default:
		return nil, fmt.Errorf("key type %q is not supported", j.Kty)
	}
	kind, p, err := publicKey(pub)
	if err != nil {
		return nil, err
	}
	k := &key{kid: j.Kid, kind: kind, pub: p, src: src}
	if j.Alg != "" {
		if algKind[j.Alg] != kind {
			return nil, fmt.Errorf("alg %q does not fit a %s", j.Alg, kind)
		}
		k.alg = j.Alg
	}
	return k, nil
}

// b64 decodes base64url, tolerating the padding some issuers add.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
