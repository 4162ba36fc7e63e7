package admin

import (
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/store"
)

// maxKeyNameLen bounds a key's name, in bytes.
const maxKeyNameLen = 256

// KeyView is an API key as the admin API shows it: never the secret nor its
// hash.
type KeyView struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Name    string    `json:"name"`
	Prefix  string    `json:"prefix"`
	Created time.Time `json:"created"`
	// Status is active, expired or revoked.
	Status     string     `json:"status"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func keyView(k *store.Key, at time.Time) KeyView {
	v := KeyView{
		ID: k.ID, User: k.UserID, Name: k.Name, Prefix: k.Prefix, Created: k.Created.UTC(),
		ExpiresAt: timeOrNil(k.Expires), RevokedAt: timeOrNil(k.Revoked), LastUsedAt: timeOrNil(k.LastUsed),
		Status: "active",
	}
	switch {
	case !k.Revoked.IsZero():
		v.Status = "revoked"
	case !k.Active(at):
		v.Status = "expired"
	}
	return v
}

// NewKey is the answer of POST /llm_gate/users/{id}/keys: the only time the
// secret is shown.
type NewKey struct {
	ID        string     `json:"id"`
	Key       string     `json:"key"`
	User      string     `json:"user"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Created   time.Time  `json:"created"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// createKey answers POST /llm_gate/users/{id}/keys with
// {"name":"laptop","expires_in":"720h"}; both optional, expires_in absent
// means the key never expires.
func (a *API) createKey(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := userID(p[0])
	if err != nil {
		return err
	}
	var body struct {
		Name      string `json:"name"`
		ExpiresIn string `json:"expires_in"`
	}
	if err := decodeStrict(r, &body); err != nil {
		return err
	}
	if err := validKeyName(body.Name); err != nil {
		return err
	}
	var ttl time.Duration
	if body.ExpiresIn != "" {
		// caddy.ParseDuration also takes days: "30d".
		ttl, err = caddy.ParseDuration(body.ExpiresIn)
		if err != nil || ttl <= 0 {
			return apiErrorf(http.StatusBadRequest, "expires_in %q must be a positive duration such as 720h or 30d", body.ExpiresIn)
		}
	}
	st := a.state()
	if _, err := st.User(id); err != nil {
		return storeError(err)
	}
	secret, kid, prefix, err := auth.NewKey()
	if err != nil {
		return apiErrorf(http.StatusInternalServerError, "%v", err)
	}
	t := now()
	k := &store.Key{ID: kid, UserID: id, Name: body.Name, Prefix: prefix, Hash: auth.HashKey(secret), Created: t}
	if ttl > 0 {
		k.Expires = t.Add(ttl)
	}
	if err := st.PutKey(k); err != nil {
		return storeError(err)
	}
	a.logger.Info("API key created", zap.String("user", id), zap.String("key_id", kid), zap.Timep("expires", timeOrNil(k.Expires)))
	// The secret must not linger in a cache on the way.
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, NewKey{ID: kid, Key: secret, User: id, Name: k.Name,
		Prefix: prefix, Created: t, ExpiresAt: timeOrNil(k.Expires)})
}

func validKeyName(name string) error {
	if len(name) > maxKeyNameLen {
		return apiErrorf(http.StatusBadRequest, "name is %d bytes, longer than %d", len(name), maxKeyNameLen)
	}
	if !utf8.ValidString(name) {
		return apiErrorf(http.StatusBadRequest, "name is not valid UTF-8")
	}
	for _, c := range name {
		if !unicode.IsPrint(c) {
			return apiErrorf(http.StatusBadRequest, "name %q holds a control character", name)
		}
	}
	return nil
}

// listKeys answers GET /llm_gate/users/{id}/keys, revoked and expired keys
// included, oldest first.
func (a *API) listKeys(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := userID(p[0])
	if err != nil {
		return err
	}
	st := a.state()
	if _, err := st.User(id); err != nil {
		return storeError(err)
	}
	db, err := st.DB()
	if err != nil {
		return storeError(err)
	}
	keys, err := db.KeysByUser(id)
	if err != nil {
		return storeError(err)
	}
	out := make([]KeyView, 0, len(keys))
	t := now()
	for i := range keys {
		out = append(out, keyView(&keys[i], t))
	}
	return writeJSON(w, http.StatusOK, struct {
		Keys []KeyView `json:"keys"`
	}{out})
}

// keyID checks a key id taken from the path.
func keyID(id string) (string, error) {
	if id == "" || len(id) > store.MaxKeyIDLen {
		return "", apiErrorf(http.StatusBadRequest, "key id must be 1 to %d bytes", store.MaxKeyIDLen)
	}
	return id, nil
}

// getKey answers GET /llm_gate/keys/{key_id}.
func (a *API) getKey(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := keyID(p[0])
	if err != nil {
		return err
	}
	db, err := a.state().DB()
	if err != nil {
		return storeError(err)
	}
	k, err := db.GetKey(id)
	if err != nil {
		return storeError(err)
	}
	return writeJSON(w, http.StatusOK, keyView(k, now()))
}

// revokeKey answers DELETE /llm_gate/keys/{key_id}: the next request with
// the key is refused. Revoking a revoked key keeps its first revocation
// time.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := keyID(p[0])
	if err != nil {
		return err
	}
	t := now()
	k, err := a.state().RevokeKey(id, t)
	if err != nil {
		return storeError(err)
	}
	a.logger.Info("API key revoked", zap.String("user", k.UserID), zap.String("key_id", id))
	return writeJSON(w, http.StatusOK, keyView(k, t))
}
