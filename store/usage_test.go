package store

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// expectUsage computes Usage's answer straight from the records, without
// aggregates, as the reference.
func expectUsage(recs []Record, q UsageQuery) []UsageRow {
	rows := map[string]*UsageRow{}
	for _, r := range recs {
		hour := r.Time.UTC().Truncate(time.Hour)
		if q.User != "" && r.User != q.User || q.Model != "" && r.Model != q.Model {
			continue
		}
		if !q.Since.IsZero() && hour.Before(q.Since.Truncate(time.Hour)) {
			continue
		}
		if !q.Until.IsZero() && !hour.Before(q.Until) {
			continue
		}
		var row UsageRow
		for _, g := range q.GroupBy {
			switch strings.TrimSpace(strings.ToLower(g)) {
			case "user":
				row.User = r.User
			case "model":
				row.Model = r.Model
			case "day":
				row.Day = hour.Format("2006-01-02")
			case "hour":
				row.Hour = hour.Format(time.RFC3339)
			}
		}
		id := fmt.Sprint(row.User, "\x00", row.Model, "\x00", row.Day, "\x00", row.Hour)
		p := rows[id]
		if p == nil {
			p = &row
			rows[id] = p
		}
		p.Requests++
		p.PromptTokens += r.PromptTokens
		p.CompletionTokens += r.CompletionTokens
		p.TotalTokens += r.PromptTokens + r.CompletionTokens
		p.CachedTokens += r.CachedTokens
		if r.Estimated {
			p.EstimatedRequests++
		}
	}
	out := []UsageRow{}
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b UsageRow) int {
		for _, g := range q.GroupBy {
			var x, y string
			switch strings.TrimSpace(strings.ToLower(g)) {
			case "user":
				x, y = a.User, b.User
			case "model":
				x, y = a.Model, b.Model
			case "day":
				x, y = a.Day, b.Day
			case "hour":
				x, y = a.Hour, b.Hour
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
		return 0
	})
	return out
}

// subsets returns every subset of words, in every rotation of its order,
// so both the grouping and the sort order are checked.
func subsets(words []string) [][]string {
	var out [][]string
	for mask := 0; mask < 1<<len(words); mask++ {
		var set []string
		for i, w := range words {
			if mask&(1<<i) != 0 {
				set = append(set, w)
			}
		}
		out = append(out, set)
		for r := 1; r < len(set); r++ {
			out = append(out, append(slices.Clone(set[r:]), set[:r]...))
		}
	}
	return out
}

