package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// MaxUserIDLen is the longest user id in bytes.
const MaxUserIDLen = 256

// User is a user's stored settings. Nil limit pointers inherit from the
// plan; the quota engine decides what they mean.
type User struct {
	ID         string `json:"id"`
	Plan       string `json:"plan,omitempty"`
	TokenLimit *int64 `json:"token_limit,omitempty"`
	// Period is the window word (day, month, …) TokenLimit applies to.
	Period            string   `json:"period,omitempty"`
	TokensPerMinute   *int64   `json:"tokens_per_minute,omitempty"`
	RequestsPerMinute *int64   `json:"requests_per_minute,omitempty"`
	MaxParallel       *int     `json:"max_parallel,omitempty"`
	Models            []string `json:"models,omitempty"`
	Disabled          bool     `json:"disabled"`
	// Source is "admin" for users created through the admin API, "jwt" for
	// those created on their first authenticated request.
	Source  string    `json:"source,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// ValidUserID reports why id cannot be a user id, or nil. Ids are 1 to 256
// bytes of printable UTF-8 without leading or trailing spaces (which are
// invisible in listings and usually a copy-paste slip). '/' is allowed: JWT
// subjects hold it (GitHub's OIDC "repo:org/app:ref:refs/heads/main", SPIFFE
// ids), and admin paths carry it escaped (%2F), each segment unescaped on
// its own.
func ValidUserID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("user id is empty: %w", ErrInvalid)
	case len(id) > MaxUserIDLen:
		return fmt.Errorf("user id is %d bytes, longer than %d: %w", len(id), MaxUserIDLen, ErrInvalid)
	case !utf8.ValidString(id):
		return fmt.Errorf("user id %q is not valid UTF-8: %w", id, ErrInvalid)
	case id[0] == ' ' || id[len(id)-1] == ' ':
		return fmt.Errorf("user id %q has a leading or trailing space: %w", id, ErrInvalid)
	}
	for i, r := range id {
		// IsPrint rejects control characters and every space but ' '.
		if !unicode.IsPrint(r) {
			return fmt.Errorf("user id %q contains a control or non-printable character at byte %d: %w", id, i, ErrInvalid)
		}
	}
	return nil
}

func getUser(tx *bolt.Tx, id string) (*User, error) {
	v := tx.Bucket(bucketUsers).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	u := new(User)
	if err := json.Unmarshal(v, u); err != nil {
		return nil, fmt.Errorf("store: user %q: %w", id, err)
	}
	return u, nil
}

func putUser(tx *bolt.Tx, u *User) error {
	v, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("store: encoding user %q: %w", u.ID, err)
	}
	return tx.Bucket(bucketUsers).Put([]byte(u.ID), v)
}

// GetUser returns the user id; ErrNotFound if there is none.
func (s *Store) GetUser(id string) (*User, error) {
	var u *User
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		u, err = getUser(tx, id)
		return err
	})
	return u, err
}

// PutUser creates or replaces the user u.ID. It stamps u.Updated with the
// current time and u.Created with the stored user's creation time when one
// exists (else with u.Created if set, else now).
func (s *Store) PutUser(u *User) error {
	if err := ValidUserID(u.ID); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		now := s.now().UTC()
		if old, err := getUser(tx, u.ID); err == nil {
			u.Created = old.Created
		} else if u.Created.IsZero() {
			u.Created = now
		}
		u.Updated = now
		return putUser(tx, u)
	})
}

// UpdateUser reads the user id, passes a copy to fn and stores the result, in
// one transaction so concurrent updates cannot lose each other's changes. If
// fn fails, nothing is written and its error is returned as is. fn must not
// change the id. ErrNotFound if there is no such user.
func (s *Store) UpdateUser(id string, fn func(u *User) error) (*User, error) {
	var u *User
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if u, err = getUser(tx, id); err != nil {
			return err
		}
		if err := fn(u); err != nil {
			return err
		}
		if u.ID != id {
			return fmt.Errorf("user %q: an update cannot change the id to %q: %w", id, u.ID, ErrInvalid)
		}
		u.Updated = s.now().UTC()
		return putUser(tx, u)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// CreateUserIfMissing stores u unless a user with its id exists; it reports
// whether it did. Used for users created on their first request, where two
// requests may race to create the same user.
func (s *Store) CreateUserIfMissing(u *User) (created bool, err error) {
	if err := ValidUserID(u.ID); err != nil {
		return false, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(u.ID)) != nil {
			return nil
		}
		now := s.now().UTC()
		if u.Created.IsZero() {
			u.Created = now
		}
		u.Updated = now
		created = true
		return putUser(tx, u)
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// DeleteUser deletes the user id and its counters and revokes its keys. Its
// usage records and aggregates stay. It returns the ids of all the user's
// keys (every one now revoked; already revoked ones keep their time) so
// caches can drop them. ErrNotFound if there is no such user.
func (s *Store) DeleteUser(id string) (revokedKeys []string, err error) {
	// The journal is folded first, while the user exists: its counters land
	// and are deleted below, where a later fold would give them to a user
	// created again with the same id.
	s.jmu.Lock()
	defer s.jmu.Unlock()
	err = s.db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		if users.Get([]byte(id)) == nil {
			return fmt.Errorf("user %q: %w", id, ErrNotFound)
		}
		if err := fold(tx); err != nil {
			return err
		}
		if err := users.Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCounters).Delete([]byte(id)); err != nil {
			return err
		}
		ids := userKeyIDs(tx, id)
		now := s.now().UTC()
		for _, kid := range ids {
			k, err := getKey(tx, kid)
			if err != nil {
				return err
			}
			if k.Revoked.IsZero() {
				k.Revoked = now
				if err := putKeyValue(tx, k); err != nil {
					return err
				}
			}
		}
		revokedKeys = ids
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.j.reset()
	if s.deleted == nil {
		s.deleted = make(map[string]struct{})
	}
	s.deleted[id] = struct{}{}
	return revokedKeys, nil
}

// ListUsers returns up to limit users (default 100, at most 1000) ordered by
// id, starting after cursor ("" for the first page), and the cursor of the
// next page, "" after the last one. Cursors are opaque to callers.
func (s *Store) ListUsers(cursor string, limit int) (users []User, next string, err error) {
	limit = clamp(limit)
	var after []byte
	if cursor != "" {
		after, err = base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(after) == 0 {
			return nil, "", fmt.Errorf("bad users cursor %q: %w", cursor, ErrInvalid)
		}
	}
	users = []User{}
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUsers).Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.First()
		} else if k, v = c.Seek(after); bytes.Equal(k, after) {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			if len(users) == limit {
				next = base64.RawURLEncoding.EncodeToString([]byte(users[len(users)-1].ID))
				return nil
			}
			var u User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("store: user %q: %w", k, err)
			}
			users = append(users, u)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return users, next, nil
}

// CountUsers returns the number of users.
func (s *Store) CountUsers() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketUsers).Stats().KeyN
		return nil
	})
	return n, err
}
