package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

func statusOf(err error) int {
	var ae caddy.APIError
	if errors.As(err, &ae) {
		return ae.HTTPStatus
	}
	return 0
}

func TestParseTime(t *testing.T) {
	cases := []struct {
		in       string
		endOfDay bool
		want     string // RFC 3339, "" for an error
	}{
		{"2025-06-01T10:30:00Z", false, "2025-06-01T10:30:00Z"},
		{"2025-06-01T10:30:00Z", true, "2025-06-01T10:30:00Z"},
		{"2025-06-01T12:30:00+02:00", false, "2025-06-01T10:30:00Z"},
		{"2025-06-01T10:30:00.5Z", false, "2025-06-01T10:30:00.5Z"},
		{"2025-06-01", false, "2025-06-01T00:00:00Z"},
		{"2025-06-01", true, "2025-06-02T00:00:00Z"},
		{"2025-12-31", true, "2026-01-01T00:00:00Z"},
		{"2025-02-30", false, ""},
		{"2025-6-1", false, ""},
		{"yesterday", false, ""},
		{"1717200000", false, ""},
		{"2025-06-01 10:30:00", false, ""},
	}
	for _, c := range cases {
		got, err := parseTime(c.in, c.endOfDay)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("parseTime(%q) = %v, want an error", c.in, got)
		case c.want != "" && (err != nil || got.Format(time.RFC3339Nano) != c.want):
			t.Errorf("parseTime(%q, %v) = %v, %v; want %s", c.in, c.endOfDay, got, err, c.want)
		}
	}
}