func TestUsageGrouping(t *testing.T) {
	s := newStore(t)
	r := rand.New(rand.NewPCG(7, 8))
	users := []string{"alice", "al", "bob", "carol"}
	models := []string{"llama-8b", "llama-70b", "qwen"}
	// Three days around t0, over midnight boundaries.
	recs := genRecords(r, 3000, users, models, 72*time.Hour)
	commitAll(t, s, recs, 250)

	filters := []UsageQuery{
		{},
		{User: "alice"},
		{User: "al"}, // a prefix of alice
		{Model: "qwen"},
		{User: "bob", Model: "llama-70b"},
		{User: "nobody"},
		{Since: t0.Add(-25 * time.Hour)}, // mid-hour: includes its hour
		{Until: t0.Add(-12*time.Hour - 15*time.Minute)},                               // mid-hour: includes its hour
		{Since: t0.Truncate(time.Hour), Until: t0.Add(time.Hour).Truncate(time.Hour)}, // exactly one hour
		{User: "carol", Since: t0.Add(-30 * time.Hour), Until: t0.Add(7 * time.Hour)},
		{Until: t0.Truncate(time.Hour).Add(500 * time.Millisecond)}, // just into an hour: includes it
		{Since: t0.Add(time.Hour), Until: t0.Add(time.Hour)},        // empty
		{Since: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Until: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	groupings := subsets([]string{"user", "model", "day", "hour"})
	if len(groupings) < 16 {
		t.Fatalf("only %d groupings", len(groupings))
	}
	for _, f := range filters {
		for _, g := range groupings {
			q := f
			q.GroupBy = g
			got, err := s.Usage(q)
			if err != nil {
				t.Fatalf("%+v: %v", q, err)
			}
			want := expectUsage(recs, q)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%+v:\ngot  %d rows %+v\nwant %d rows %+v", q, len(got), head(got), len(want), head(want))
			}
		}
	}
	// The test data must make the comparisons meaningful.
	byHour, _ := s.Usage(UsageQuery{GroupBy: []string{"hour"}})
	byDay, _ := s.Usage(UsageQuery{GroupBy: []string{"day"}})
	if len(byHour) < 48 || len(byDay) < 3 {
		t.Fatalf("test data spans only %d hours, %d days", len(byHour), len(byDay))
	}
}

func head(rows []UsageRow) []UsageRow { return rows[:min(len(rows), 3)] }

func TestUsageGroupByWords(t *testing.T) {
	s := newStore(t)
	recs := []Record{
		{Time: t0, User: "alice", Model: "m", PromptTokens: 1},
		{Time: t0, User: "bob", Model: "m", PromptTokens: 2},
	}
	commitAll(t, s, recs, 10)
	// Case, spaces and repeats are forgiven.
	got, err := s.Usage(UsageQuery{GroupBy: []string{" User", "user", "MODEL "}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].User != "alice" || got[0].Model != "m" || got[1].User != "bob" {
		t.Errorf("rows %+v", got)
	}
	bad := []UsageQuery{
		{GroupBy: []string{"user", "week"}},
		{GroupBy: []string{""}},
		{Since: t0, Until: t0.Add(-time.Second)},
		{User: "bad\nuser"},
	}
	for _, q := range bad {
		if _, err := s.Usage(q); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", q, err)
		}
	}
	// No data: an empty list, not null.
	rows, err := s.Usage(UsageQuery{User: "nobody"})
	if err != nil || rows == nil || len(rows) != 0 {
		t.Errorf("no data: %v, %v", rows, err)
	}
}

// TestUsageSaturates: counts an upstream reports without bound add up to
// the largest int64 rather than wrap; a wrapped hourly sum encoded as a
// value that no longer decodes, and the hour's usage read as nothing.
func TestUsageSaturates(t *testing.T) {
	s := newStore(t)
	at := t0.Truncate(time.Hour)
	recs := []Record{
		{Time: at, User: "u", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: math.MaxInt64 - 10, CompletionTokens: 5},
		{Time: at.Add(time.Minute), User: "u", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 100, CompletionTokens: 5},
	}
	commitAll(t, s, recs, 1) // one record per commit: the sum in the file grows
	commitAll(t, s, []Record{{Time: at.Add(2 * time.Minute), User: "u", Model: "m", Endpoint: "chat", Status: 200, PromptTokens: 1, CompletionTokens: 5}}, 1)
	rows, err := s.Usage(UsageQuery{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("%+v, %v", rows, err)
	}
	if r := rows[0]; r.Requests != 3 || r.PromptTokens != math.MaxInt64 || r.CompletionTokens != 15 || r.TotalTokens != math.MaxInt64 {
		t.Fatalf("row %+v; want 3 requests, the prompt and total at the largest int64", r)
	}
}

func TestSumsEncoding(t *testing.T) {
	in := sums{requests: 1, prompt: 1 << 50, completion: 3, cached: 0, estimated: 1}
	if got := decodeSums(in.encode()); got != in {
		t.Errorf("round trip %+v → %+v", in, got)
	}
	if got := decodeSums([]byte{0x80}); got != (sums{}) {
		t.Errorf("damaged value reads as %+v, want zero", got)
	}
	if _, _, _, ok := splitAggKey([]byte("12345678nozero")); ok {
		t.Error("splitAggKey accepted a key without separator")
	}
	if _, _, _, ok := splitAggKey([]byte("short")); ok {
		t.Error("splitAggKey accepted a short key")
	}
}

// TestAggregate: records summed per hour, user and model, in runs of one
// key and interleaved, with more keys than one key buffer holds and a
// wrong size hint, match a plain map's sums, each key once, in key order.
func TestAggregate(t *testing.T) {
	var recs []Record
	want := map[string]sums{}
	for i := range 3000 {
		r := Record{
			Time:   t0.Add(time.Duration(i/3%7) * 50 * time.Minute),
			User:   fmt.Sprintf("user-%04d-%s", i/3%400, strings.Repeat("x", i/3%13)),
			Model:  []string{"a", "bb"}[i/5%2],
			Status: 200, PromptTokens: int64(i), CompletionTokens: 1, Estimated: i%4 == 0,
		}
		recs = append(recs, r)
		k := string(aggKey(nil, uint64(r.Time.Unix()/3600*3600), r.User, r.Model))
		s := want[k]
		one := sums{requests: 1, prompt: r.PromptTokens, completion: 1}
		if r.Estimated {
			one.estimated = 1
		}
		s.add(&one)
		want[k] = s
	}
	for _, hint := range []int{0, 5, 1 << 20} {
		got := aggregate(recs, hint)
		if len(got) != len(want) || len(want) > len(recs)/2 {
			t.Fatalf("hint %d: %d keys, want %d", hint, len(got), len(want))
		}
		seen := map[string]bool{}
		for _, d := range got {
			if seen[string(d.key)] {
				t.Fatalf("hint %d: key %q twice", hint, d.key)
			}
			seen[string(d.key)] = true
			if w, ok := want[string(d.key)]; !ok || w != d.sums {
				t.Fatalf("hint %d: key %q sums %+v, want %+v", hint, d.key, d.sums, w)
			}
		}
	}
}
