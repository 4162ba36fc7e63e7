package caddyfile

import (
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/tokenizer"
)

// windows are the words a limit may be counted per. The quota engine owns
// their meaning; the Caddyfile only has to refuse a typo at adapt time.
var windows = []string{"minute", "hour", "day", "week", "month", "total"}

// parseApp sets up the `llm_gate` app from the global option. Syntax:
//
//	llm_gate {
//		db <path>
//		flush_interval <duration>
//		retention <duration>
//		tokenizer <encoding>
//		plan <name> {
//			tokens <n> per <window>
//			requests <n> per <window>
//			max_parallel <n>
//			models <glob...>
//		}
//		default_plan <name>
//	}
//
// Only what is written reaches the JSON; the app applies defaults when it
// is provisioned.
func parseApp(d *caddyfile.Dispenser, existing any) (any, error) {
	d.Next() // consume option name
	if existing != nil {
		return nil, d.Err("llm_gate global option given twice; put all its settings in one block")
	}
	if d.NextArg() {
		return nil, d.Errf("llm_gate: unexpected argument %q; settings go in a block", d.Val())
	}

	var cfg gate.Config
	var defaultPlan *caddyfile.Token // checked once every plan is known
	single := once{}
	for d.NextBlock(0) {
		switch word := d.Val(); word {
		case "db":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			db, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			cfg.DB = db

		case "flush_interval":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			cfg.FlushInterval = &dur

		case "retention":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			cfg.Retention = &dur

		case "tokenizer":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			name, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if !tokenizer.Known(name) {
				return nil, d.Errf("tokenizer: unknown encoding %q; use one of %s",
					name, strings.Join(tokenizer.Encodings, ", "))
			}
			cfg.Tokenizer = name

		case "metrics_per_user":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			if err := noMore(d, word); err != nil {
				return nil, err
			}
			cfg.MetricsPerUser = true

		case "plan":
			if !d.NextArg() {
				return nil, d.Errf("plan: missing name")
			}
			name := d.Val()
			if _, dup := cfg.Plans[name]; dup {
				return nil, d.Errf("plan %q is defined twice", name)
			}
			if d.NextArg() {
				return nil, d.Errf("plan %s: unexpected extra argument %q; limits go in a block", name, d.Val())
			}
			plan, err := parsePlan(d, name)
			if err != nil {
				return nil, err
			}
			if cfg.Plans == nil {
				cfg.Plans = make(map[string]*gate.PlanConfig)
			}
			cfg.Plans[name] = plan

		case "default_plan":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			name, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			tok := d.Token()
			defaultPlan = &tok
			cfg.DefaultPlan = name

		default:
			return nil, d.Errf("unrecognized llm_gate option %q (known: db, flush_interval, retention, tokenizer, plan, default_plan, metrics_per_user)", word)
		}
	}

	// A default plan may be defined below the line naming it.
	if defaultPlan != nil && cfg.Plans[cfg.DefaultPlan] == nil {
		return nil, errAt(*defaultPlan, "default_plan %q is not defined; %s", cfg.DefaultPlan, definedPlans(cfg.Plans))
	}

	return httpcaddyfile.App{
		Name:  "llm_gate",
		Value: caddyconfig.JSON(gate.App{Config: cfg}, nil),
	}, nil
}

// parsePlan reads the block of `plan NAME { ... }`; the cursor is on NAME.
// A plan without a block has no limits.
func parsePlan(d *caddyfile.Dispenser, name string) (*gate.PlanConfig, error) {
	plan := new(gate.PlanConfig)
	single := once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch word := d.Val(); word {
		case "tokens", "requests":
			limits := &plan.Tokens
			if word == "requests" {
				limits = &plan.Requests
			}
			limit, err := parseWindowLimit(d, *limits)
			if err != nil {
				return nil, err
			}
			*limits = append(*limits, limit)

		case "max_parallel":
			if err := single.check(d, word); err != nil {
				return nil, err
			}
			n, err := countArg(d)
			if err != nil {
				return nil, err
			}
			if n > math.MaxInt32 {
				return nil, d.Errf("max_parallel: %d is too large", n)
			}
			plan.MaxParallel = int(n)

		case "models":
			globs, err := someArgs(d)
			if err != nil {
				return nil, err
			}
			for _, g := range globs {
				if err := gate.ValidModelGlob(g); err != nil {
					return nil, d.Errf("models: bad glob %q: %v (globs use path.Match syntax, where * and ? match / too, e.g. llama-* or meta-llama/*)", g, err)
				}
			}
			plan.Models = append(plan.Models, globs...)

		default:
			return nil, d.Errf("plan %s: unrecognized setting %q (known: tokens, requests, max_parallel, models)", name, word)
		}
	}
	return plan, nil
}

// parseWindowLimit reads `<n> per <window>` after tokens or requests;
// seen holds the limits of the same kind already in the plan.
func parseWindowLimit(d *caddyfile.Dispenser, seen []gate.WindowLimit) (gate.WindowLimit, error) {
	word := d.Val()
	args := d.RemainingArgs()
	if len(args) != 3 || args[1] != "per" {
		return gate.WindowLimit{}, d.Errf("%s: want '%s <n> per <window>', e.g. '%s 100000 per day'", word, word, word)
	}
	if err := noBlock(d, word); err != nil {
		return gate.WindowLimit{}, err
	}
	n, err := parseCount(args[0])
	if err != nil {
		return gate.WindowLimit{}, d.Errf("%s: %v", word, err)
	}
	window := args[2]
	if !slices.Contains(windows, window) {
		return gate.WindowLimit{}, d.Errf("%s: unknown window %q; windows are %s", word, window, strings.Join(windows, ", "))
	}
	for _, l := range seen {
		if l.Window == window {
			return gate.WindowLimit{}, d.Errf("%s per %s is given twice in this plan", word, window)
		}
	}
	return gate.WindowLimit{Window: window, Limit: n}, nil
}

// definedPlans says which plans exist, for messages about a plan that
// does not.
func definedPlans(plans map[string]*gate.PlanConfig) string {
	if len(plans) == 0 {
		return "no plans are defined; add 'plan <name> { ... }' to the global llm_gate option"
	}
	return "defined plans: " + strings.Join(slices.Sorted(maps.Keys(plans)), ", ")
}
