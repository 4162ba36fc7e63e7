package admin

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/store"
)

// flushPending commits usage still waiting for the background writer, so a
// report includes every request finished before it was asked for. A failure
// is logged, not fatal: the report is then at most one flush interval old.
func (a *API) flushPending() {
	if err := a.state().Flush(); err != nil {
		a.logger.Warn("committing pending usage before a report", zap.Error(err))
	}
}

// usage answers GET /llm_gate/usage?user=&model=&since=&until=&group_by=&format=.
func (a *API) usage(w http.ResponseWriter, r *http.Request, _ []string) error {
	q, err := parseQuery(r, "user", "model", "since", "until", "group_by", "format")
	if err != nil {
		return err
	}
	uq := store.UsageQuery{Model: q.get("model")}
	if uq.User, err = q.user(); err != nil {
		return err
	}
	if uq.Since, uq.Until, err = q.timeRange(); err != nil {
		return err
	}
	// Usage is kept per hour: a bound inside an hour would count the whole
	// hour, or none of it, and two adjacent reports would then count it
	// twice or not at all.
	for _, b := range []struct {
		name string
		t    time.Time
	}{{"since", uq.Since}, {"until", uq.Until}} {
		if t := b.t; !t.IsZero() && !t.Equal(t.Truncate(time.Hour)) {
			return apiErrorf(http.StatusBadRequest, "%s %s is not on the hour: usage is kept per hour, so /llm_gate/usage takes bounds on the hour in UTC (%s or %s); /llm_gate/requests takes any time",
				b.name, q.get(b.name), t.Truncate(time.Hour).Format(time.RFC3339), t.Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339))
		}
	}
	if uq.GroupBy, err = groupBy(q.get("group_by")); err != nil {
		return err
	}
	format := strings.ToLower(q.get("format"))
	if format != "" && format != "json" && format != "csv" {
		return apiErrorf(http.StatusBadRequest, "format %q must be json or csv", q.get("format"))
	}
	a.flushPending()
	db, err := a.state().DB()
	if err != nil {
		return storeError(err)
	}
	rows, err := db.Usage(uq)
	if err != nil {
		return storeError(err)
	}
	if format == "csv" {
		return writeUsageCSV(w, uq.GroupBy, rows)
	}
	return writeJSON(w, http.StatusOK, struct {
		Rows []store.UsageRow `json:"rows"`
	}{rows})
}

// groupBy splits, checks and dedupes a comma-separated group_by list,
// keeping its order (which is also the rows' sort order and the CSV's
// column order).
func groupBy(s string) ([]string, error) {
	var out []string
	if s == "" {
		return nil, nil
	}
	for _, g := range strings.Split(s, ",") {
		g = strings.ToLower(strings.TrimSpace(g))
		switch g {
		case store.GroupUser, store.GroupModel, store.GroupDay, store.GroupHour:
		default:
			return nil, apiErrorf(http.StatusBadRequest, "group_by %q: want a comma-separated list of user, model, day, hour", g)
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out, nil
}

// csvText is s as a CSV cell a spreadsheet shows as text: one that starts
// like a formula (=, +, -, @, a tab or a carriage return; user ids come
// from JWT subjects) gets a leading ' (OWASP's advice on CSV injection).
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// usageColumns are the CSV's sum columns, after the grouped ones.
var usageColumns = []string{"requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "estimated_requests"}

func writeUsageCSV(w http.ResponseWriter, groups []string, rows []store.UsageRow) error {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	_ = cw.Write(append(slices.Clone(groups), usageColumns...))
	rec := make([]string, 0, len(groups)+len(usageColumns))
	for _, row := range rows {
		rec = rec[:0]
		for _, g := range groups {
			switch g {
			case store.GroupUser:
				rec = append(rec, csvText(row.User))
			case store.GroupModel:
				rec = append(rec, csvText(row.Model))
			case store.GroupDay:
				rec = append(rec, row.Day)
			case store.GroupHour:
				rec = append(rec, row.Hour)
			}
		}
		for _, n := range []int64{row.Requests, row.PromptTokens, row.CompletionTokens, row.TotalTokens, row.CachedTokens, row.EstimatedRequests} {
			rec = append(rec, strconv.FormatInt(n, 10))
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return apiErrorf(http.StatusInternalServerError, "writing CSV: %v", err)
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="llm_gate_usage.csv"`)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// requests answers GET /llm_gate/requests?user=&since=&until=&limit=&cursor=,
// newest first.
func (a *API) requests(w http.ResponseWriter, r *http.Request, _ []string) error {
	q, err := parseQuery(r, "user", "since", "until", "limit", "cursor")
	if err != nil {
		return err
	}
	rq := store.RecordQuery{Cursor: q.get("cursor")}
	if rq.User, err = q.user(); err != nil {
		return err
	}
	if rq.Since, rq.Until, err = q.timeRange(); err != nil {
		return err
	}
	if rq.Limit, err = q.limit(); err != nil {
		return err
	}
	a.flushPending()
	db, err := a.state().DB()
	if err != nil {
		return storeError(err)
	}
	recs, next, err := db.Records(rq)
	if err != nil {
		return storeError(err)
	}
	return writeJSON(w, http.StatusOK, struct {
		Requests   []store.Record `json:"requests"`
		NextCursor string         `json:"next_cursor"`
	}{recs, next})
}

// PlanView is a configured plan.
type PlanView struct {
	Name    string `json:"name"`
	Default bool   `json:"default"`
	Limits
}

// plans answers GET /llm_gate/plans.
func (a *API) plans(w http.ResponseWriter, r *http.Request, _ []string) error {
	if _, err := parseQuery(r); err != nil {
		return err
	}
	app := a.gateApp()
	out := []PlanView{}
	for _, name := range app.PlanNames() {
		p := app.Plan(name)
		out = append(out, PlanView{Name: name, Default: name == app.DefaultPlan, Limits: limitsOf(p.Limits, p.Models)})
	}
	return writeJSON(w, http.StatusOK, struct {
		DefaultPlan string     `json:"default_plan"`
		Plans       []PlanView `json:"plans"`
	}{app.DefaultPlan, out})
}
