package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
)

// Table is one scenario's results: a row per metric, a column per path.
type Table struct {
	Title   string
	Columns []string // the paths, in display order
	Rows    []*Row
	Notes   []string
}

// Row is one metric measured once per round on some of the table's paths.
type Row struct {
	Metric string
	// Vals holds each path's per-round values; a path the metric does not
	// apply to is absent.
	Vals map[string][]float64
	// Cmp compares two paths (gate vs plain) round by round.
	Cmp *Comparison
}

// Comparison is a derived per-round figure such as gate/plain or
// gate − plain, optionally held to a target.
type Comparison struct {
	Label string // "gate/plain", "gate − plain"
	Vals  []float64
	Goal  *Goal
}

// Goal is a pass/fail threshold applied to a comparison's median.
type Goal struct {
	Desc string // "≥ 0.95"
	OK   func(median float64) bool
}

// AtLeast is the goal "median ≥ v".
func AtLeast(v float64, unit string) *Goal {
	return &Goal{Desc: "≥ " + fmtNum(v) + unit, OK: func(m float64) bool { return m >= v }}
}

// AtMost is the goal "median ≤ v".
func AtMost(v float64, unit string) *Goal {
	return &Goal{Desc: "≤ " + fmtNum(v) + unit, OK: func(m float64) bool { return m <= v }}
}

// Verdict returns "PASS"/"FAIL" for the comparison's target, or "" when it
// has none ("n/a" when no round produced the figure).
func (c *Comparison) Verdict() string {
	if c == nil || c.Goal == nil {
		return ""
	}
	s := SpreadOf(c.Vals)
	if s.N == 0 {
		return "n/a"
	}
	if c.Goal.OK(s.Median) {
		return "PASS"
	}
	return "FAIL"
}

// Ratio builds the comparison a/b from two paths of row r.
func (r *Row) Ratio(a, b string, t *Goal) *Row {
	r.Cmp = &Comparison{Label: a + "/" + b, Vals: Ratios(r.Vals[a], r.Vals[b]), Goal: t}
	return r
}

// Delta builds the comparison a − b from two paths of row r.
func (r *Row) Delta(a, b string, t *Goal) *Row {
	r.Cmp = &Comparison{Label: a + " − " + b, Vals: Deltas(r.Vals[a], r.Vals[b]), Goal: t}
	return r
}

// fmtNum prints a figure with about three significant digits, without
// exponent notation.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "n/a"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a < 0.0005:
		return "0" // also for -0.0001, which would print as "-0.000"
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// fmtSpread prints "median (min…max)", or only the value when every round
// agreed or there was one round.
func fmtSpread(vals []float64) string {
	if len(vals) == 0 {
		return ""
	}
	s := SpreadOf(vals)
	if s.N == 0 {
		return "n/a"
	}
	med := fmtNum(s.Median)
	if s.N == 1 || fmtNum(s.Min) == fmtNum(s.Max) {
		return med
	}
	return fmt.Sprintf("%s (%s…%s)", med, fmtNum(s.Min), fmtNum(s.Max))
}

// Markdown renders the table with padded columns, readable as is in a
// terminal and as a table by any Markdown viewer.
func (t *Table) Markdown() string {
	header := append([]string{"metric"}, t.Columns...)
	header = append(header, "comparison", "target")
	rows := [][]string{header}
	for _, r := range t.Rows {
		cells := []string{r.Metric}
		for _, c := range t.Columns {
			cells = append(cells, fmtSpread(r.Vals[c]))
		}
		cmp, verdict := "", ""
		if r.Cmp != nil {
			cmp = r.Cmp.Label + ": " + fmtSpread(r.Cmp.Vals)
			if r.Cmp.Goal != nil {
				verdict = r.Cmp.Goal.Desc + " " + r.Cmp.Verdict()
			}
		}
		rows = append(rows, append(cells, cmp, verdict))
	}
	width := make([]int, len(header))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", t.Title)
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)))
		}
		b.WriteString("\n")
	}
	line(rows[0])
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range rows[1:] {
		line(r)
	}
	for _, n := range t.Notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return b.String()
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPU, Kernel, Go, Caddy string
	Cores                  int
	Date                   time.Time
}

