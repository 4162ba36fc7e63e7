package main

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestFmtNum(t *testing.T) {
	for _, tt := range []struct {
		in   float64
		want string
	}{
		{math.NaN(), "n/a"}, {0, "0"}, {1234.4, "1234"}, {-250, "-250"}, {99.94, "99.9"}, {12.345, "12.3"},
		{1, "1.00"}, {9.999, "10.00"}, {0.95, "0.950"}, {-0.0123, "-0.012"}, {-0.0001, "0"}, {0.0004, "0"},
	} {
		if got := fmtNum(tt.in); got != tt.want {
			t.Errorf("fmtNum(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFmtSpread(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want string
	}{
		{nil, ""},
		{[]float64{math.NaN()}, "n/a"},
		{[]float64{5}, "5.00"},
		{[]float64{5, 5.001}, "5.00"},
		{[]float64{300, 100, 200}, "200 (100…300)"},
	} {
		if got := fmtSpread(tt.in); got != tt.want {
			t.Errorf("fmtSpread(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name string
		cmp  *Comparison
		want string
	}{
		{"no comparison", nil, ""},
		{"no goal", &Comparison{Vals: []float64{1}}, ""},
		{"median passes although one round fails", &Comparison{Vals: []float64{0.9, 0.97, 0.99}, Goal: AtLeast(0.95, "")}, "PASS"},
		{"median fails", &Comparison{Vals: []float64{0.9, 0.93, 0.99}, Goal: AtLeast(0.95, "")}, "FAIL"},
		{"at most, boundary passes", &Comparison{Vals: []float64{50}, Goal: AtMost(50, " µs")}, "PASS"},
		{"at most fails", &Comparison{Vals: []float64{51}, Goal: AtMost(50, " µs")}, "FAIL"},
		{"no data", &Comparison{Vals: []float64{math.NaN()}, Goal: AtMost(50, "")}, "n/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cmp.Verdict(); got != tt.want {
				t.Errorf("Verdict = %q, want %q", got, tt.want)
			}
		})
	}
	if d := AtMost(50, " µs").Desc; d != "≤ 50.0 µs" {
		t.Errorf("AtMost desc %q", d)
	}
}

func sampleTable() *Table {
	vals := map[string][]float64{"plain": {1000, 1100, 900}, "gate": {960, 1000, 950}, "direct": {3000, 3100, 2900}}
	return &Table{
		Title:   "Sample",
		Columns: []string{"plain", "gate", "direct"},
		Rows: []*Row{
			(&Row{Metric: "throughput (req/s)", Vals: vals}).Ratio("gate", "plain", AtLeast(0.95, "")),
			(&Row{Metric: "latency p50 (µs)", Vals: map[string][]float64{"plain": {100, 100, 100}, "gate": {190, 200, 210}}}).Delta("gate", "plain", AtMost(50, " µs")),
			{Metric: "errors", Vals: map[string][]float64{"plain": {0, 0, 0}}},
		},
		Notes: []string{"A note."},
	}
}

func TestTableMarkdown(t *testing.T) {
	md := sampleTable().Markdown()
	lines := strings.Split(strings.TrimSpace(md), "\n")
	if lines[0] != "### Sample" {
		t.Fatalf("first line %q", lines[0])
	}
	// Header, separator, three rows, all the same display width.
	var rows []string
	for _, l := range lines {
		if strings.HasPrefix(l, "|") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 5 {
		t.Fatalf("%d table lines, want 5:\n%s", len(rows), md)
	}
	w := len([]rune(rows[0]))
	for _, r := range rows {
		if len([]rune(r)) != w {
			t.Errorf("ragged table line %q", r)
		}
	}
	for _, want := range []string{
		"| throughput (req/s) | 1000 (900…1100)",
		"gate/plain: 0.960 (0.909…1.06)", "≥ 0.950 PASS",
		"gate − plain: 100 (90.0…110)", "≤ 50.0 µs FAIL",
		"A note.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReportMarkdown(t *testing.T) {
	var errs ErrorLog
	rep := &Report{
		Machine:  Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.0", Go: "go1.26", Caddy: "v2.11.9", Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		Settings: []string{"mode: test"},
		Tables:   []*Table{sampleTable()},
		Errors:   &errs,
		Duration: 90 * time.Second,
		Chart:    "latency.png",
	}
	md := rep.Markdown()
	for _, want := range []string{"Test CPU, 2 cores", "go1.26", "v2.11.9", "2026-01-02T03:04:05Z", "mode: test",
		"## Targets: 1 of 2 met", "- PASS — Sample — throughput (req/s)", "- FAIL — Sample — latency p50 (µs)",
		"![latency percentiles, non-streaming](latency.png)", "## Errors\n\nnone"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "WARNING") || strings.Contains(md, "INCOMPLETE") {
		t.Errorf("clean report flagged:\n%s", md)
	}
	errs.Add("nonstream gate", errors.New("status 500: boom"))
	errs.Add("nonstream gate", errors.New("status 500: boom"))
	rep.Failure = "scenario users: no admin API"
	md = rep.Markdown()
	for _, want := range []string{"WARNING: this run had 2 failed", "INCOMPLETE: the run stopped early: scenario users", "- 2 × nonstream gate: status 500: boom"} {
		if !strings.Contains(md, want) {
			t.Errorf("flagged report lacks %q:\n%s", want, md)
		}
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel([]byte(info)); got != "AMD EPYC 7B13 64-Core Processor" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel([]byte("processor : 0\n")); got != "unknown" {
		t.Errorf("cpuModel without model name = %q", got)
	}
}

func TestDetectMachine(t *testing.T) {
	m := DetectMachine("/nonexistent/caddy")
	if m.Cores < 1 || !strings.HasPrefix(m.Go, "go") || m.Caddy != "unknown" || m.CPU == "" {
		t.Errorf("DetectMachine = %+v", m)
	}
	// Any program printing a first line works as "caddy version".
	if m := DetectMachine("/bin/echo"); m.Caddy != "version" {
		t.Errorf("caddy version via echo = %q", m.Caddy)
	}
}

func TestErrorLog(t *testing.T) {
	var e ErrorLog
	if e.Total() != 0 || len(e.Lines()) != 0 {
		t.Fatal("zero ErrorLog not empty")
	}
	e.Add("b", errors.New("x"))
	e.Add("a", errors.New("y"))
	e.Add("b", errors.New("x"))
	e.Add("a", errors.New(strings.Repeat("z", 300)))
	lines := e.Lines()
	if e.Total() != 4 || len(lines) != 3 {
		t.Fatalf("total %d, lines %q", e.Total(), lines)
	}
	if lines[0] != "2 × b: x" || lines[1] != "1 × a: y" {
		t.Errorf("lines not most frequent first, then by name: %q", lines)
	}
	if !strings.HasSuffix(lines[2], "…") || len([]rune(lines[2])) > 220 {
		t.Errorf("long message not truncated: %q", lines[2])
	}
}
