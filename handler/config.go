package handler

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
)

// JWTConfig configures JSON Web Token verification.
type JWTConfig struct {
	// HMAC secrets (HS256/384/512), each at least 32 bytes. Placeholders
	// such as {env.LLM_GATE_JWT_SECRET} are replaced at provision time.
	Secrets []string `json:"secrets,omitempty"`
	// Paths of PEM public keys (RSA, ECDSA, Ed25519).
	PublicKeys []string `json:"public_keys,omitempty"`
	// JWKS sources: https URLs or file paths.
	JWKS []string `json:"jwks,omitempty"`
	// Accepted algorithms. Default: every algorithm the configured keys
	// support. "none" is never accepted.
	Algorithms []string `json:"algorithms,omitempty"`
	// Accepted issuers (any matches). Empty: not checked.
	Issuers []string `json:"issuers,omitempty"`
	// Accepted audiences (any matches). Empty: not checked.
	Audiences []string `json:"audiences,omitempty"`
	// Clock skew allowed on exp, nbf and iat. Default: 0.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// The claim naming the user. Default: sub.
	UserClaim string `json:"user_claim,omitempty"`
	// Optional claim naming the user's plan.
	PlanClaim string `json:"plan_claim,omitempty"`
	// Optional claim overriding the budget of the plan's largest window.
	LimitClaim string `json:"limit_claim,omitempty"`
}

// MinSecretLen is the shortest HMAC secret accepted (RFC 7518 §3.2 asks for
// at least the hash size; 32 bytes for HS256).
const MinSecretLen = 32

// verifierConfig resolves placeholders ({env.X}, {file.X}) in the secrets
// and paths and checks the secrets' length.
func (c *JWTConfig) verifierConfig(logger *zap.Logger) (auth.JWTConfig, error) {
	repl := caddy.NewReplacer()
	cfg := auth.JWTConfig{
		Algorithms: c.Algorithms,
		Issuers:    c.Issuers,
		Audiences:  c.Audiences,
		Leeway:     time.Duration(c.Leeway),
		UserClaim:  c.UserClaim,
		PlanClaim:  c.PlanClaim,
		LimitClaim: c.LimitClaim,
		Logger:     logger,
	}
	for i, s := range c.Secrets {
		v, err := resolve(repl, s)
		if err == nil && strings.TrimSpace(v) == "" {
			err = errors.New("it is empty")
		}
		if err != nil {
			return cfg, fmt.Errorf("llm_gate jwt: secret #%d (%s): %v", i+1, s, err)
		}
		if len(v) < MinSecretLen {
			return cfg, fmt.Errorf("llm_gate jwt: secret #%d is %d bytes; it must be at least %d bytes (generate one with: openssl rand -base64 48)", i+1, len(v), MinSecretLen)
		}
		cfg.Secrets = append(cfg.Secrets, []byte(v))
	}
	for _, p := range c.PublicKeys {
		v, err := resolve(repl, p)
		if err != nil {
			return cfg, fmt.Errorf("llm_gate jwt: public_key %s: %v", p, err)
		}
		cfg.PublicKeyFiles = append(cfg.PublicKeyFiles, v)
	}
	for _, j := range c.JWKS {
		v, err := resolve(repl, j)
		if err != nil {
			return cfg, fmt.Errorf("llm_gate jwt: jwks %s: %v", j, err)
		}
		cfg.JWKS = append(cfg.JWKS, v)
	}
	return cfg, nil
}

// resolve replaces the {env.*} and {file.*} placeholders in s; one that
// comes out empty is an error that says which, and what to check. Unknown
// placeholders are left as they are (a secret may hold braces).
func resolve(repl *caddy.Replacer, s string) (string, error) {
	v, err := repl.ReplaceOrErr(s, true, false)
	if err != nil {
		hint := ""
		switch {
		case strings.Contains(s, "{env."):
			hint = ": is the environment variable set?"
		case strings.Contains(s, "{file."):
			hint = ": does the file exist, readable by Caddy, and hold the value?"
		}
		return "", fmt.Errorf("%v%s", err, hint)
	}
	return v, nil
}
