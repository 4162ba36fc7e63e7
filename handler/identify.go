package handler

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/store"
)

// caller is who a request comes from and what they are held to.
type caller struct {
	user   *store.User
	key    *gate.APIKey // nil for a JWT
	claims gate.Claims
	eff    gate.Effective

	// What the request used, once known (for the placeholders).
	model              string
	prompt, completion int64
	estimated, settled bool
}

// keyID is the id of the request's API key, "" for a JWT.
func (c *caller) keyID() string {
	if c.key == nil {
		return ""
	}
	return c.key.ID
}

// placeholder answers the {http.llm_gate.*} placeholders, and
// {http.auth.user.id} as Caddy's authentication handlers do: the access log
// reads it as its user_id field when the line is written, so that even a
// response cut short (which skips log_append's fields) names its caller.
func (c *caller) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, "http.llm_gate.")
	if !ok {
		if key == "http.auth.user.id" {
			return c.user.ID, true
		}
		return nil, false
	}
	switch name {
	case "user":
		return c.user.ID, true
	case "key_id":
		return c.keyID(), true
	case "plan":
		return c.eff.Plan, true
	case "model":
		return c.model, c.model != ""
	case "prompt_tokens":
		return c.prompt, c.settled
	case "completion_tokens":
		return c.completion, c.settled
	case "estimated":
		return c.estimated, c.settled
	}
	return nil, false
}

// identify turns the request's credential into a caller, or the error to
// answer (with the caller too when it is a known user who is refused).
// Reasons are logged at debug level, never the credential itself.
func (h *Handler) identify(r *http.Request, now time.Time) (*caller, *apiError) {
	tok, err := auth.Credential(r.Header)
	if errors.Is(err, auth.ErrNoCredential) {
		return nil, errMissingKey()
	}
	if err != nil {
		h.logger.Debug("credential refused", zap.Error(err))
		return nil, errInvalidKey()
	}
	c := &caller{}
	switch {
	case auth.IsAPIKey(tok) && h.apiKeys:
		k, err := h.state.KeyByHash(auth.HashKey(tok))
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				h.logger.Error("looking up an API key", zap.Error(err))
				return nil, errInternal()
			}
			h.logger.Debug("credential refused", zap.String("reason", "unknown API key"))
			return nil, errInvalidKey()
		}
		if !k.Revoked.IsZero() || (!k.Expires.IsZero() && !now.Before(k.Expires)) {
			h.logger.Debug("credential refused", zap.String("reason", "API key revoked or expired"), zap.String("key_id", k.ID))
			return nil, errInvalidKey()
		}
		u, err := h.state.KeyUser(k)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				h.logger.Error("looking up a user", zap.Error(err))
				return nil, errInternal()
			}
			return nil, errInvalidKey()
		}
		c.user, c.key = u, k
	case h.verifier != nil:
		id, err := h.verifier.VerifyAt(tok, now)
		if err != nil {
			h.logger.Debug("credential refused", zap.Error(err))
			return nil, errInvalidKey()
		}
		if err := store.ValidUserID(id.User); err != nil {
			h.logger.Debug("credential refused", zap.Error(err))
			return nil, errInvalidKey()
		}
		c.claims = gate.Claims{Plan: id.Plan, Limit: id.Limit, HasLimit: id.HasLimit}
		plan := h.Plan
		if h.app.Plan(id.Plan) != nil {
			plan = id.Plan
		}
		u, err := h.state.User(id.User)
		if errors.Is(err, store.ErrNotFound) { // first use: create the user
			u, err = h.state.EnsureUser(&store.User{ID: id.User, Plan: plan, Source: "jwt", Created: now, Updated: now})
		}
		if err != nil {
			h.logger.Error("creating a user on first use", zap.Error(err))
			return nil, errInternal()
		}
		c.user = u
	default:
		h.logger.Debug("credential refused", zap.String("reason", "not an API key, and no jwt configured"))
		return nil, errInvalidKey()
	}
	c.eff = h.app.Resolve(c.user, h.Plan, c.claims)
	if c.user.Disabled {
		return c, errUserDisabled() // c for the placeholders: the access log names who was refused
	}
	if c.key != nil {
		h.state.KeyUsed(c.key, now)
	}
	return c, nil
}
