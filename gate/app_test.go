package gate

import (
	"testing"

	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

func testApp(t *testing.T) *App {
	t.Helper()
	a := &App{Config: Config{
		Plans: map[string]*PlanConfig{
			"free": {Tokens: []WindowLimit{{"day", 1000}, {"minute", 100}}, Requests: []WindowLimit{{"minute", 10}}, Models: []string{"llama-*"}},
			"pro":  {Tokens: []WindowLimit{{"month", 50000}}, MaxParallel: 4},
		},
		DefaultPlan: "free",
	}}
	if err := a.compile(); err != nil {
		t.Fatal(err)
	}
	return a
}

func ptr[T any](v T) *T { return &v }

// TestResolvePrecedence: admin overrides > JWT claims > stored plan > site
// plan > default_plan.
func TestResolvePrecedence(t *testing.T) {
	a := testApp(t)
	cases := []struct {
		name       string
		user       *store.User
		site       string
		claims     Claims
		plan       string
		day, month int64
		minute     int64
		parallel   int
		models     int
	}{
		{"default plan", nil, "", Claims{}, "free", 1000, 0, 100, 0, 1},
		{"site plan", nil, "pro", Claims{}, "pro", 0, 50000, 0, 4, 0},
		{"claim beats site", nil, "free", Claims{Plan: "pro"}, "pro", 0, 50000, 0, 4, 0},
		{"unknown claim falls through", nil, "pro", Claims{Plan: "gold"}, "pro", 0, 50000, 0, 4, 0},
		{"limit claim overrides the largest budget", nil, "pro", Claims{Limit: 777, HasLimit: true}, "pro", 0, 777, 0, 4, 0},
		{"jwt user: claim beats stored plan", &store.User{ID: "u", Plan: "free", Source: "jwt"}, "", Claims{Plan: "pro"}, "pro", 0, 50000, 0, 4, 0},
		{"admin plan beats claim", &store.User{ID: "u", Plan: "free", Source: "admin"}, "", Claims{Plan: "pro"}, "free", 1000, 0, 100, 0, 1},
		{"admin token_limit beats limit claim", &store.User{ID: "u", Source: "admin", TokenLimit: ptr(int64(5)), Period: "day"}, "free", Claims{Limit: 9, HasLimit: true}, "free", 5, 0, 100, 0, 1},
		{"admin overrides per field", &store.User{ID: "u", Source: "admin", Plan: "pro", TokensPerMinute: ptr(int64(30)), MaxParallel: ptr(2), Models: []string{}}, "", Claims{}, "pro", 0, 50000, 30, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := a.Resolve(c.user, c.site, c.claims)
			if e.Plan != c.plan || e.Limits.Tokens[quota.Day] != c.day || e.Limits.Tokens[quota.Month] != c.month ||
				e.Limits.Tokens[quota.Minute] != c.minute || e.Limits.MaxParallel != c.parallel || len(e.Models) != c.models {
				t.Fatalf("got plan %q limits %+v models %v", e.Plan, e.Limits, e.Models)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"bad window":       {Plans: map[string]*PlanConfig{"p": {Tokens: []WindowLimit{{"fortnight", 1}}}}},
		"zero limit":       {Plans: map[string]*PlanConfig{"p": {Requests: []WindowLimit{{"minute", 0}}}}},
		"bad glob":         {Plans: map[string]*PlanConfig{"p": {Models: []string{"["}}}},
		"unknown default":  {DefaultPlan: "nope"},
		"empty plan":       {Plans: map[string]*PlanConfig{"p": nil}},
		"negative max_par": {Plans: map[string]*PlanConfig{"p": {MaxParallel: -1}}},
		"window twice":     {Plans: map[string]*PlanConfig{"p": {Tokens: []WindowLimit{{"day", 1000}, {"Day", 999999999}}}}},
	} {
		a := &App{Config: cfg}
		if err := a.compile(); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}

func TestModelAllowed(t *testing.T) {
	if !ModelAllowed(nil, "x") || !ModelAllowed([]string{"llama-*"}, "llama-3") || ModelAllowed([]string{"llama-*"}, "qwen") {
		t.Fatal("ModelAllowed")
	}
}

func TestMatchModel(t *testing.T) {
	for _, c := range []struct {
		glob, model string
		want        bool
	}{
		{"*", "meta-llama/Llama-3.1-8B-Instruct", true},
		{"*Llama*", "meta-llama/Llama-3.1-8B-Instruct", true},
		{"meta-llama/*", "meta-llama/Llama-3.1-8B-Instruct", true},
		{"meta-llama/*", "Qwen/Qwen3-8B", false},
		{"meta-llama?Llama*", "meta-llama/Llama-3", true},
		{`meta-llama\/*`, "meta-llama/Llama-3", true},
		{"meta-llama[/]*", "meta-llama/Llama-3", true},
		{"llama-*", "llama-3", true},
		{"llama-*", "meta-llama/llama-3", false},
		{"qwen-?", "qwen-22", false},
		{"*", "a\x00b", false},
		{"[", "[", false},
	} {
		if got := MatchModel(c.glob, c.model); got != c.want {
			t.Errorf("MatchModel(%q, %q) = %v", c.glob, c.model, got)
		}
	}
	for g, ok := range map[string]bool{"*": true, "meta-llama/*": true, "": false, "[": false, `a\`: false, "a\x00": false} {
		if err := ValidModelGlob(g); (err == nil) != ok {
			t.Errorf("ValidModelGlob(%q) = %v", g, err)
		}
	}
}
