package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/llmgate/llmgate/store"
)

// maxBodyBytes bounds a request body: the largest legitimate one is a user
// with a long model list.
const maxBodyBytes = 1 << 20

// writeJSON answers v as JSON. It encodes before writing the header, so that
// an encoding failure still becomes a proper error response.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return apiErrorf(http.StatusInternalServerError, "encoding response: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	// The client may be gone; there is no one left to tell.
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// storeError gives a store or state error its status: 404 for what does not
// exist, 400 for what the store refuses as invalid, 500 for the rest.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case asAPIError(err):
		return err
	case errors.Is(err, store.ErrNotFound):
		return apiErrorf(http.StatusNotFound, "%v", err)
	case errors.Is(err, store.ErrInvalid):
		return apiErrorf(http.StatusBadRequest, "%v", err)
	}
	return apiErrorf(http.StatusInternalServerError, "%v", err)
}

// readBody reads a request body of at most maxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, "reading request body: %v", err)
	}
	if len(data) > maxBodyBytes {
		return nil, apiErrorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", maxBodyBytes)
	}
	return data, nil
}

// decodeObject reads the body as one JSON object and returns its members
// undecoded, so callers can tell an absent field from a null one. An empty
// body is an empty object.
func decodeObject(r *http.Request) (map[string]json.RawMessage, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) {
			return nil, apiErrorf(http.StatusBadRequest, "request body must be a JSON object, not a JSON %s", te.Value)
		}
		return nil, apiErrorf(http.StatusBadRequest, "request body must be a JSON object: %s", jsonError(err))
	}
	if m == nil {
		return nil, apiErrorf(http.StatusBadRequest, "request body must be a JSON object, not null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, apiErrorf(http.StatusBadRequest, "request body has data after its JSON object")
	}
	return m, nil
}

// decodeStrict reads the body into v, refusing unknown fields and trailing
// data. An empty body leaves v as it is.
func decodeStrict(r *http.Request, v any) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErrorf(http.StatusBadRequest, "bad request body: %s", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return apiErrorf(http.StatusBadRequest, "request body has data after its JSON object")
	}
	return nil
}

// query is a request's query string, checked against the parameters a route
// knows: a misspelt parameter (users= for user=) would otherwise widen a
// report silently.
type query struct{ v url.Values }

func parseQuery(r *http.Request, known ...string) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, apiErrorf(http.StatusBadRequest, "bad query string: %v", err)
	}
	for name, vals := range v {
		if !slices.Contains(known, name) {
			if len(known) == 0 {
				return query{}, apiErrorf(http.StatusBadRequest, "unknown query parameter %q: %s %s takes none", name, r.Method, r.URL.Path)
			}
			return query{}, apiErrorf(http.StatusBadRequest, "unknown query parameter %q (known: %s)", name, strings.Join(known, ", "))
		}
		if len(vals) > 1 {
			return query{}, apiErrorf(http.StatusBadRequest, "query parameter %q is given %d times; give it once", name, len(vals))
		}
	}
	return query{v}, nil
}

func (q query) get(name string) string { return q.v.Get(name) }

// limit parses a page size: default 100, at most 1000 (larger asks get
// 1000).
func (q query) limit() (int, error) {
	s := q.get("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(s, "-") {
		return 1000, nil // larger than any page
	}
	if err != nil || n < 1 {
		return 0, apiErrorf(http.StatusBadRequest, "limit %q must be a whole number from 1 to 1000", s)
	}
	return min(n, 1000), nil
}

// user parses an optional user filter.
func (q query) user() (string, error) {
	u := q.get("user")
	if u == "" && !q.v.Has("user") {
		return "", nil // user= is refused below: an empty filter must not widen a report to everyone
	}
	if err := store.ValidUserID(u); err != nil {
		return "", apiErrorf(http.StatusBadRequest, "user: %v", err)
	}
	return u, nil
}

// timeRange parses since and until. Each is RFC 3339 or a date (YYYY-MM-DD,
// UTC). A date as until includes that whole day, so since=2025-06-01 and
// until=2025-06-30 cover June.
func (q query) timeRange() (since, until time.Time, err error) {
	if s := q.get("since"); s != "" {
		if since, err = parseTime(s, false); err != nil {
			return since, until, apiErrorf(http.StatusBadRequest, "since: %v", err)
		}
	}
	if s := q.get("until"); s != "" {
		if until, err = parseTime(s, true); err != nil {
			return since, until, apiErrorf(http.StatusBadRequest, "until: %v", err)
		}
	}
	// A date until is the start of the next day here: since that day
	// (since=2026-12-06&until=2026-12-05) is after it too.
	if s, u := q.get("since"), q.get("until"); s != "" && u != "" && (since.After(until) || since.Equal(until) && len(u) == len(time.DateOnly)) {
		return since, until, apiErrorf(http.StatusBadRequest, "since %s is after until %s", s, u)
	}
	// The zero time means "no bound" to the store: an until as early as
	// that (0001-01-01T00:00:00Z) must select nothing, not everything, and
	// nothing is kept from before 1970.
	if epoch := time.Unix(0, 0).UTC(); q.get("until") != "" && until.Before(epoch) {
		until = epoch
	}
	return since, until, nil
}

// parseTime reads RFC 3339 or a UTC date; endOfDay makes a date mean the
// start of the next day (an exclusive bound that includes the date).
func parseTime(s string, endOfDay bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2006-01-02T15:04:05Z) nor a date (2006-01-02)", s)
	}
	if endOfDay {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}

// timeOrNil is t for JSON, or nil when t is zero.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// jsonError says what encoding/json found wrong in a client's words: the
// field and the JSON it holds, not Go's type names.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "a " + te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.String:
			want = "a string"
		case reflect.Bool:
			want = "true or false"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "a whole number"
		case reflect.Float32, reflect.Float64:
			want = "a number"
		case reflect.Slice, reflect.Array:
			want = "an array"
		case reflect.Map, reflect.Struct:
			want = "an object"
		}
		if te.Field == "" {
			return fmt.Sprintf("the body must be %s, not a JSON %s", want, te.Value)
		}
		return fmt.Sprintf("%s must be %s, not a JSON %s", te.Field, want, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
