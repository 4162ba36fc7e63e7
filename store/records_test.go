package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// lastTxID returns the id of the last committed write transaction.
func lastTxID(t *testing.T, s *Store) int {
	t.Helper()
	var id int
	s.db.View(func(tx *bolt.Tx) error {
		id = tx.ID()
		return nil
	})
	return id
}

func TestRecordValidate(t *testing.T) {
	ok := Record{Time: t0, User: "alice", Model: "m", Endpoint: "/v1/chat/completions", Status: 200}
	long := strings.Repeat("x", MaxFieldLen+1)
	tests := []struct {
		name   string
		modify func(r *Record)
	}{
		{"zero time", func(r *Record) { r.Time = time.Time{} }},
		{"before 1970", func(r *Record) { r.Time = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }},
		{"after 2262", func(r *Record) { r.Time = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"no user", func(r *Record) { r.User = "" }},
		{"bad user", func(r *Record) { r.User = " a" }},
		{"long model", func(r *Record) { r.Model = long }},
		{"long key id", func(r *Record) { r.KeyID = long }},
		{"long endpoint", func(r *Record) { r.Endpoint = long }},
		{"long plan", func(r *Record) { r.Plan = long }},
		{"negative prompt", func(r *Record) { r.PromptTokens = -1 }},
		{"negative completion", func(r *Record) { r.CompletionTokens = -1 }},
		{"negative cached", func(r *Record) { r.CachedTokens = -1 }},
		{"negative duration", func(r *Record) { r.Duration = -1 }},
		{"negative ttft", func(r *Record) { r.TTFT = -1 }},
		{"negative status", func(r *Record) { r.Status = -1 }},
		{"huge status", func(r *Record) { r.Status = 1000 }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	for _, tt := range tests {
		r := ok
		tt.modify(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", tt.name, err)
		}
	}
}

func TestRecordJSON(t *testing.T) {
	r := Record{
		Time: t0, User: "alice", KeyID: "k1", Model: "llama", Endpoint: "/v1/completions", Status: 200,
		PromptTokens: 10, CompletionTokens: 20, CachedTokens: 4, Estimated: true,
		Duration: 1500 * time.Microsecond, TTFT: 250 * time.Microsecond, Plan: "pro",
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"time": "2025-03-04T10:30:00Z", "user": "alice", "key_id": "k1", "model": "llama",
		"endpoint": "/v1/completions", "status": 200.0, "prompt_tokens": 10.0, "completion_tokens": 20.0,
		"cached_tokens": 4.0, "estimated": true, "duration_ms": 1.5, "ttft_ms": 0.25, "plan": "pro",
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("JSON = %s\nwant %v", b, want)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	// Through a pointer too (the admin API encodes slices of records).
	b2, _ := json.Marshal(&r)
	if string(b2) != string(b) {
		t.Errorf("pointer JSON differs: %s", b2)
	}
	if err := json.Unmarshal([]byte(`{"time":1}`), &back); err == nil {
		t.Error("bad JSON decoded")
	}
}

func TestRecordEncoding(t *testing.T) {
	r := Record{
		Time: t0.Add(123 * time.Nanosecond), User: "ü", KeyID: "k", Model: "m", Endpoint: "/e", Status: 599,
		PromptTokens: 1 << 40, CompletionTokens: 2, CachedTokens: 3, Estimated: true,
		Duration: time.Hour + 1500*time.Nanosecond, TTFT: 999 * time.Nanosecond, Plan: "p", Incomplete: true,
	}
	k := recordKey(nil, timeNanos(r.Time), 42)
	v := appendRecord(nil, &r)
	got, err := decodeRecord(k, v)
	if err != nil {
		t.Fatal(err)
	}
	// Durations keep microseconds.
	want := r
	want.Duration = time.Hour + time.Microsecond
	want.TTFT = 0
	if got != want {
		t.Errorf("decoded %+v\nwant    %+v", got, want)
	}
	if !recordUserIs(v, "ü") || recordUserIs(v, "u") || recordUserIs(v, "üü") || recordUserIs(nil, "") || recordUserIs([]byte{1, 200}, "x") {
		t.Error("recordUserIs is wrong")
	}
	if len(v) > 40 {
		t.Errorf("a small record encodes to %d bytes", len(v))
	}
	if r, err := decodeRecord(k, withFlags(t, flagEstimated|flagIncomplete)); err != nil || !r.Estimated || !r.Incomplete {
		t.Errorf("flags 3: %+v %v", r, err)
	}
	for _, bad := range []struct{ k, v []byte }{
		{k[:8], v}, {k, nil}, {k, v[:len(v)-1]}, {k, append(slices.Clone(v), 0)}, {k, append([]byte{2}, v[1:]...)},
		{k, withFlags(t, 4)}, // a flag of a later version
	} {
		if _, err := decodeRecord(bad.k, bad.v); err == nil {
			t.Errorf("decodeRecord(%x, %x) succeeded", bad.k, bad.v)
		}
	}
}

// withFlags encodes a record without durations, its flags byte (the third
// from the end) set to f.
func withFlags(t *testing.T, f byte) []byte {
	v := appendRecord(nil, &Record{User: "u"})
	if v[len(v)-3] != 0 || v[len(v)-2] != 0 || v[len(v)-1] != 0 {
		t.Fatalf("unexpected encoding %x", v)
	}
	v[len(v)-3] = f
	return v
}

// genRecords makes n records over users, models and a span of time
// centred on t0, with random token counts. Times fall on whole minutes, so
// several records share a time.
func genRecords(r *rand.Rand, n int, users, models []string, span time.Duration) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{
			Time:             t0.Add(-span/2 + time.Duration(r.Int64N(int64(span/time.Minute)))*time.Minute),
			User:             users[r.IntN(len(users))],
			KeyID:            fmt.Sprintf("k%d", r.IntN(5)),
			Model:            models[r.IntN(len(models))],
			Endpoint:         "/v1/chat/completions",
			Status:           200,
			PromptTokens:     r.Int64N(1000),
			CompletionTokens: r.Int64N(1000),
			CachedTokens:     r.Int64N(100),
			Estimated:        r.IntN(5) == 0,
			Duration:         time.Duration(r.Int64N(1e6)) * time.Microsecond,
			TTFT:             time.Duration(r.Int64N(1e5)) * time.Microsecond,
			Plan:             "pro",
		}
	}
	return recs
}

func commitAll(t testing.TB, s *Store, recs []Record, batch int) {
	t.Helper()
	for i := 0; i < len(recs); i += batch {
		if err := s.Commit(&Batch{Records: recs[i:min(i+batch, len(recs))]}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecordsPaginationAndFilters(t *testing.T) {
	s := newStore(t)
	r := rand.New(rand.NewPCG(3, 4))
	users := []string{"alice", "bob", "carol", "al"}
	recs := genRecords(r, 600, users, []string{"m1", "m2"}, 6*time.Hour)
	commitAll(t, s, recs, 50)

	// Expected order: newest first; among equal times, the later-committed
	// record (higher sequence) first.
	type idx struct {
		r Record
		i int
	}
	all := make([]idx, len(recs))
	for i, rec := range recs {
		all[i] = idx{rec, i}
	}
	slices.SortFunc(all, func(a, b idx) int {
		if c := b.r.Time.Compare(a.r.Time); c != 0 {
			return c
		}
		return b.i - a.i
	})

	queries := []RecordQuery{
		{},
		{User: "alice"},
		{User: "al"}, // a prefix of alice: must not match her
		{User: "nobody"},
		{Since: t0.Add(-time.Hour)},
		{Until: t0.Add(time.Hour)},
		{Since: t0.Add(-2 * time.Hour), Until: t0.Add(30 * time.Minute), User: "bob"},
		{Since: t0.Add(time.Hour), Until: t0.Add(time.Hour)},
		{Since: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Until: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, q := range queries {
		var want []Record
		for _, e := range all {
			if (q.User == "" || e.r.User == q.User) &&
				(q.Since.IsZero() || !e.r.Time.Before(q.Since)) &&
				(q.Until.IsZero() || e.r.Time.Before(q.Until)) {
				want = append(want, e.r)
			}
		}
		for _, limit := range []int{1, 7, 100, 1000} {
			q := q
			q.Limit = limit
			var got []Record
			pages := 0
			for {
				page, next, err := s.Records(q)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if len(page) > limit || (next != "" && len(page) != limit) {
					t.Fatalf("%+v: page of %d, next %q", q, len(page), next)
				}
				got = append(got, page...)
				if next == "" {
					break
				}
				q.Cursor = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("%+v: got %d records, want %d (or a different order)", q, len(got), len(want))
			}
			if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
				t.Errorf("%+v: %d pages, want %d", q, pages, wantPages)
			}
		}
	}

	// Default and maximum page sizes.
	if page, _, _ := s.Records(RecordQuery{}); len(page) != 100 {
		t.Errorf("default page: %d records", len(page))
	}
	if page, _, _ := s.Records(RecordQuery{Limit: 5000}); len(page) != 600 {
		t.Errorf("capped page: %d records", len(page))
	}

	// A cursor from a wider query does not lift a tighter Until.
	_, wide, _ := s.Records(RecordQuery{Limit: 3})
	until := t0.Add(-2 * time.Hour)
	page, _, err := s.Records(RecordQuery{Until: until, Cursor: wide, Limit: 1000})
	if err != nil || len(page) == 0 {
		t.Fatalf("cursor with Until: %d records, %v", len(page), err)
	}
	for _, rec := range page {
		if !rec.Time.Before(until) {
			t.Errorf("record at %v is not before Until %v", rec.Time, until)
		}
	}

	for _, bad := range []string{"!!", base64.RawURLEncoding.EncodeToString([]byte("short"))} {
		if _, _, err := s.Records(RecordQuery{Cursor: bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor %q: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestRecordsEmpty(t *testing.T) {
	s := newStore(t)
	recs, next, err := s.Records(RecordQuery{})
	if err != nil || recs == nil || len(recs) != 0 || next != "" {
		t.Errorf("Records on an empty store = %v, %q, %v", recs, next, err)
	}
}

func TestCommit(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{"alice", "bob"} {
		if err := s.PutUser(&User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutKey(&Key{ID: "k1", UserID: "alice", Hash: [32]byte{1}, LastUsed: t0}); err != nil {
		t.Fatal(err)
	}

	// Empty batches start no transaction.
	tx := lastTxID(t, s)
	for _, b := range []*Batch{nil, {}, {Records: []Record{}, Counters: map[string][]byte{}}} {
		if err := s.Commit(b); err != nil {
			t.Errorf("empty Commit: %v", err)
		}
	}
	if got := lastTxID(t, s); got != tx {
		t.Errorf("empty commits ran %d transactions", got-tx)
	}

	recs := []Record{
		{Time: t0, User: "alice", KeyID: "k1", Model: "m", PromptTokens: 1, CompletionTokens: 2, CachedTokens: 1},
		{Time: t0, User: "alice", KeyID: "k1", Model: "m", PromptTokens: 10, CompletionTokens: 20, Estimated: true},
		{Time: t0.Add(time.Hour), User: "bob", Model: "m", PromptTokens: 100, CompletionTokens: 200},
	}
	err := s.Commit(&Batch{
		Records: recs,
		// Users that do not exist sort before, between and after those that
		// do, and one is a prefix of one that does.
		Counters:    map[string][]byte{"alice": []byte("A"), "bob": []byte("B"), "ghost": []byte("G"), "al": []byte("G"), "alicia": []byte("G"), "aaron": []byte("G")},
		KeyLastUsed: map[string]time.Time{"k1": t0.Add(time.Minute), "unknown-key": t0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := lastTxID(t, s); got != tx+1 {
		t.Errorf("Commit ran %d transactions, want 1", got-tx)
	}
	got, _, _ := s.Records(RecordQuery{})
	if want := []Record{recs[2], recs[1], recs[0]}; !slices.Equal(got, want) {
		t.Errorf("records %+v\nwant %+v", got, want)
	}
	rows, _ := s.Usage(UsageQuery{GroupBy: []string{"user"}})
	wantRows := []UsageRow{
		{User: "alice", Requests: 2, PromptTokens: 11, CompletionTokens: 22, TotalTokens: 33, CachedTokens: 1, EstimatedRequests: 1},
		{User: "bob", Requests: 1, PromptTokens: 100, CompletionTokens: 200, TotalTokens: 300},
	}
	if !reflect.DeepEqual(rows, wantRows) {
		t.Errorf("usage %+v\nwant %+v", rows, wantRows)
	}
	for user, want := range map[string]string{"alice": "A", "bob": "B"} {
		if c, _ := s.LoadCounters(user); string(c) != want {
			t.Errorf("counters of %s = %q", user, c)
		}
	}
	for _, ghost := range []string{"ghost", "al", "alicia", "aaron"} {
		if c, err := s.LoadCounters(ghost); c != nil || err != nil {
			t.Errorf("counters of %s, a user that does not exist: %q, %v", ghost, c, err)
		}
	}
	if k, _ := s.GetKey("k1"); !k.LastUsed.Equal(t0.Add(time.Minute)) {
		t.Errorf("last used %v", k.LastUsed)
	}

	// Last-used only moves forward; an empty state deletes counters; the
	// aggregates add up across commits.
	err = s.Commit(&Batch{
		Records:     []Record{{Time: t0.Add(5 * time.Minute), User: "alice", Model: "m", PromptTokens: 1000}},
		Counters:    map[string][]byte{"bob": nil},
		KeyLastUsed: map[string]time.Time{"k1": t0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := s.GetKey("k1"); !k.LastUsed.Equal(t0.Add(time.Minute)) {
		t.Errorf("last used went back to %v", k.LastUsed)
	}
	if c, _ := s.LoadCounters("bob"); c != nil {
		t.Errorf("bob's counters not deleted: %q", c)
	}
	rows, _ = s.Usage(UsageQuery{User: "alice"})
	if len(rows) != 1 || rows[0].Requests != 3 || rows[0].PromptTokens != 1011 {
		t.Errorf("alice after two commits: %+v", rows)
	}
}

// A batch with any invalid part writes nothing at all.
func TestCommitAtomic(t *testing.T) {
	s := newStore(t)
	if err := s.PutUser(&User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKey(&Key{ID: "k1", UserID: "alice", Hash: [32]byte{1}}); err != nil {
		t.Fatal(err)
	}
	good := func() *Batch {
		return &Batch{
			Records: []Record{
				{Time: t0, User: "alice", Model: "m", PromptTokens: 1},
				{Time: t0.Add(time.Second), User: "alice", Model: "m", PromptTokens: 2},
			},
			Counters:    map[string][]byte{"alice": []byte("state")},
			KeyLastUsed: map[string]time.Time{"k1": t0},
		}
	}
	tests := []struct {
		name  string
		spoil func(b *Batch)
	}{
		{"record in the middle", func(b *Batch) {
			b.Records = slices.Insert(b.Records, 1, Record{Time: t0, User: "bad\nuser"})
		}},
		{"last record", func(b *Batch) { b.Records = append(b.Records, Record{User: "alice"}) }},
		{"counters user", func(b *Batch) { b.Counters[" padded"] = []byte("x") }},
		{"last-used key id", func(b *Batch) { b.KeyLastUsed[""] = t0 }},
		{"last-used time", func(b *Batch) { b.KeyLastUsed["k1"] = time.Time{} }},
		{"long last-used key id", func(b *Batch) { b.KeyLastUsed[strings.Repeat("k", 300)] = t0 }},
	}
	for _, tt := range tests {
		b := good()
		tt.spoil(b)
		tx := lastTxID(t, s)
		if err := s.Commit(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Commit = %v, want ErrInvalid", tt.name, err)
		}
		if got := lastTxID(t, s); got != tx {
			t.Errorf("%s: a refused batch committed", tt.name)
		}
	}
	recs, _, _ := s.Records(RecordQuery{})
	rows, _ := s.Usage(UsageQuery{})
	c, _ := s.LoadCounters("alice")
	k, _ := s.GetKey("k1")
	if len(recs) != 0 || len(rows) != 0 || c != nil || !k.LastUsed.IsZero() {
		t.Errorf("refused batches wrote: %d records, %d usage rows, counters %q, last used %v", len(recs), len(rows), c, k.LastUsed)
	}
	// The good batch itself commits.
	if err := s.Commit(good()); err != nil {
		t.Fatal(err)
	}
	if recs, _, _ := s.Records(RecordQuery{}); len(recs) != 2 {
		t.Errorf("good batch: %d records", len(recs))
	}
}

func TestPrune(t *testing.T) {
	s := newStore(t)
	defer func(n int) { pruneChunk = n }(pruneChunk)
	pruneChunk = 7

	r := rand.New(rand.NewPCG(5, 6))
	recs := genRecords(r, 100, []string{"alice", "bob"}, []string{"m1", "m2"}, 10*time.Hour)
	commitAll(t, s, recs, 30)
	usageBefore, _ := s.Usage(UsageQuery{GroupBy: []string{"user", "hour"}})

	if n, err := s.Prune(time.Time{}); n != 0 || err != nil {
		t.Errorf("Prune(zero) = %d, %v", n, err)
	}
	before := t0.Add(-time.Hour)
	want := 0
	for _, rec := range recs {
		if rec.Time.Before(before) {
			want++
		}
	}
	if want < 3*pruneChunk {
		t.Fatalf("test data: only %d records to prune", want)
	}
	n, err := s.Prune(before)
	if err != nil || n != want {
		t.Fatalf("Prune = %d, %v; want %d", n, err, want)
	}
	left, _, _ := s.Records(RecordQuery{Limit: 1000})
	if len(left) != len(recs)-want {
		t.Errorf("%d records left, want %d", len(left), len(recs)-want)
	}
	for _, rec := range left {
		if rec.Time.Before(before) {
			t.Errorf("record at %v survived", rec.Time)
		}
	}
	if n, err := s.Prune(before); n != 0 || err != nil {
		t.Errorf("second Prune = %d, %v", n, err)
	}
	// Aggregates keep the history.
	if usageAfter, _ := s.Usage(UsageQuery{GroupBy: []string{"user", "hour"}}); !reflect.DeepEqual(usageAfter, usageBefore) {
		t.Error("Prune changed the aggregates")
	}
	// Everything.
	if n, err := s.Prune(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || n != len(left) {
		t.Errorf("Prune(all) = %d, %v; want %d", n, err, len(left))
	}
}

// TestPutOrder: a batch's records go to bbolt in key order, whatever order
// they settled in, each exactly once.
func TestPutOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 2, 50, 1000} {
		var keys []byte
		for i := range n {
			// Times within a few ms, with ties; seq grows with i.
			keys = recordKey(keys, uint64(1e18)+uint64(r.IntN(5))*1e6, uint64(i+1))
		}
		order := putOrder(keys, n)
		seen := make([]bool, n)
		for k, i := range order {
			if seen[i] {
				t.Fatalf("n=%d: record %d put twice", n, i)
			}
			seen[i] = true
			if k > 0 && string(keys[16*order[k-1]:16*order[k-1]+16]) >= string(keys[16*i:16*i+16]) {
				t.Fatalf("n=%d: put %d before %d, out of key order", n, order[k-1], i)
			}
		}
		if len(order) != n {
			t.Fatalf("n=%d: %d puts", n, len(order))
		}
	}
	// Keys already in order keep it.
	var keys []byte
	for i := range 10 {
		keys = recordKey(keys, uint64(i), uint64(i))
	}
	if got := putOrder(keys, 10); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("sorted keys reordered: %v", got)
	}
}
