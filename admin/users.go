package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// userID checks a user id taken from the path.
func userID(id string) (string, error) {
	if err := store.ValidUserID(id); err != nil {
		return "", apiErrorf(http.StatusBadRequest, "%v", err)
	}
	return id, nil
}

// Overrides are a user's own settings as stored; null means the plan's value
// applies.
type Overrides struct {
	Plan              *string  `json:"plan"`
	TokenLimit        *int64   `json:"token_limit"`
	Period            *string  `json:"period"`
	TokensPerMinute   *int64   `json:"tokens_per_minute"`
	RequestsPerMinute *int64   `json:"requests_per_minute"`
	MaxParallel       *int     `json:"max_parallel"`
	Models            []string `json:"models"`
}

// WindowLimit is "Limit per Window", as in the app's plan config.
type WindowLimit struct {
	Window string `json:"window"`
	Limit  int64  `json:"limit"`
}

// Limits are a plan's or a user's effective limits. Absent windows are not
// limited; max_parallel 0 means no limit; empty models allow every model.
type Limits struct {
	Tokens      []WindowLimit `json:"tokens"`
	Requests    []WindowLimit `json:"requests"`
	MaxParallel int           `json:"max_parallel"`
	Models      []string      `json:"models"`
}

func limitsOf(l quota.Limits, models []string) Limits {
	out := Limits{Tokens: []WindowLimit{}, Requests: []WindowLimit{}, MaxParallel: l.MaxParallel, Models: models}
	if out.Models == nil {
		out.Models = []string{}
	}
	for w := quota.Window(0); w < quota.NumWindows; w++ {
		if l.Tokens[w] > 0 {
			out.Tokens = append(out.Tokens, WindowLimit{w.String(), l.Tokens[w]})
		}
		if l.Requests[w] > 0 {
			out.Requests = append(out.Requests, WindowLimit{w.String(), l.Requests[w]})
		}
	}
	return out
}

// Window is the state of one limited window, in the same shape as the
// self-service answer.
type Window struct {
	Window    string    `json:"window"`
	Kind      string    `json:"kind"`
	Limit     int64     `json:"limit"`
	Used      int64     `json:"used"`
	Reserved  int64     `json:"reserved"`
	Remaining int64     `json:"remaining"`
	ResetsAt  time.Time `json:"resets_at,omitzero"`
}

