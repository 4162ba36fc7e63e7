package caddyfile

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestParseCount(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // 0: an error is wanted
	}{
		{"1", 1},
		{"4096", 4096},
		{"007", 7},
		{"100k", 100000},
		{"100K", 100000},
		{"2.5M", 2500000},
		{"1.25k", 1250},
		{"0.001k", 1},
		{"1G", 1000000000},
		{"1.000000001G", 1000000001},
		{"9223372036854775807", 9223372036854775807},
		{"9223372036.854775807G", 9223372036854775807},
		{"9223372036.854775808G", 0}, // one past MaxInt64
		{"9223372036854775808", 0},
		{"9223372037G", 0},
		{"0", 0},
		{"0k", 0},
		{"0.0M", 0},
		{"", 0},
		{"k", 0},
		{".5k", 0},
		{"5.k", 0},
		{"1.5", 0},
		{"1.0001k", 0},
		{"-5", 0},
		{"+5", 0},
		{"1_000", 0},
		{"1,000", 0},
		{" 1", 0},
		{"1m", 0}, // m would read as milli or minute: refused
		{"1T", 0},
		{"1kk", 0},
		{"1.2.3M", 0},
	}
	for _, tt := range tests {
		got, err := parseCount(tt.in)
		switch {
		case tt.want == 0 && err == nil:
			t.Errorf("parseCount(%q) = %d, want an error", tt.in, got)
		case tt.want != 0 && (err != nil || got != tt.want):
			t.Errorf("parseCount(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestHasPlaceholder(t *testing.T) {
	for s, want := range map[string]bool{
		"{env.X}":        true,
		"pre{env.X}post": true,
		"{file./a/b}":    true,
		"{}":             false,
		"{":              false,
		"}{":             false,
		"plain":          false,
	} {
		if got := hasPlaceholder(s); got != want {
			t.Errorf("hasPlaceholder(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzParseCount checks parseCount's contract on any input: it never
// panics, what it accepts is positive, and plain digits mean what
// strconv says.
func FuzzParseCount(f *testing.F) {
	for _, s := range []string{"1", "100k", "2.5M", "1G", "0", "-1", "1.5", "9223372036.854775807G", "99999999999G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseCount(s)
		if err != nil {
			return
		}
		if n <= 0 {
			t.Fatalf("parseCount(%q) = %d, accepted but not positive", s, n)
		}
		if allDigits(s) {
			if want, _ := strconv.ParseInt(s, 10, 64); n != want {
				t.Fatalf("parseCount(%q) = %d, want %d", s, n, want)
			}
		}
		if strings.ContainsAny(s, "+- _,") {
			t.Fatalf("parseCount(%q) accepted a sign or separator", s)
		}
		// The canonical form of what was accepted reads back the same.
		if back, err := parseCount(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("parseCount(%d) = %d, %v", n, back, err)
		}
	})
}

// FuzzHandlerBlock adapts arbitrary text as the body of a site's llm_gate
// block. Whatever it is, adapting must not panic, and a config that adapts
// must never carry the two things the directive exists to refuse: a short
// literal HMAC secret and the algorithm none.
func FuzzHandlerBlock(f *testing.F) {
	for _, s := range []string{
		"",
		"jwt {\nsecret " + secret32 + "\nalgorithms HS256\n}",
		"jwt {\nsecret short\n}",
		"jwt {\njwks https://i/j\nalgorithms none\n}",
		"api_keys off\nusage_chunk forward\nreserve_output 2k\nmax_body_size 1MiB",
		"jwt {\n}",
		"jwt {\nsecret {env.S}\n}\njwt {\nsecret x\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		a, err := adapt(site("", body))
		if err != nil {
			return
		}
		for _, raw := range a.handlers {
			var h struct {
				Handler string `json:"handler"`
				JWT     *struct {
					Secrets    []string `json:"secrets"`
					Algorithms []string `json:"algorithms"`
				} `json:"jwt"`
			}
			if err := json.Unmarshal(raw, &h); err != nil {
				t.Fatal(err)
			}
			if h.Handler != "llm_gate" || h.JWT == nil {
				continue
			}
			for _, s := range h.JWT.Secrets {
				if len(s) < minSecret && !hasPlaceholder(s) {
					t.Fatalf("short secret %q adapted from %q", s, body)
				}
			}
			for _, alg := range h.JWT.Algorithms {
				if strings.EqualFold(alg, "none") {
					t.Fatalf("algorithm none adapted from %q", body)
				}
			}
		}
	})
}

func BenchmarkParseCount(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseCount("2.5M"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdaptSpecExample measures `caddy adapt` of the SPEC example,
// standard Caddy work included.
func BenchmarkAdaptSpecExample(b *testing.B) {
	src := strings.Replace(specExample, "/etc/caddy/jwt.pem", writePublicKey(b), 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := adapt(src); err != nil {
			b.Fatal(err)
		}
	}
}
