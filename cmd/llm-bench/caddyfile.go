package main

import (
	"fmt"
	"strings"
)

// benchPlan is the plan every benchmark user gets: budgets so large that no
// request is ever refused, so the gate does all its work (identify, count,
// reserve, settle, record) without a 429 cutting a measurement short.
const benchPlan = "bench"

// CaddyConfig describes one Caddy process of the benchmark.
type CaddyConfig struct {
	AdminPort int
	// PlainPort, when not 0, serves a site that is nothing but
	// reverse_proxy: the baseline the gate is compared with.
	PlainPort int
	// GatePort serves llm_gate + reverse_proxy.
	GatePort int
	// Upstream is the emulator's host:port.
	Upstream string
	// DB is the bbolt file of the llm_gate app.
	DB string
	// FlushInterval is the app's flush_interval ("1s", "0").
	FlushInterval string
	// Secret is the HS256 secret the gate verifies JWTs with.
	Secret string
	// H2C lets the sites speak HTTP/2 over cleartext TCP (prior
	// knowledge) besides HTTP/1.1.
	H2C bool
	// IdleConnsPerHost is how many idle upstream connections Caddy keeps;
	// its default (32) would make every burst of streams redial most of
	// its upstream connections.
	IdleConnsPerHost int
	// GateTransport is the gate site's reverse_proxy transport: llm_gate
	// or http (the default; plain's is always http).
	GateTransport string
}

// Caddyfile renders c. Both sites use the same reverse_proxy block but for
// its transport (GateTransport on the gate's), so that otherwise the only
// difference between them is the llm_gate directive. Access logs
// are off (no `log` directive) and the default logger only reports errors,
// so logging costs nothing on the measured path.
func (c CaddyConfig) Caddyfile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n", c.AdminPort)
	b.WriteString("\tlog {\n\t\tlevel ERROR\n\t}\n")
	if c.H2C {
		b.WriteString("\tservers {\n\t\tprotocols h1 h2c\n\t}\n")
	}
	fmt.Fprintf(&b, "\tllm_gate {\n\t\tdb %s\n\t\tflush_interval %s\n", quoteArg(c.DB), c.FlushInterval)
	// One quadrillion tokens a day: never reached, but a real budget, so
	// every request is reserved and settled against a window.
	fmt.Fprintf(&b, "\t\tplan %s {\n\t\t\ttokens 1000000000000000 per day\n\t\t}\n", benchPlan)
	fmt.Fprintf(&b, "\t\tdefault_plan %s\n\t}\n}\n", benchPlan)

	// Every transport keeps idle connections 2 minutes (http's default;
	// transport llm_gate's is 4 s, below vLLM's 5 s, which the bench's
	// emulator does not apply: -keep-alive 0), so that every path keeps its
	// connections between rounds alike.
	proxy := func(transport string) string {
		return fmt.Sprintf("\treverse_proxy %s {\n\t\ttransport %s {\n\t\t\tkeepalive 2m\n\t\t\tkeepalive_idle_conns_per_host %d\n\t\t}\n\t}\n",
			c.Upstream, transport, max(c.IdleConnsPerHost, 1))
	}
	if c.PlainPort != 0 {
		fmt.Fprintf(&b, "\nhttp://127.0.0.1:%d {\n%s}\n", c.PlainPort, proxy("http"))
	}
	fmt.Fprintf(&b, "\nhttp://127.0.0.1:%d {\n", c.GatePort)
	fmt.Fprintf(&b, "\tllm_gate {\n\t\tjwt {\n\t\t\tsecret %s\n\t\t}\n\t\tapi_keys\n\t\tplan %s\n\t}\n", quoteArg(c.Secret), benchPlan)
	gt := c.GateTransport
	if gt == "" {
		gt = "http"
	}
	fmt.Fprintf(&b, "%s}\n", proxy(gt))
	return b.String()
}

// quoteArg quotes a Caddyfile argument when it holds characters the
// Caddyfile lexer would split or interpret (a temp dir with a space).
func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\"'`{}#\\") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
