// Package gate is the `llm_gate` app: the per-process state every llm_gate
// handler and the admin API share (store, quota engine, caches, flusher), and
// the plans users are held to.
package gate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
	"github.com/llmgate/llmgate/tokenizer"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults of the app's settings.
const (
	DefaultFlushInterval = time.Second
	DefaultRetention     = 90 * 24 * time.Hour
)

// App is the `llm_gate` Caddy app. Every llm_gate handler and the admin API
// use the one app of their config; without a global `llm_gate` option it
// runs with defaults.
type App struct {
	Config

	state     *State
	flush     time.Duration
	retention time.Duration
	plans     map[string]*Plan
	tokenizer *tokenizer.Tokenizer
	logger    *zap.Logger
}

// Plan is a compiled plan.
type Plan struct {
	Name   string
	Limits quota.Limits
	Models []string
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm_gate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision compiles the plans, loads the tokenizer and joins (or creates)
// the process-wide state of the DB file. It never opens the file.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := a.compile(); err != nil {
		return err
	}
	tok, err := tokenizer.Get(a.Tokenizer)
	if err != nil {
		return err
	}
	a.tokenizer = tok
	if a.DB == "" {
		a.DB = filepath.Join(caddy.AppDataDir(), "llm_gate", "llm_gate.db")
	}
	// {env.*} and {file.*}, as secret and public_key take them: left as
	// they are, a placeholder would name a directory of its own, and a
	// store opened from another working directory would start empty.
	db, err := caddy.NewReplacer().ReplaceOrErr(a.DB, true, true)
	if err != nil {
		return fmt.Errorf("llm_gate: db %q: %w", a.DB, err)
	}
	if abs, err := filepath.Abs(db); err == nil {
		db = abs
	}
	if fi, err := os.Stat(db); err == nil && fi.IsDir() {
		return fmt.Errorf("llm_gate: db %s is a directory: name the bbolt file in it (say %s)", db, filepath.Join(db, "llm_gate.db"))
	}
	if err := creatableDir(filepath.Dir(db)); err != nil {
		return fmt.Errorf("llm_gate: db %s cannot be created: %w", db, err)
	}
	a.DB = db
	flush, retention := DefaultFlushInterval, DefaultRetention
	if a.FlushInterval != nil {
		flush = time.Duration(*a.FlushInterval)
	}
	if a.Retention != nil {
		retention = time.Duration(*a.Retention)
	}
	if flush < 0 || retention < 0 {
		return fmt.Errorf("llm_gate: flush_interval and retention must not be negative")
	}
	v, _, err := statePool.LoadOrNew(a.DB, func() (caddy.Destructor, error) {
		return newState(a.DB, a.logger), nil
	})
	if err != nil {
		return err
	}
	a.state = v.(*State)
	// Applied in Start: a reload refused after this (another module's
	// error) must leave the running config's settings as they are.
	a.flush, a.retention = flush, retention
	return nil
}

func (a *App) compile() error {
	a.plans = make(map[string]*Plan, len(a.Plans))
	for name, pc := range a.Plans {
		if pc == nil {
			return fmt.Errorf("llm_gate: plan %q is empty", name)
		}
		p := &Plan{Name: name, Limits: quota.Limits{MaxParallel: pc.MaxParallel}, Models: pc.Models}
		for kind, limits := range map[string][]WindowLimit{"tokens": pc.Tokens, "requests": pc.Requests} {
			for _, wl := range limits {
				w, err := quota.ParseWindow(wl.Window)
				if err != nil {
					return fmt.Errorf("llm_gate: plan %q: %w", name, err)
				}
				if wl.Limit <= 0 {
					return fmt.Errorf("llm_gate: plan %q: %s per %s must be positive", name, kind, wl.Window)
				}
				lims := &p.Limits.Tokens
				if kind == "requests" {
					lims = &p.Limits.Requests
				}
				if lims[w] != 0 { // "day" and "Day" are one window: one would silently win
					return fmt.Errorf("llm_gate: plan %q: %s per %s is given twice", name, kind, w)
				}
				lims[w] = wl.Limit
			}
		}
		for _, g := range pc.Models {
			if err := ValidModelGlob(g); err != nil {
				return fmt.Errorf("llm_gate: plan %q: bad model glob %q: %w", name, g, err)
			}
		}
		if p.Limits.MaxParallel < 0 {
			return fmt.Errorf("llm_gate: plan %q: max_parallel must not be negative", name)
		}
		a.plans[name] = p
	}
	if a.DefaultPlan != "" && a.plans[a.DefaultPlan] == nil {
		return fmt.Errorf("llm_gate: default_plan %q is not a defined plan (defined: %v)", a.DefaultPlan, a.PlanNames())
	}
	return nil
}