// UserView is the answer of GET /llm_gate/users/{id} (and of PUT, PATCH and
// reset): the stored user, what it resolves to, and where it stands.
type UserView struct {
	ID       string    `json:"id"`
	Plan     string    `json:"plan"` // the effective plan; "" when none applies
	Disabled bool      `json:"disabled"`
	Source   string    `json:"source,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	// Overrides are the user's own settings, as stored.
	Overrides Overrides `json:"overrides"`
	// Limits are the effective limits: the plan with the overrides applied.
	// A JWT's plan or limit claim, or a site's plan, can change them for a
	// request.
	Limits Limits `json:"limits"`
	// Windows are the limited windows with their usage, reserved tokens,
	// what remains and when they reset.
	Windows []Window `json:"windows"`
	// Used counts tokens and requests in the current period of every
	// window, limited or not.
	Used struct {
		Tokens   Counts `json:"tokens"`
		Requests Counts `json:"requests"`
	} `json:"used"`
	// InFlight is the number of the user's requests running now.
	InFlight int       `json:"in_flight"`
	Keys     []KeyView `json:"keys"`
}

// Counts are a count per window, in the current period of each.
type Counts struct {
	Minute int64 `json:"minute"`
	Hour   int64 `json:"hour"`
	Day    int64 `json:"day"`
	Week   int64 `json:"week"`
	Month  int64 `json:"month"`
	Total  int64 `json:"total"`
}

func countsOf(n [quota.NumWindows]int64) Counts {
	return Counts{Minute: n[quota.Minute], Hour: n[quota.Hour], Day: n[quota.Day],
		Week: n[quota.Week], Month: n[quota.Month], Total: n[quota.Total]}
}

func (a *API) userView(u *store.User) (*UserView, error) {
	st := a.state()
	eff := a.gateApp().Resolve(u, "", gate.Claims{})
	v := &UserView{
		ID: u.ID, Plan: eff.Plan, Disabled: u.Disabled, Source: u.Source,
		Created: u.Created, Updated: u.Updated,
		Overrides: Overrides{
			TokenLimit: u.TokenLimit, TokensPerMinute: u.TokensPerMinute,
			RequestsPerMinute: u.RequestsPerMinute, MaxParallel: u.MaxParallel, Models: u.Models,
		},
		Limits:   limitsOf(eff.Limits, eff.Models),
		Windows:  []Window{},
		InFlight: st.Engine.InFlight(u.ID),
		Keys:     []KeyView{},
	}
	if u.Plan != "" {
		v.Overrides.Plan = &u.Plan
	}
	if u.Period != "" {
		v.Overrides.Period = &u.Period
	}
	status, err := st.Engine.Status(u.ID, eff.Limits)
	if err != nil {
		return nil, storeError(err)
	}
	for _, s := range status {
		v.Windows = append(v.Windows, Window{Window: s.Window.String(), Kind: s.Kind, Limit: s.Limit,
			Used: s.Used, Reserved: s.Reserved, Remaining: s.Remaining, ResetsAt: s.ResetsAt})
	}
	tokens, requests, err := st.Engine.Usage(u.ID)
	if err != nil {
		return nil, storeError(err)
	}
	v.Used.Tokens, v.Used.Requests = countsOf(tokens), countsOf(requests)
	db, err := st.DB()
	if err != nil {
		return nil, storeError(err)
	}
	keys, err := db.KeysByUser(u.ID)
	if err != nil {
		return nil, storeError(err)
	}
	t := now()
	for i := range keys {
		v.Keys = append(v.Keys, keyView(&keys[i], t))
	}
	return v, nil
}

// listUsers answers GET /llm_gate/users?limit=&cursor=.
func (a *API) listUsers(w http.ResponseWriter, r *http.Request, _ []string) error {
	q, err := parseQuery(r, "limit", "cursor")
	if err != nil {
		return err
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	db, err := a.state().DB()
	if err != nil {
		return storeError(err)
	}
	users, next, err := db.ListUsers(q.get("cursor"), limit)
	if err != nil {
		return storeError(err)
	}
	return writeJSON(w, http.StatusOK, struct {
		Users      []store.User `json:"users"`
		NextCursor string       `json:"next_cursor"`
	}{users, next})
}

// getUser answers GET /llm_gate/users/{id}.
func (a *API) getUser(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := userID(p[0])
	if err != nil {
		return err
	}
	u, err := a.state().User(id)
	if err != nil {
		return storeError(err)
	}
	return a.writeUser(w, http.StatusOK, u)
}

// putUser answers PUT /llm_gate/users/{id}: create or replace. Absent
// fields inherit from the plan; the creation time of a replaced user stays.
func (a *API) putUser(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := userID(p[0])
	if err != nil {
		return err
	}
	change, err := a.parseUserBody(r)
	if err != nil {
		return err
	}
	u := &store.User{ID: id}
	change(u)
	if err := conflictingOverrides(u); err != nil {
		return err
	}
	u.Source = "admin"
	st := a.state()
	status := http.StatusOK
	if _, err := st.User(id); errors.Is(err, store.ErrNotFound) {
		status = http.StatusCreated
	} else if err != nil {
		return storeError(err)
	}
	if err := st.PutUser(u); err != nil {
		return storeError(err)
	}
	a.logger.Info("user stored", zap.String("user", id), zap.Bool("created", status == http.StatusCreated))
	return a.writeUser(w, status, u)
}

// patchUser answers PATCH /llm_gate/users/{id}: only the fields given
// change; null clears an override. The change is one transaction, so
// concurrent PATCHes of different fields all land.
func (a *API) patchUser(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := userID(p[0])
	if err != nil {
		return err
	}
	change, err := a.parseUserBody(r)
	if err != nil {
		return err
	}
	u, err := a.state().UpdateUser(id, func(u *store.User) error {
		change(u)
		return conflictingOverrides(u)
	})
	if err != nil {
		return storeError(err)
	}
	a.logger.Info("user updated", zap.String("user", id))
	return a.writeUser(w, http.StatusOK, u)
}

// conflictingOverrides refuses overrides that set one limit twice:
// token_limit per minute and tokens_per_minute (one would silently win).
func conflictingOverrides(u *store.User) error {
	if u.TokenLimit != nil && u.TokensPerMinute != nil && u.Period == "minute" {
		return apiErrorf(http.StatusBadRequest, "token_limit with period minute and tokens_per_minute both set the tokens per minute: give one of them (or clear the other with null)")
	}
	return nil
}

// deleteUser answers DELETE /llm_gate/users/{id}: the user and its windows
// go, its keys are revoked, its usage records stay.
func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := userID(p[0])
	if err != nil {
		return err
	}
	if err := a.state().DeleteUser(id); err != nil {
		return storeError(err)
	}
	a.logger.Info("user deleted", zap.String("user", id))
	return writeJSON(w, http.StatusOK, struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
	}{id, true})
}

// resetUser answers POST /llm_gate/users/{id}/reset: the user's usage in
// every window goes back to zero. Requests in flight keep their
// reservations.
func (a *API) resetUser(w http.ResponseWriter, r *http.Request, p []string) error {
	id, err := userID(p[0])
	if err != nil {
		return err
	}
	st := a.state()
	u, err := st.User(id)
	if err != nil {
		return storeError(err)
	}
	if err := st.Engine.Reset(id); err != nil {
		return storeError(err)
	}
	// Written before the answer: a crash right after it must not bring the
	// usage back. The reset holds in memory either way, so a failure
	// here is the store's, and asking again is safe.
	if err := st.Flush(); err != nil {
		return storeError(err)
	}
	a.logger.Info("user windows reset", zap.String("user", id))
	return a.writeUser(w, http.StatusOK, u)
}

// userField decodes one member of a PUT or PATCH body into a change; raw
// is never absent, and is "null" when the client sent null.
type userField func(a *API, raw json.RawMessage) (func(*store.User), error)

// userFields are the members a user body may hold.
var userFields = map[string]userField{
	"plan": func(a *API, raw json.RawMessage) (func(*store.User), error) {
		var name *string
		if err := json.Unmarshal(raw, &name); err != nil {
			return nil, fmt.Errorf("plan must be a string or null")
		}
		if name == nil || *name == "" {
			return func(u *store.User) { u.Plan = "" }, nil
		}
		if a.gateApp().Plan(*name) == nil {
			return nil, fmt.Errorf("unknown plan %q (configured plans: %s)", *name, planList(a.gateApp()))
		}
		// A plan the admin names outranks a JWT's plan claim, whoever
		// created the user.
		return func(u *store.User) { u.Plan, u.Source = *name, "admin" }, nil
	},
	"token_limit": int64Field("token_limit", func(u *store.User, v *int64) { u.TokenLimit = v }),
	"period": func(_ *API, raw json.RawMessage) (func(*store.User), error) {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("period must be a window name or null")
		}
		if s == nil || *s == "" {
			return func(u *store.User) { u.Period = "" }, nil
		}
		w, err := quota.ParseWindow(*s)
		if err != nil {
			return nil, fmt.Errorf("period: %w", err)
		}
		return func(u *store.User) { u.Period = w.String() }, nil
	},
	"tokens_per_minute":   int64Field("tokens_per_minute", func(u *store.User, v *int64) { u.TokensPerMinute = v }),
	"requests_per_minute": int64Field("requests_per_minute", func(u *store.User, v *int64) { u.RequestsPerMinute = v }),
	"max_parallel": func(_ *API, raw json.RawMessage) (func(*store.User), error) {
		var n *int
		if err := json.Unmarshal(raw, &n); err != nil || (n != nil && *n < 0) {
			return nil, fmt.Errorf("max_parallel must be a whole number >= 0 (0: no limit) or null")
		}
		return func(u *store.User) { u.MaxParallel = n }, nil
	},
	"models": func(_ *API, raw json.RawMessage) (func(*store.User), error) {
		var globs []string
		if err := json.Unmarshal(raw, &globs); err != nil {
			return nil, fmt.Errorf("models must be an array of model names or globs, or null")
		}
		for _, g := range globs {
			if err := gate.ValidModelGlob(g); err != nil {
				return nil, fmt.Errorf("models: bad glob %q: %v", g, err)
			}
		}
		if len(globs) == 0 {
			globs = nil // an empty list stores as no override
		}
		return func(u *store.User) { u.Models = slices.Clone(globs) }, nil
	},
	"disabled": func(_ *API, raw json.RawMessage) (func(*store.User), error) {
		var b *bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("disabled must be true, false or null")
		}
		return func(u *store.User) { u.Disabled = b != nil && *b }, nil
	},
}

// int64Field decodes a non-negative integer or null (clears the override).
func int64Field(name string, set func(*store.User, *int64)) userField {
	return func(_ *API, raw json.RawMessage) (func(*store.User), error) {
		var n *int64
		if err := json.Unmarshal(raw, &n); err != nil || (n != nil && *n < 0) {
			return nil, fmt.Errorf("%s must be a whole number >= 0 (0: no limit) or null", name)
		}
		return func(u *store.User) { set(u, n) }, nil
	}
}

// parseUserBody checks a PUT or PATCH body completely before anything is
// written, and returns the change it describes.
func (a *API) parseUserBody(r *http.Request) (func(*store.User), error) {
	m, err := decodeObject(r)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names) // deterministic errors
	var changes []func(*store.User)
	for _, name := range names {
		f := userFields[name]
		if f == nil {
			return nil, apiErrorf(http.StatusBadRequest, "unknown field %q (known: %s)", name, strings.Join(userFieldNames(), ", "))
		}
		c, err := f(a, m[name])
		if err != nil {
			return nil, apiErrorf(http.StatusBadRequest, "%v", err)
		}
		changes = append(changes, c)
	}
	return func(u *store.User) {
		for _, c := range changes {
			c(u)
		}
	}, nil
}

func userFieldNames() []string {
	names := make([]string, 0, len(userFields))
	for n := range userFields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func planList(app *gate.App) string {
	if names := app.PlanNames(); len(names) > 0 {
		return strings.Join(names, ", ")
	}
	return "none"
}

// writeUser answers with the user's full view.
func (a *API) writeUser(w http.ResponseWriter, status int, u *store.User) error {
	v, err := a.userView(u)
	if err != nil {
		return err
	}
	return writeJSON(w, status, v)
}