func TestGroupBy(t *testing.T) {
	cases := []struct {
		in   string
		want string // joined; "!" for an error
	}{
		{"", ""},
		{"user", "user"},
		{"User, MODEL ,day", "user,model,day"},
		{"day,user,day", "day,user"},
		{"hour,model", "hour,model"},
		{"user,,day", "!"},
		{"week", "!"},
		{"user;day", "!"},
	}
	for _, c := range cases {
		got, err := groupBy(c.in)
		if c.want == "!" {
			if statusOf(err) != http.StatusBadRequest {
				t.Errorf("groupBy(%q) = %v, %v; want a 400", c.in, got, err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != c.want {
			t.Errorf("groupBy(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
}

func TestQueryLimit(t *testing.T) {
	cases := []struct {
		query string
		want  int // 0 for a 400
	}{
		{"", 100}, {"limit=1", 1}, {"limit=1000", 1000}, {"limit=1001", 1000}, {"limit=99999999999999999999", 1000}, {"limit=-99999999999999999999", 0},
		{"limit=0", 0}, {"limit=-1", 0}, {"limit=1.5", 0}, {"limit=", 100}, {"limit=x", 0},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/llm_gate/users?"+c.query, nil)
		q, err := parseQuery(r, "limit")
		if err != nil {
			t.Fatalf("%q: %v", c.query, err)
		}
		got, err := q.limit()
		if c.want == 0 {
			if statusOf(err) != http.StatusBadRequest {
				t.Errorf("limit %q = %d, %v; want a 400", c.query, got, err)
			}
		} else if err != nil || got != c.want {
			t.Errorf("limit %q = %d, %v; want %d", c.query, got, err, c.want)
		}
	}
	if _, err := parseQuery(httptest.NewRequest("GET", "/x?a=%zz", nil), "a"); statusOf(err) != 400 {
		t.Errorf("bad escape in the query: %v", err)
	}
}

func TestStoreErrorStatus(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{store.ErrNotFound, 404},
		{errors.Join(errors.New("x"), store.ErrInvalid), 400},
		{errors.New("disk on fire"), 500},
		{apiErrorf(418, "teapot"), 418},
	}
	for _, c := range cases {
		if got := statusOf(storeError(c.err)); got != c.want {
			t.Errorf("storeError(%v) → %d, want %d", c.err, got, c.want)
		}
	}
	if storeError(nil) != nil {
		t.Error("storeError(nil) is not nil")
	}
}

func TestSplitPath(t *testing.T) {
	cases := []struct {
		raw  string
		want []string // nil for an error
	}{
		{"/llm_gate/users", []string{"users"}},
		{"/llm_gate/users/", []string{"users"}},
		{"/llm_gate/users/a%2Fb/keys", []string{"users", "a/b", "keys"}},
		{"/llm_gate/users/%C3%BC%20x", []string{"users", "ü x"}},
		{"/llm_gate/", []string{""}},
		{"/other/users", nil},
	}
	for _, c := range cases {
		u, err := url.Parse("http://h" + c.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := splitPath(u)
		if c.want == nil {
			if err == nil {
				t.Errorf("splitPath(%s) = %q, want an error", c.raw, got)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("splitPath(%s) = %q, %v; want %q", c.raw, got, err, c.want)
		}
	}
}

// testAPI is an API over an app with one plan and no state.
func testAPI() *API {
	app := &gate.App{}
	app.Plans = map[string]*gate.PlanConfig{"pro": {MaxParallel: 2}}
	return &API{app: app}
}

func TestParseUserBodyOrder(t *testing.T) {
	// Unknown plans are refused only when the app does not know them; the
	// app's plans are compiled in Provision, which this test skips, so
	// every plan is unknown here.
	a := testAPI()
	r := httptest.NewRequest("PATCH", "/", strings.NewReader(`{"plan":"pro"}`))
	if _, err := a.parseUserBody(r); statusOf(err) != 400 {
		t.Errorf("uncompiled plan accepted: %v", err)
	}
	// Several fields apply together.
	r = httptest.NewRequest("PATCH", "/", strings.NewReader(`{"token_limit":5,"period":"WEEK","disabled":true,"models":["a*"],"max_parallel":0}`))
	change, err := a.parseUserBody(r)
	if err != nil {
		t.Fatal(err)
	}
	u := &store.User{ID: "x", Period: "day"}
	change(u)
	if *u.TokenLimit != 5 || u.Period != "week" || !u.Disabled || u.Models[0] != "a*" || *u.MaxParallel != 0 {
		t.Errorf("applied %+v", u)
	}
}

// FuzzUserBody: any body is either refused with 400/413, or yields a change
// whose result the gate can use: no negative limit, a known period, valid
// model globs, an unchanged id.
func FuzzUserBody(f *testing.F) {
	for _, s := range []string{
		`{}`, ``, `{"token_limit":5,"period":"day"}`, `{"models":["llama-*"],"disabled":true}`,
		`{"token_limit":null,"max_parallel":-1}`, `{"period":"fortnight"}`, `[1]`, `null`,
		`{"tokens_per_minute":1e3}`, `{"requests_per_minute":9223372036854775807}`, `{"models":["["]}`,
		`{"plan":""}`, `{"disabled":null,"models":[]}`, `{"a":1}`, `{"token_limit":1}{}`,
	} {
		f.Add([]byte(s))
	}
	a := testAPI()
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("PUT", "/", strings.NewReader(string(body)))
		change, err := a.parseUserBody(r)
		if err != nil {
			if s := statusOf(err); s != 400 && s != 413 {
				t.Fatalf("body %q: error %v with status %d", body, err, s)
			}
			return
		}
		u := &store.User{ID: "fixed", Plan: "", Period: "day"}
		change(u)
		if u.ID != "fixed" {
			t.Fatalf("the id changed to %q", u.ID)
		}
		for _, p := range []*int64{u.TokenLimit, u.TokensPerMinute, u.RequestsPerMinute} {
			if p != nil && *p < 0 {
				t.Fatalf("negative limit from %q", body)
			}
		}
		if u.MaxParallel != nil && *u.MaxParallel < 0 {
			t.Fatalf("negative max_parallel from %q", body)
		}
		if u.Period != "" {
			if w, err := quota.ParseWindow(u.Period); err != nil || w.String() != u.Period {
				t.Fatalf("period %q from %q", u.Period, body)
			}
		}
		if u.Models != nil && len(u.Models) == 0 {
			t.Fatalf("empty non-nil models from %q", body)
		}
		for _, g := range u.Models {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				t.Fatalf("bad glob %q from %q", g, body)
			}
		}
		if u.Plan != "" {
			t.Fatalf("plan %q accepted though the app knows none", u.Plan)
		}
	})
}

// FuzzSplitPath: any request path either maps to segments that rejoin to
// the unescaped path, or is refused with a status.
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"/llm_gate/users", "/llm_gate/users/a%2Fb/keys", "/llm_gate/", "/x", "/llm_gate/%ff/", "/llm_gate/a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		u, err := url.Parse(p)
		if err != nil || u.Path == "" {
			return
		}
		segs, err := splitPath(u)
		if err != nil {
			if statusOf(err) == 0 {
				t.Fatalf("%q: error without status: %v", p, err)
			}
			return
		}
		if len(segs) == 0 {
			t.Fatalf("%q: no segments", p)
		}
		for _, s := range segs {
			if esc := url.PathEscape(s); strings.Contains(esc, "/") {
				t.Fatalf("%q: segment %q escapes with a slash", p, s)
			}
		}
	})
}

func BenchmarkParseUserBody(b *testing.B) {
	b.ReportAllocs()
	a := testAPI()
	body := `{"token_limit":500000,"period":"day","tokens_per_minute":20000,"requests_per_minute":60,"max_parallel":4,"models":["llama-*","qwen-*"],"disabled":false}`
	for b.Loop() {
		r := httptest.NewRequest("PUT", "/", strings.NewReader(body))
		change, err := a.parseUserBody(r)
		if err != nil {
			b.Fatal(err)
		}
		change(&store.User{ID: "u"})
	}
}
