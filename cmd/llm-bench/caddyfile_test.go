package main

import (
	"regexp"
	"strings"
	"testing"
)

// blocks returns the top-level blocks of a Caddyfile: the text before each
// "{" at depth 0 mapped to the block's body.
func blocks(t *testing.T, cf string) map[string]string {
	t.Helper()
	out := map[string]string{}
	depth, start, head := 0, 0, ""
	for i, c := range cf {
		switch c {
		case '{':
			if depth == 0 {
				head = strings.TrimSpace(cf[start:i])
				start = i + 1
			}
			depth++
		case '}':
			depth--
			if depth < 0 {
				t.Fatalf("unbalanced braces:\n%s", cf)
			}
			if depth == 0 {
				out[head] = cf[start:i]
				start = i + 1
			}
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced braces:\n%s", cf)
	}
	return out
}

func TestCaddyfile(t *testing.T) {
	base := CaddyConfig{
		AdminPort: 2001, PlainPort: 2002, GatePort: 2003, Upstream: "127.0.0.1:2004",
		DB: "/tmp/x/caddy.db", FlushInterval: "1s", Secret: "0123456789abcdef0123456789abcdef", H2C: true, IdleConnsPerHost: 1000,
	}
	tests := []struct {
		name    string
		mod     func(*CaddyConfig)
		want    map[string][]string // block head → lines it must contain
		notWant map[string][]string
		sites   int
	}{
		{
			name: "plain and gate",
			mod:  func(*CaddyConfig) {},
			want: map[string][]string{
				"": {"admin 127.0.0.1:2001", "auto_https off", "protocols h1 h2c", "db /tmp/x/caddy.db", "flush_interval 1s",
					"plan bench {", "tokens 1000000000000000 per day", "default_plan bench", "level ERROR"},
				"http://127.0.0.1:2002": {"reverse_proxy 127.0.0.1:2004 {", "keepalive 2m", "keepalive_idle_conns_per_host 1000"},
				"http://127.0.0.1:2003": {"llm_gate {", "secret 0123456789abcdef0123456789abcdef", "api_keys", "plan bench",
					"reverse_proxy 127.0.0.1:2004 {", "keepalive 2m", "keepalive_idle_conns_per_host 1000"},
			},
			notWant: map[string][]string{
				"http://127.0.0.1:2002": {"llm_gate", "log"},
				"http://127.0.0.1:2003": {"log"},
			},
			sites: 2,
		},
		{
			name: "gate only, flush 0, HTTP/1.1 only",
			mod: func(c *CaddyConfig) {
				c.PlainPort, c.FlushInterval, c.H2C, c.IdleConnsPerHost = 0, "0", false, 0
			},
			want: map[string][]string{
				"":                      {"flush_interval 0"},
				"http://127.0.0.1:2003": {"llm_gate {", "keepalive_idle_conns_per_host 1"},
			},
			notWant: map[string][]string{"": {"protocols"}},
			sites:   1,
		},
		{
			name: "the gate's transport",
			mod:  func(c *CaddyConfig) { c.GateTransport = "llm_gate" },
			want: map[string][]string{
				"http://127.0.0.1:2002": {"transport http {"},
				"http://127.0.0.1:2003": {"transport llm_gate {", "keepalive_idle_conns_per_host 1000"},
			},
			notWant: map[string][]string{"http://127.0.0.1:2003": {"transport http"}},
		},
		{
			name: "paths with spaces are quoted",
			mod:  func(c *CaddyConfig) { c.DB = `/tmp/my dir/"q".db` },
			want: map[string][]string{"": {`db "/tmp/my dir/\"q\".db"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mod(&c)
			cf := c.Caddyfile()
			bl := blocks(t, cf)
			for head, lines := range tt.want {
				body, ok := bl[head]
				if !ok {
					t.Fatalf("no block %q in:\n%s", head, cf)
				}
				for _, l := range lines {
					if !strings.Contains(body, l) {
						t.Errorf("block %q lacks %q:\n%s", head, l, body)
					}
				}
			}
			for head, lines := range tt.notWant {
				for _, l := range lines {
					if regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(l) + `\b`).MatchString(bl[head]) {
						t.Errorf("block %q has %q:\n%s", head, l, bl[head])
					}
				}
			}
			if tt.sites > 0 && len(bl) != tt.sites+1 {
				t.Errorf("%d top-level blocks, want the global options and %d sites:\n%s", len(bl), tt.sites, cf)
			}
			// The two sites proxy the same way: only llm_gate (and the
			// gate's transport) differs.
			if c.PlainPort != 0 {
				plain := bl["http://127.0.0.1:2002"]
				gate := strings.Replace(bl["http://127.0.0.1:2003"], "transport llm_gate", "transport http", 1)
				if !strings.HasSuffix(gate, plain) {
					t.Errorf("the gate site does not end with the plain site's proxy block:\nplain:%s\ngate:%s", plain, gate)
				}
			}
		})
	}
}

func TestQuoteArg(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/a/b.db", "/a/b.db"},
		{"", `""`},
		{"a b", `"a b"`},
		{`a"b`, `"a\"b"`},
		{`a\b c`, `"a\\b c"`},
		{"{env.X}", `"{env.X}"`},
	} {
		if got := quoteArg(tt.in); got != tt.want {
			t.Errorf("quoteArg(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
