package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// KeyPrefix starts every API key the gate mints. JWTs always start with "ey"
// (a base64url JSON object), so the prefix tells the two apart without
// parsing.
const KeyPrefix = "sk-"

// keySecretBytes is the entropy of a minted key.
const keySecretBytes = 32

// keyDisplayPrefix is how many leading characters of a secret are kept for
// display ("sk-AbCdEfG"): enough to recognise a key, far too few to use it.
const keyDisplayPrefix = 10

// IsAPIKey reports whether tok has the shape of an API key (the "sk-" prefix)
// rather than a JWT. It says nothing about whether the key exists: that is
// decided by looking up [HashKey] of it.
func IsAPIKey(tok string) bool {
	return strings.HasPrefix(tok, KeyPrefix)
}

// NewKey mints an API key. The secret is "sk-" followed by the unpadded
// base64url encoding of 32 bytes from crypto/rand; it is shown to the user
// once and stored only as [HashKey] of it. The id ("key_" + 16 lowercase hex
// characters, random) names the key in admin responses and logs; prefix is
// the first 10 characters of the secret, for display.
func NewKey() (secret, id, prefix string, err error) {
	var buf [keySecretBytes + 8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", "", "", fmt.Errorf("auth: reading random bytes: %w", err)
	}
	secret = KeyPrefix + base64.RawURLEncoding.EncodeToString(buf[:keySecretBytes])
	id = "key_" + hex.EncodeToString(buf[keySecretBytes:])
	return secret, id, secret[:keyDisplayPrefix], nil
}

// HashKey returns the SHA-256 digest under which an API key is stored. A
// single unsalted hash is enough: the secret has 256 bits of entropy, so there
// is nothing to brute-force, and a fast hash keeps the per-request lookup
// cheap.
func HashKey(secret string) [32]byte {
	// Converting a string longer than 32 bytes to []byte allocates even when
	// it does not escape; a stack buffer sized for minted keys (46 bytes)
	// keeps the per-request lookup allocation-free.
	var buf [64]byte
	if len(secret) <= len(buf) {
		n := copy(buf[:], secret)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(secret))
}