// cpuModel returns the first "model name" of a /proc/cpuinfo text.
func cpuModel(cpuinfo []byte) string {
	for line := range bytes.Lines(cpuinfo) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(bytes.TrimSpace(k)) == "model name" {
			return string(bytes.TrimSpace(v))
		}
	}
	return "unknown"
}

// DetectMachine gathers the machine facts the report starts with.
func DetectMachine(caddyBin string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC(), CPU: "unknown", Kernel: "unknown", Caddy: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if caddyBin != "" {
		if out, err := exec.Command(caddyBin, "version").Output(); err == nil {
			if first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); first != "" {
				m.Caddy = first
			}
		}
	}
	return m
}

// Report is the whole run's output.
type Report struct {
	Machine  Machine
	Settings []string
	Tables   []*Table
	Errors   *ErrorLog
	Duration time.Duration
	Chart    string // file name of the latency chart, "" when none
	Failure  string // why the run stopped early, "" when it did not
}

// Verdicts lists every target with its verdict.
func (r *Report) Verdicts() (lines []string, failed int) {
	for _, t := range r.Tables {
		for _, row := range t.Rows {
			v := row.Cmp.Verdict()
			if v == "" {
				continue
			}
			if v != "PASS" {
				failed++
			}
			lines = append(lines, fmt.Sprintf("- %s — %s — %s %s: %s", v, t.Title, row.Metric, row.Cmp.Label, fmtSpread(row.Cmp.Vals)+" "+row.Cmp.Goal.Desc))
		}
	}
	return lines, failed
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# llm_gate benchmark\n\n")
	if r.Failure != "" {
		fmt.Fprintf(&b, "**INCOMPLETE: the run stopped early: %s**\n\n", r.Failure)
	}
	if n := r.Errors.Total(); n > 0 {
		fmt.Fprintf(&b, "**WARNING: this run had %d failed requests or streams; its figures are suspect (see Errors).**\n\n", n)
	}
	m := r.Machine
	fmt.Fprintf(&b, "- date: %s (run took %s)\n- CPU: %s, %d cores\n- kernel: %s\n- Go: %s\n- Caddy: %s\n",
		m.Date.Format(time.RFC3339), r.Duration.Round(time.Second), m.CPU, m.Cores, m.Kernel, m.Go, m.Caddy)
	for _, s := range r.Settings {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	b.WriteString("\nEvery figure is the median over rounds, with the smallest and largest round in parentheses. " +
		"The paths run in alternation within each round (the order rotates from round to round), so that a drift of the shared machine hits all of them alike; " +
		"comparisons are computed round by round and then summarised. " +
		"plain = Caddy with reverse_proxy only, gate = Caddy with llm_gate + reverse_proxy, direct = the emulator without Caddy. " +
		"CPU and memory are Caddy's own (from /proc), so direct has none.\n\n")
	lines, failed := r.Verdicts()
	if len(lines) > 0 {
		fmt.Fprintf(&b, "## Targets: %d of %d met\n\n%s\n\n", len(lines)-failed, len(lines), strings.Join(lines, "\n"))
	}
	b.WriteString("## Results\n\n")
	for _, t := range r.Tables {
		b.WriteString(t.Markdown())
		b.WriteString("\n")
	}
	if r.Chart != "" {
		fmt.Fprintf(&b, "![latency percentiles, non-streaming](%s)\n\n", r.Chart)
	}
	b.WriteString("## Errors\n\n")
	if el := r.Errors.Lines(); len(el) == 0 {
		b.WriteString("none\n")
	} else {
		for _, l := range el {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
}
