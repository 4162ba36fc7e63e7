package auth

import (
	"errors"
	"net/http"
	"strings"
)

// ErrNoCredential is returned by [Credential] when the request carries neither
// an Authorization header nor an x-api-key header.
var ErrNoCredential = errors.New("no credential: send Authorization: Bearer <token> or x-api-key")

// ErrInvalid is wrapped by every failure to read or verify a credential; test
// for it with errors.Is. The wrapping error's message explains the failure.
var ErrInvalid = errors.New("invalid credential")

// MaxCredentialSize is the largest credential, in bytes, that [Credential]
// accepts. It matches the default JWT size limit.
const MaxCredentialSize = 8192

// Errors returned by Credential. They are values, not formatted on each call,
// so that a flood of malformed requests costs no allocations.
var (
	errMultipleAuthorization = invalidf("more than one Authorization header")
	errMultipleAPIKey        = invalidf("more than one x-api-key header")
	errScheme                = invalidf("Authorization scheme must be Bearer")
	errEmptyBearer           = invalidf("empty bearer token")
	errEmptyAPIKey           = invalidf("empty x-api-key")
	errCredentialTooLarge    = invalidf("credential is larger than the limit")
	errCredentialChars       = invalidf("credential contains spaces, control or non-ASCII characters")
	errConflict              = invalidf("Authorization and x-api-key carry different credentials")
)

// invalidf builds a constant error that wraps ErrInvalid.
func invalidf(msg string) error { return &invalidError{msg: msg} }

// invalidError is a fixed-message error wrapping ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return ErrInvalid.Error() + ": " + e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalid }

// Credential reads the caller's credential from `Authorization: Bearer <tok>`
// (scheme case-insensitive, surrounding spaces and tabs trimmed) or from
// `x-api-key: <tok>`.
//
// A malformed header — another scheme such as Basic, an empty bearer, a
// repeated header, spaces, control or non-ASCII characters inside the
// credential, or more than [MaxCredentialSize] bytes — is an error wrapping
// [ErrInvalid]. When both headers are present they must carry the same
// credential, so that there is never doubt about who the caller is. When
// neither is present the error is [ErrNoCredential].
//
// The returned string is a substring of the header value: no allocation.
// h's keys must be in canonical form, as HTTP servers and Header.Set store
// them.
func Credential(h http.Header) (string, error) {
	var tok string
	// The header's canonical keys, looked up directly: HTTP servers store
	// them so, and Values would canonicalize the key on every request.
	switch auth := h["Authorization"]; len(auth) {
	case 0:
	case 1:
		t, err := parseBearer(auth[0])
		if err != nil {
			return "", err
		}
		tok = t
	default:
		return "", errMultipleAuthorization
	}
	switch keys := h["X-Api-Key"]; len(keys) {
	case 0:
	case 1:
		k := trimOWS(keys[0])
		if k == "" {
			return "", errEmptyAPIKey
		}
		if err := checkToken(k); err != nil {
			return "", err
		}
		if tok != "" && tok != k {
			return "", errConflict
		}
		tok = k
	default:
		return "", errMultipleAPIKey
	}
	if tok == "" {
		return "", ErrNoCredential
	}
	return tok, nil
}

// parseBearer extracts the token from an Authorization header value.
func parseBearer(v string) (string, error) {
	v = trimOWS(v)
	i := strings.IndexByte(v, ' ')
	if j := strings.IndexByte(v, '\t'); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		if strings.EqualFold(v, "Bearer") {
			return "", errEmptyBearer
		}
		return "", errScheme
	}
	if !strings.EqualFold(v[:i], "Bearer") {
		return "", errScheme
	}
	tok := trimOWS(v[i+1:])
	if tok == "" {
		return "", errEmptyBearer
	}
	return tok, checkToken(tok)
}

// checkToken accepts only visible ASCII (0x21–0x7e) up to MaxCredentialSize
// bytes: JWTs and API keys never contain anything else, and refusing it here
// keeps control characters out of logs and lookups.
func checkToken(tok string) error {
	if len(tok) > MaxCredentialSize {
		return errCredentialTooLarge
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return errCredentialChars
		}
	}
	return nil
}

// trimOWS trims HTTP optional whitespace (spaces and tabs).
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