// Start opens the store, so that a file that cannot be used (locked by
// another process, damaged, of a newer version) stops the config from
// loading with its reason rather than failing requests later, applies the
// settings and launches the background writer. (Provision must not open
// it: `caddy validate` provisions too, and would wait on a running
// server's lock.)
func (a *App) Start() error {
	if _, err := a.state.DB(); err != nil {
		return err
	}
	a.state.configure(a.flush, a.retention)
	a.state.start()
	return nil
}

// Stop commits all pending usage: a graceful stop or reload loses nothing.
func (a *App) Stop() error {
	return a.state.Flush()
}

// Cleanup lets go of the shared state; the last one out closes the file.
func (a *App) Cleanup() error {
	if a.state == nil {
		return nil
	}
	_, err := statePool.Delete(a.DB)
	return err
}

// State is the process-wide state behind this app.
func (a *App) State() *State { return a.state }

// Counter is the configured tokenizer.
func (a *App) Counter() *tokenizer.Tokenizer { return a.tokenizer }

// Logger is the app's logger.
func (a *App) Logger() *zap.Logger { return a.logger }

// Plan returns the named plan, or nil.
func (a *App) Plan(name string) *Plan { return a.plans[name] }

// PlanNames lists the plans, sorted.
func (a *App) PlanNames() []string {
	names := make([]string, 0, len(a.plans))
	for n := range a.plans {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Effective is what a user is held to after every override is applied.
type Effective struct {
	Plan   string
	Limits quota.Limits
	Models []string
}

// Claims are the plan and budget a JWT asserted.
type Claims struct {
	Plan     string
	Limit    int64
	HasLimit bool
}

// Resolve works out a user's plan and limits. Precedence, highest first:
// the admin's overrides on the user, the JWT's claims, the user's stored
// plan, the site's plan, default_plan. An unknown plan name resolves to no
// limits only if no known one is found further down.
func (a *App) Resolve(u *store.User, sitePlan string, c Claims) Effective {
	var adminPlan, userPlan string
	if u != nil {
		userPlan = u.Plan
		if u.Source == "admin" {
			adminPlan = u.Plan
		}
	}
	var e Effective
	for _, n := range [...]string{adminPlan, c.Plan, userPlan, sitePlan, a.DefaultPlan} {
		if p := a.plans[n]; p != nil {
			e = Effective{Plan: n, Limits: p.Limits, Models: p.Models}
			break
		}
	}
	if c.HasLimit {
		e.Limits.Tokens[budgetWindow(e.Limits, quota.Day)] = c.Limit
	}
	if u == nil {
		return e
	}
	if u.TokenLimit != nil {
		w := budgetWindow(e.Limits, quota.Day)
		if pw, err := quota.ParseWindow(u.Period); u.Period != "" && err == nil {
			w = pw
		}
		e.Limits.Tokens[w] = *u.TokenLimit
	}
	if u.TokensPerMinute != nil {
		e.Limits.Tokens[quota.Minute] = *u.TokensPerMinute
	}
	if u.RequestsPerMinute != nil {
		e.Limits.Requests[quota.Minute] = *u.RequestsPerMinute
	}
	if u.MaxParallel != nil {
		e.Limits.MaxParallel = *u.MaxParallel
	}
	if u.Models != nil {
		e.Models = u.Models
	}
	return e
}

// budgetWindow is the plan's largest budget window (the one limit_claim and
// token_limit override), or def when the plan has no budget.
func budgetWindow(l quota.Limits, def quota.Window) quota.Window {
	for w := quota.Total; w > quota.Minute; w-- {
		if l.Tokens[w] > 0 {
			return w
		}
	}
	return def
}

// ModelAllowed reports whether model matches one of the globs (see
// MatchModel); no globs allow every model.
func ModelAllowed(globs []string, model string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if MatchModel(g, model) {
			return true
		}
	}
	return false
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Destructor   = (*State)(nil)
)

// creatableDir reports why dir can neither be used nor created (the store
// creates what is missing when it opens): an ancestor that is a file, or
// one that cannot be looked at. caddy validate then says so, not the start.
func creatableDir(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s is a file, not a directory", p)
		case err == nil:
			return nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR): // ENOTDIR: a file above p
			return err
		case filepath.Dir(p) == p:
			return nil
		}
	}
}
