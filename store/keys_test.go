package store

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{"alice", "bob"} {
		if err := s.PutUser(&User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	h := func(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

	bad := []struct {
		name string
		key  Key
		want error
	}{
		{"no id", Key{UserID: "alice", Hash: h("x")}, ErrInvalid},
		{"long id", Key{ID: strings.Repeat("k", 257), UserID: "alice", Hash: h("x")}, ErrInvalid},
		{"no hash", Key{ID: "k", UserID: "alice"}, ErrInvalid},
		{"bad user id", Key{ID: "k", UserID: "a\tb", Hash: h("x")}, ErrInvalid},
		{"unknown user", Key{ID: "k", UserID: "nobody", Hash: h("x")}, ErrNotFound},
	}
	for _, tt := range bad {
		if err := s.PutKey(&tt.key); !errors.Is(err, tt.want) {
			t.Errorf("%s: PutKey = %v, want %v", tt.name, err, tt.want)
		}
	}

	// Created out of order with the ids, to check KeysByUser sorts by time.
	keys := []*Key{
		{ID: "k1", UserID: "alice", Name: "laptop", Prefix: "sk-abc", Hash: h("s1"), Created: t0.Add(2 * time.Hour), Expires: t0.Add(720 * time.Hour)},
		{ID: "k2", UserID: "alice", Name: "ci", Prefix: "sk-def", Hash: h("s2"), Created: t0},
		{ID: "k3", UserID: "bob", Hash: h("s3")}, // Created filled in
		{ID: "k0", UserID: "alice", Hash: h("s0"), Created: t0.Add(time.Hour)},
	}
	for _, k := range keys {
		if err := s.PutKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if keys[2].Created.IsZero() {
		t.Error("PutKey did not set Created")
	}
	for _, k := range keys {
		got, err := s.GetKey(k.ID)
		if err != nil || !reflect.DeepEqual(got, k) {
			t.Errorf("GetKey(%s) = %+v, %v; want %+v", k.ID, got, err, k)
		}
		got, err = s.KeyByHash(k.Hash)
		if err != nil || got.ID != k.ID {
			t.Errorf("KeyByHash(%s) = %+v, %v", k.ID, got, err)
		}
	}
	if _, err := s.GetKey("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetKey(nope) = %v", err)
	}
	if _, err := s.KeyByHash(h("unknown")); !errors.Is(err, ErrNotFound) {
		t.Errorf("KeyByHash(unknown) = %v", err)
	}

	ids := func(user string) []string {
		ks, err := s.KeysByUser(user)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range ks {
			out = append(out, k.ID)
		}
		return out
	}
	if got := ids("alice"); !reflect.DeepEqual(got, []string{"k2", "k0", "k1"}) {
		t.Errorf("KeysByUser(alice) = %v, want [k2 k0 k1]", got)
	}
	if got := ids("bob"); !reflect.DeepEqual(got, []string{"k3"}) {
		t.Errorf("KeysByUser(bob) = %v", got)
	}
	// A user whose id is a prefix of another's sees only its own keys.
	if err := s.PutUser(&User{ID: "al"}); err != nil {
		t.Fatal(err)
	}
	if ks, err := s.KeysByUser("al"); err != nil || ks == nil || len(ks) != 0 {
		t.Errorf("KeysByUser(al) = %v, %v; want []", ks, err)
	}

	// Another key may not take an existing hash.
	if err := s.PutKey(&Key{ID: "k9", UserID: "bob", Hash: h("s1")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate hash: %v, want ErrInvalid", err)
	}
	// Replacing a key with a new hash and owner moves its index entries.
	moved := &Key{ID: "k1", UserID: "bob", Hash: h("s1-rotated"), Created: keys[0].Created}
	if err := s.PutKey(moved); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KeyByHash(h("s1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("old hash still finds the key: %v", err)
	}
	if k, err := s.KeyByHash(h("s1-rotated")); err != nil || k.UserID != "bob" {
		t.Errorf("new hash: %+v, %v", k, err)
	}
	if got := ids("alice"); !reflect.DeepEqual(got, []string{"k2", "k0"}) {
		t.Errorf("alice after the move: %v", got)
	}
	if got := ids("bob"); !reflect.DeepEqual(got, []string{"k3", "k1"}) {
		t.Errorf("bob after the move: %v", got)
	}
}

func TestRevokeKey(t *testing.T) {
	s := newStore(t)
	if err := s.PutUser(&User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	k := &Key{ID: "k1", UserID: "alice", Hash: [32]byte{7}, Created: t0}
	if err := s.PutKey(k); err != nil {
		t.Fatal(err)
	}
	if !k.Active(t0) {
		t.Fatal("new key not active")
	}
	at := t0.Add(time.Minute)
	got, err := s.RevokeKey("k1", at)
	if err != nil || !got.Revoked.Equal(at) {
		t.Fatalf("RevokeKey = %+v, %v", got, err)
	}
	// Idempotent: a second revocation keeps the first time.
	got, err = s.RevokeKey("k1", at.Add(time.Hour))
	if err != nil || !got.Revoked.Equal(at) {
		t.Errorf("second RevokeKey = %+v, %v", got, err)
	}
	if k, _ := s.KeyByHash([32]byte{7}); !k.Revoked.Equal(at) || k.Active(t0) {
		t.Errorf("stored key: %+v", k)
	}
	if _, err := s.RevokeKey("nope", at); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeKey(nope) = %v", err)
	}
	// Zero time means now.
	if err := s.PutKey(&Key{ID: "k2", UserID: "alice", Hash: [32]byte{8}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RevokeKey("k2", time.Time{}); got.Revoked.IsZero() {
		t.Error("RevokeKey with zero time left the key active")
	}
}

func TestKeyActive(t *testing.T) {
	tests := []struct {
		name string
		key  Key
		want bool
	}{
		{"plain", Key{}, true},
		{"expires later", Key{Expires: t0.Add(time.Second)}, true},
		{"expired now", Key{Expires: t0}, false},
		{"expired", Key{Expires: t0.Add(-time.Second)}, false},
		{"revoked", Key{Revoked: t0.Add(-time.Hour)}, false},
	}
	for _, tt := range tests {
		if got := tt.key.Active(t0); got != tt.want {
			t.Errorf("%s: Active = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestKeyJSONHidesHash(t *testing.T) {
	k := Key{ID: "k1", UserID: "alice", Name: "laptop", Prefix: "sk-ab", Hash: sha256.Sum256([]byte("secret")), Created: t0}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, leak := range []string{"hash", "Hash"} {
		if strings.Contains(s, leak) {
			t.Errorf("JSON %s contains %q", s, leak)
		}
	}
	// Zero times are left out; set ones use snake_case names.
	for _, want := range []string{`"user_id":"alice"`, `"created":"2025-03-04T10:30:00Z"`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON %s lacks %s", s, want)
		}
	}
	for _, absent := range []string{"expires", "revoked", "last_used"} {
		if strings.Contains(s, absent) {
			t.Errorf("JSON %s has zero field %s", s, absent)
		}
	}
}

func TestKeyEncodingRoundTrip(t *testing.T) {
	keys := []Key{
		{ID: "a"},
		{ID: "k", UserID: "u", Name: "n", Prefix: "p", Hash: [32]byte{1, 2, 3}, Created: t0,
			Expires: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), Revoked: t0.Add(time.Nanosecond), LastUsed: time.Unix(-5, 7).UTC()},
	}
	for _, k := range keys {
		got, err := decodeKey(k.ID, encodeKey(&k))
		if err != nil || !reflect.DeepEqual(*got, k) {
			t.Errorf("round trip of %+v: %+v, %v", k, got, err)
		}
	}
	enc := encodeKey(&keys[1])
	for _, bad := range [][]byte{nil, {9}, enc[:len(enc)-1], append(enc, 0), enc[:20]} {
		if _, err := decodeKey("k", bad); err == nil {
			t.Errorf("decodeKey(%x) succeeded", bad)
		}
	}
}
