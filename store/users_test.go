package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestValidUserID(t *testing.T) {
	tests := []struct {
		id   string
		want string // substring of the error; "" = valid
	}{
		{"alice", ""},
		{"alice@example.com", ""},
		{"Ünïcødé 用户", ""},
		{"a b", ""},
		{"auth0|12345", ""},
		{strings.Repeat("x", 256), ""},
		{"", "empty"},
		{strings.Repeat("x", 257), "longer than 256"},
		{"a/b", ""},
		{"repo:octo/app:ref:refs/heads/main", ""},
		{"/", ""},
		{" alice", "leading or trailing space"},
		{"alice ", "leading or trailing space"},
		{"a\tb", "non-printable"},
		{"a\nb", "non-printable"},
		{"a\x00b", "non-printable"},
		{"a\x7fb", "non-printable"},
		{"a\u00a0b", "non-printable"}, // no-break space
		{"a\u200bb", "non-printable"}, // zero-width space
		{"\xff\xfe", "UTF-8"},
	}
	for _, tt := range tests {
		err := ValidUserID(tt.id)
		if tt.want == "" {
			if err != nil {
				t.Errorf("ValidUserID(%q) = %v, want nil", tt.id, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidUserID(%q) = %v, want ErrInvalid mentioning %q", tt.id, err, tt.want)
		}
	}
}

func TestUserCRUD(t *testing.T) {
	s := newStore(t)

	if _, err := s.GetUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetUser of a missing user: %v, want ErrNotFound", err)
	}
	if err := s.PutUser(&User{ID: "bad\x01id"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutUser with a bad id: %v, want ErrInvalid", err)
	}

	u := &User{
		ID: "alice", Plan: "pro", TokenLimit: ptr(int64(500000)), Period: "day",
		TokensPerMinute: ptr(int64(1000)), RequestsPerMinute: ptr(int64(0)), MaxParallel: ptr(2),
		Models: []string{"llama-*"}, Source: "admin",
	}
	if err := s.PutUser(u); err != nil {
		t.Fatal(err)
	}
	if u.Created.IsZero() || !u.Created.Equal(u.Updated) {
		t.Errorf("PutUser stamps: created %v updated %v", u.Created, u.Updated)
	}
	got, err := s.GetUser("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, u) {
		t.Errorf("GetUser = %+v, want %+v", got, u)
	}
	// Zero limits survive: nil means "inherit", 0 is a limit.
	if got.RequestsPerMinute == nil || *got.RequestsPerMinute != 0 {
		t.Errorf("RequestsPerMinute = %v, want pointer to 0", got.RequestsPerMinute)
	}

	// Replace keeps the creation time and drops fields not given.
	created := u.Created
	repl := &User{ID: "alice", Plan: "free", Created: t0.Add(-time.Hour)}
	if err := s.PutUser(repl); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetUser("alice")
	if !got.Created.Equal(created) || !got.Updated.After(created) || got.Plan != "free" || got.TokenLimit != nil || got.Models != nil {
		t.Errorf("after replace: %+v", got)
	}

	// Update changes only what fn changes.
	upd, err := s.UpdateUser("alice", func(u *User) error {
		u.Disabled = true
		u.MaxParallel = ptr(5)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetUser("alice")
	if !reflect.DeepEqual(got, upd) || !got.Disabled || *got.MaxParallel != 5 || got.Plan != "free" || !got.Updated.After(repl.Updated) {
		t.Errorf("after update: %+v (returned %+v)", got, upd)
	}

	// A failing fn writes nothing and its error comes back as is.
	boom := errors.New("boom")
	before, _ := s.GetUser("alice")
	if _, err := s.UpdateUser("alice", func(u *User) error { u.Plan = "changed"; return boom }); err != boom {
		t.Errorf("UpdateUser error = %v, want boom", err)
	}
	if _, err := s.UpdateUser("alice", func(u *User) error { u.ID = "mallory"; return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("UpdateUser changing the id: %v, want ErrInvalid", err)
	}
	after, _ := s.GetUser("alice")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("failed updates wrote: %+v → %+v", before, after)
	}
	if _, err := s.GetUser("mallory"); !errors.Is(err, ErrNotFound) {
		t.Errorf("id-changing update created mallory: %v", err)
	}
	if _, err := s.UpdateUser("nobody", func(*User) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateUser of a missing user: %v, want ErrNotFound", err)
	}
}

func TestCreateUserIfMissing(t *testing.T) {
	s := newStore(t)
	created, err := s.CreateUserIfMissing(&User{ID: "bob", Source: "jwt", Plan: "free"})
	if err != nil || !created {
		t.Fatalf("first create: %v, %v", created, err)
	}
	created, err = s.CreateUserIfMissing(&User{ID: "bob", Source: "jwt", Plan: "pro"})
	if err != nil || created {
		t.Fatalf("second create: %v, %v", created, err)
	}
	if u, _ := s.GetUser("bob"); u.Plan != "free" || u.Source != "jwt" || u.Created.IsZero() {
		t.Errorf("existing user was overwritten: %+v", u)
	}
	if _, err := s.CreateUserIfMissing(&User{ID: ""}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty id: %v, want ErrInvalid", err)
	}
	// A given creation time is kept.
	if _, err := s.CreateUserIfMissing(&User{ID: "carol", Created: t0.Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.GetUser("carol"); !u.Created.Equal(t0.Add(-48 * time.Hour)) {
		t.Errorf("carol created %v", u.Created)
	}
}

func TestListUsersPagination(t *testing.T) {
	s := newStore(t)
	const n = 1000
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("user-%04d", i))
	}
	// Insert in random order: the listing must not depend on it.
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range r.Perm(n) {
		if err := s.PutUser(&User{ID: want[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := s.CountUsers(); err != nil || c != n {
		t.Fatalf("CountUsers = %d, %v", c, err)
	}

	for _, tt := range []struct {
		limit, pageSize int
	}{{1, 1}, {7, 7}, {333, 333}, {1000, 1000}, {0, 100}, {-5, 100}, {5000, 1000}} {
		var got []string
		cursor, pages := "", 0
		for {
			users, next, err := s.ListUsers(cursor, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(users) > tt.pageSize || (next != "" && len(users) != tt.pageSize) {
				t.Fatalf("limit %d: page of %d users (next %q)", tt.limit, len(users), next)
			}
			for _, u := range users {
				got = append(got, u.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: listed %d users, not each once in order", tt.limit, len(got))
		}
		if wantPages := (n + tt.pageSize - 1) / tt.pageSize; pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", tt.limit, pages, wantPages)
		}
	}

	// A cursor naming a deleted user still continues after it.
	users, next, _ := s.ListUsers("", 10)
	if _, err := s.DeleteUser(users[9].ID); err != nil {
		t.Fatal(err)
	}
	page, _, err := s.ListUsers(next, 1)
	if err != nil || len(page) != 1 || page[0].ID != want[10] {
		t.Errorf("after deleting the cursor's user: %+v, %v", page, err)
	}

	for _, bad := range []string{"!!!", "a b"} {
		if _, _, err := s.ListUsers(bad, 10); !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor %q: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestListUsersEmpty(t *testing.T) {
	s := newStore(t)
	users, next, err := s.ListUsers("", 0)
	if err != nil || users == nil || len(users) != 0 || next != "" {
		t.Errorf("ListUsers on an empty store = %v, %q, %v; want [], \"\", nil", users, next, err)
	}
	if c, err := s.CountUsers(); err != nil || c != 0 {
		t.Errorf("CountUsers = %d, %v", c, err)
	}
}

func TestDeleteUser(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{"alice", "bob"} {
		if err := s.PutUser(&User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	revokedAt := t0.Add(-time.Hour)
	keys := []*Key{
		{ID: "a1", UserID: "alice", Hash: [32]byte{1}},
		{ID: "a2", UserID: "alice", Hash: [32]byte{2}, Revoked: revokedAt},
		{ID: "b1", UserID: "bob", Hash: [32]byte{3}},
	}
	for _, k := range keys {
		if err := s.PutKey(k); err != nil {
			t.Fatal(err)
		}
	}
	recs := []Record{
		{Time: t0, User: "alice", KeyID: "a1", Model: "m", PromptTokens: 10, CompletionTokens: 5},
		{Time: t0, User: "bob", KeyID: "b1", Model: "m", PromptTokens: 1, CompletionTokens: 1},
	}
	err := s.Commit(&Batch{Records: recs, Counters: map[string][]byte{"alice": {1}, "bob": {2}}})
	if err != nil {
		t.Fatal(err)
	}

	revoked, err := s.DeleteUser("alice")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(revoked)
	if !slices.Equal(revoked, []string{"a1", "a2"}) {
		t.Errorf("revoked %v, want [a1 a2]", revoked)
	}
	if _, err := s.GetUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("alice still there: %v", err)
	}
	if c, _ := s.LoadCounters("alice"); c != nil {
		t.Errorf("alice's counters survived: %v", c)
	}
	if k, _ := s.GetKey("a1"); k.Revoked.IsZero() || k.Active(t0) {
		t.Errorf("a1 not revoked: %+v", k)
	}
	if k, _ := s.GetKey("a2"); !k.Revoked.Equal(revokedAt) {
		t.Errorf("a2's earlier revocation time changed to %v", k.Revoked)
	}
	if k, _ := s.KeyByHash([32]byte{1}); k == nil || k.Revoked.IsZero() {
		t.Errorf("a1 by hash: %+v", k)
	}
	// Bob is untouched.
	if k, _ := s.GetKey("b1"); !k.Revoked.IsZero() {
		t.Errorf("bob's key revoked")
	}
	if c, _ := s.LoadCounters("bob"); len(c) != 1 || c[0] != 2 {
		t.Errorf("bob's counters: %v", c)
	}
	// Records and aggregates stay.
	if got, _, _ := s.Records(RecordQuery{User: "alice"}); len(got) != 1 || got[0] != recs[0] {
		t.Errorf("alice's records: %+v", got)
	}
	if rows, _ := s.Usage(UsageQuery{User: "alice"}); len(rows) != 1 || rows[0].TotalTokens != 15 {
		t.Errorf("alice's usage: %+v", rows)
	}
	// A flush racing the delete does not bring the counters back.
	if err := s.Commit(&Batch{Counters: map[string][]byte{"alice": {9}}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.LoadCounters("alice"); c != nil {
		t.Errorf("counters of a deleted user came back: %v", c)
	}

	if _, err := s.DeleteUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if c, _ := s.CountUsers(); c != 1 {
		t.Errorf("CountUsers = %d, want 1", c)
	}
}
