package gate

import (
	"github.com/caddyserver/caddy/v2"
)

// PlanConfig is a named plan: budgets, rate limits, parallelism and the
// models its users may call.
type PlanConfig struct {
	// Token limits: a budget per window (hour, day, week, month, total) or a
	// rate (minute, sliding). Each one is enforced.
	Tokens []WindowLimit `json:"tokens,omitempty"`
	// Request limits per window; `minute` is the usual one.
	Requests []WindowLimit `json:"requests,omitempty"`
	// How many requests of one user may run at once. 0 means no limit.
	MaxParallel int `json:"max_parallel,omitempty"`
	// Globs of the model names the plan allows (path.Match syntax, where *
	// and ? match '/' too, e.g. "llama-*" or "meta-llama/*"). Empty allows
	// every model.
	Models []string `json:"models,omitempty"`
}

// WindowLimit is "Limit per Window".
type WindowLimit struct {
	// minute, hour, day, week, month or total.
	Window string `json:"window"`
	// The limit; must be positive.
	Limit int64 `json:"limit"`
}

// Config is the JSON of the `llm_gate` app (the Caddyfile global option).
type Config struct {
	// Path of the bbolt file holding users, keys, counters and records.
	// Default: <Caddy data dir>/llm_gate/llm_gate.db.
	DB string `json:"db,omitempty"`
	// How often usage is committed to the file. 0 commits every request
	// before its response ends. Default: 1s.
	FlushInterval *caddy.Duration `json:"flush_interval,omitempty"`
	// How long per-request records are kept. Default: 90 days. 0 keeps them
	// forever.
	Retention *caddy.Duration `json:"retention,omitempty"`
	// The tiktoken encoding used to estimate prompts and count text when the
	// upstream reports no usage. Default: cl100k_base.
	Tokenizer string `json:"tokenizer,omitempty"`
	// Plans by name.
	Plans map[string]*PlanConfig `json:"plans,omitempty"`
	// The plan of users who have none of their own and whose site names
	// none. Default: no limits.
	DefaultPlan string `json:"default_plan,omitempty"`
	// Adds caddy_llm_gate_user_tokens_total{user,kind}, a series per user:
	// for small deployments only (the label set grows with the users).
	MetricsPerUser bool `json:"metrics_per_user,omitempty"`
}
