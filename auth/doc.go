// Package auth identifies callers: it reads the credential a request carries,
// verifies JSON Web Tokens against configured keys, and mints and hashes the
// gate's own API keys. It knows nothing about Caddy, users or quotas.
//
// # Credentials
//
// [Credential] takes the token from `Authorization: Bearer …` or `x-api-key`.
// [IsAPIKey] tells the gate's own keys ("sk-…") from JWTs; an API key is looked
// up by [HashKey] of it, since only the SHA-256 hash is ever stored.
//
// # JWT verification
//
// A [Verifier] holds HMAC secrets, PEM public keys and JWKS documents, and
// accepts an explicit list of algorithms ("none" never). Each key verifies
// only its own family — HMAC secrets HS*, RSA keys RS*/PS*, EC keys the ES*
// of their curve, Ed25519 keys EdDSA — so neither an RSA public key used as
// an HMAC secret nor an ES256 signature checked against a P-384 key can get
// through. When a token has a `kid`, only keys with that kid are tried (PEM
// keys have one only when their PEM block carries a "kid: …" header); without
// a kid, every key of the algorithm's family is tried. Key-bearing headers
// (jku, x5u, jwk, x5c) are never read, and a `crit` header is refused.
//
// Claims: `exp` is required; `nbf` and `iat` are checked with the leeway;
// `iss` and `aud` when configured (any listed value matches); the user claim
// must be a non-empty string without control characters. The optional plan
// claim must be a string and the limit claim a non-negative integer, as a
// JSON number or a decimal string; absent or null, they are zero values.
//
// # JWKS
//
// Each JWKS is fetched at construction, cached and refreshed every
// RefreshInterval. A token naming an unknown kid triggers a refetch, at most
// one per MinRefetchInterval whatever the number of such tokens. A refresh
// that fails keeps the source's cached keys, so an identity provider outage
// does not break tokens that verify with them; a refresh that succeeds
// replaces them, so retired keys stop verifying. Symmetric ("oct") keys and
// keys for encryption are ignored in a JWKS.
//
// # Errors
//
// Every verification failure wraps [ErrInvalid] (and, where jwt/v5 found it,
// jwt/v5's own error, e.g. jwt.ErrTokenExpired). Messages say why, for logs,
// and never contain the credential.
package auth
