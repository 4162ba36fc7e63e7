package store

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxKeyIDLen is the longest key id in bytes.
const MaxKeyIDLen = 256

// Key is an API key. The secret itself is never stored: only its SHA-256,
// which is how a request's key is found (KeyByHash).
type Key struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Name   string `json:"name,omitempty"`
	// Prefix is the first characters of the secret, shown so people can
	// tell their keys apart.
	Prefix string `json:"prefix,omitempty"`
	// Hash is the SHA-256 of the secret. Stored, never shown.
	Hash    [32]byte  `json:"-"`
	Created time.Time `json:"created"`
	// Expires is when the key stops working; zero means never.
	Expires time.Time `json:"expires,omitzero"`
	// Revoked is when the key was revoked; zero means it is not.
	Revoked  time.Time `json:"revoked,omitzero"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Active reports whether the key may be used at now: not revoked and not
// expired.
func (k *Key) Active(now time.Time) bool {
	return k.Revoked.IsZero() && (k.Expires.IsZero() || now.Before(k.Expires))
}

const keyFormat = 1

// encodeKey writes a key's value; the id is the bucket key.
func encodeKey(k *Key) []byte {
	e := encoder{b: make([]byte, 0, 96+len(k.UserID)+len(k.Name)+len(k.Prefix))}
	e.byte(keyFormat)
	e.str(k.UserID)
	e.str(k.Name)
	e.str(k.Prefix)
	e.b = append(e.b, k.Hash[:]...)
	e.time(k.Created)
	e.time(k.Expires)
	e.time(k.Revoked)
	e.time(k.LastUsed)
	return e.b
}

func decodeKey(id string, v []byte) (*Key, error) {
	d := decoder{b: v}
	if d.byte() != keyFormat {
		return nil, fmt.Errorf("key %q: %w", id, errCorrupt)
	}
	k := &Key{ID: id}
	k.UserID = d.str()
	k.Name = d.str()
	k.Prefix = d.str()
	if len(d.b) < len(k.Hash) {
		d.fail()
	} else {
		copy(k.Hash[:], d.b)
		d.b = d.b[len(k.Hash):]
	}
	k.Created = d.time()
	k.Expires = d.time()
	k.Revoked = d.time()
	k.LastUsed = d.time()
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("key %q: %w", id, err)
	}
	return k, nil
}

func getKey(tx *bolt.Tx, id string) (*Key, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("key %q: %w", id, ErrNotFound)
	}
	return decodeKey(id, v)
}

// putKeyValue rewrites a key's value; the indexes must already be right.
func putKeyValue(tx *bolt.Tx, k *Key) error {
	return tx.Bucket(bucketKeys).Put([]byte(k.ID), encodeKey(k))
}

// userKeyIndex is the userkeys entry of a key: user, 0x00, key id. User ids
// hold no 0x00, so a user's entries are exactly those with its prefix.
func userKeyIndex(user, id string) []byte {
	b := make([]byte, 0, len(user)+1+len(id))
	b = append(b, user...)
	b = append(b, 0)
	return append(b, id...)
}

// userKeyIDs lists the ids of a user's keys from the userkeys index.
func userKeyIDs(tx *bolt.Tx, user string) []string {
	prefix := userKeyIndex(user, "")
	ids := []string{}
	c := tx.Bucket(bucketUserKeys).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	return ids
}

// PutKey creates or replaces the key k.ID and indexes it by hash and user.
// Its user must exist (ErrNotFound otherwise). A zero k.Created is set to
// now. A hash that already belongs to another key is refused.
func (s *Store) PutKey(k *Key) error {
	switch {
	case k.ID == "" || len(k.ID) > MaxKeyIDLen:
		return fmt.Errorf("key id must be 1 to %d bytes: %w", MaxKeyIDLen, ErrInvalid)
	case k.Hash == [32]byte{}:
		return fmt.Errorf("key %q has no hash: %w", k.ID, ErrInvalid)
	}
	if err := ValidUserID(k.UserID); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(k.UserID)) == nil {
			return fmt.Errorf("user %q: %w", k.UserID, ErrNotFound)
		}
		hashes := tx.Bucket(bucketKeyHash)
		if owner := hashes.Get(k.Hash[:]); owner != nil && string(owner) != k.ID {
			return fmt.Errorf("key %q: its hash already belongs to key %q: %w", k.ID, owner, ErrInvalid)
		}
		// Replacing a key: drop the index entries its old version made.
		if old, err := getKey(tx, k.ID); err == nil {
			if old.Hash != k.Hash {
				if err := hashes.Delete(old.Hash[:]); err != nil {
					return err
				}
			}
			if old.UserID != k.UserID {
				if err := tx.Bucket(bucketUserKeys).Delete(userKeyIndex(old.UserID, old.ID)); err != nil {
					return err
				}
			}
		}
		if k.Created.IsZero() {
			k.Created = s.now().UTC()
		}
		if err := hashes.Put(k.Hash[:], []byte(k.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserKeys).Put(userKeyIndex(k.UserID, k.ID), nil); err != nil {
			return err
		}
		return putKeyValue(tx, k)
	})
}

// GetKey returns the key id; ErrNotFound if there is none.
func (s *Store) GetKey(id string) (*Key, error) {
	var k *Key
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		k, err = getKey(tx, id)
		return err
	})
	return k, err
}

// KeyByHash returns the key whose secret hashes to h, revoked or expired
// ones included (check Active); ErrNotFound if there is none.
func (s *Store) KeyByHash(h [32]byte) (*Key, error) {
	var k *Key
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		id := tx.Bucket(bucketKeyHash).Get(h[:])
		if id == nil {
			return fmt.Errorf("key hash: %w", ErrNotFound)
		}
		k, err = getKey(tx, string(id))
		return err
	})
	return k, err
}

// KeysByUser returns the user's keys, revoked ones included, oldest first.
// It returns an empty slice (not an error) for a user without keys.
func (s *Store) KeysByUser(user string) ([]Key, error) {
	keys := []Key{}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, id := range userKeyIDs(tx, user) {
			k, err := getKey(tx, id)
			if err != nil {
				return err
			}
			keys = append(keys, *k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].Created.Before(keys[j].Created) })
	return keys, nil
}

// RevokeKey revokes the key id at the given time (now if zero) and returns
// it. Revoking a revoked key changes nothing. ErrNotFound if there is none.
func (s *Store) RevokeKey(id string, at time.Time) (*Key, error) {
	var k *Key
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if k, err = getKey(tx, id); err != nil {
			return err
		}
		if !k.Revoked.IsZero() {
			return nil
		}
		if at.IsZero() {
			at = s.now()
		}
		k.Revoked = at.UTC()
		return putKeyValue(tx, k)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}
