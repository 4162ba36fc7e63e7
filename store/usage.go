package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sums are the totals kept per hour, user and model.
type sums struct {
	requests, prompt, completion, cached, estimated int64
}

func (s *sums) add(o *sums) {
	s.requests = satAdd(s.requests, o.requests)
	s.prompt = satAdd(s.prompt, o.prompt)
	s.completion = satAdd(s.completion, o.completion)
	s.cached = satAdd(s.cached, o.cached)
	s.estimated = satAdd(s.estimated, o.estimated)
}

// satAdd adds two counts, stopping at the largest int64: an upstream may
// report any count, and a sum that wrapped would encode as a value that no
// longer decodes, losing the hour's whole usage.
func satAdd(a, b int64) int64 {
	if c := a + b; (c > a) == (b > 0) {
		return c
	}
	if b > 0 {
		return math.MaxInt64
	}
	return a + b
}

func (s *sums) encode() []byte { return s.append(make([]byte, 0, 5*binary.MaxVarintLen64)) }

// size is how many bytes append adds.
func (s *sums) size() int {
	return uvarintLen(uint64(s.requests)) + uvarintLen(uint64(s.prompt)) + uvarintLen(uint64(s.completion)) +
		uvarintLen(uint64(s.cached)) + uvarintLen(uint64(s.estimated))
}

// append appends the five sums as uvarints.
func (s *sums) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(s.requests))
	b = binary.AppendUvarint(b, uint64(s.prompt))
	b = binary.AppendUvarint(b, uint64(s.completion))
	b = binary.AppendUvarint(b, uint64(s.cached))
	return binary.AppendUvarint(b, uint64(s.estimated))
}

// decodeSums reads an aggregate value; nil (no aggregate yet) and damaged
// values read as zero so one bad entry cannot block every later commit.
func decodeSums(v []byte) sums {
	var s sums
	if v == nil {
		return s
	}
	d := decoder{b: v}
	s.requests = d.int64()
	s.prompt = d.int64()
	s.completion = d.int64()
	s.cached = d.int64()
	s.estimated = d.int64()
	if d.done() != nil {
		return sums{}
	}
	return s
}

// aggKey is hour (Unix seconds, big-endian), user, 0x00, model. The hour
// leads so a time range is one contiguous scan; user ids hold no 0x00, so
// the separator is unambiguous and model, last, may hold anything.
func aggKey(b []byte, hour uint64, user, model string) []byte {
	b = binary.BigEndian.AppendUint64(b, hour)
	b = append(b, user...)
	b = append(b, 0)
	return append(b, model...)
}

// splitAggKey returns an aggregate key's hour, user and model.
func splitAggKey(k []byte) (hour uint64, user, model []byte, ok bool) {
	if len(k) < 9 {
		return 0, nil, nil, false
	}
	rest := k[8:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return 0, nil, nil, false
	}
	return binary.BigEndian.Uint64(k), rest[:i], rest[i+1:], true
}

type aggDelta struct {
	key []byte
	sums
}

// aggregate sums records per aggregate key, in the order of each key's
// first record.
// groups, if known, is about how many keys there are (the last commit's
// count): the map is made that size at once rather than grown.
func aggregate(recs []Record, groups int) []aggDelta {
	idx := make(map[string]int, min(groups, len(recs)))
	var out []aggDelta
	// The keys are cut from one buffer; a full one is left to its keys
	// and a new one started.
	var keys, kb []byte
	j := -1
	for i := range recs {
		r := &recs[i]
		kb = aggKey(kb[:0], uint64(r.Time.Unix()/3600*3600), r.User, r.Model)
		if j < 0 || !bytes.Equal(kb, out[j].key) { // a user's requests often come in runs
			var ok bool
			if j, ok = idx[string(kb)]; !ok {
				if cap(keys)-len(keys) < len(kb) {
					keys = make([]byte, 0, max(4096, len(kb)))
				}
				start := len(keys)
				keys = append(keys, kb...)
				key := keys[start:len(keys):len(keys)]
				j = len(out)
				idx[string(key)] = j
				out = append(out, aggDelta{key: key})
			}
		}
		s := &out[j].sums
		one := sums{requests: 1, prompt: r.PromptTokens, completion: r.CompletionTokens, cached: r.CachedTokens}
		if r.Estimated {
			one.estimated = 1
		}
		s.add(&one)
	}
	return out
}

// Group-by words of UsageQuery.
const (
	GroupUser  = "user"
	GroupModel = "model"
	GroupDay   = "day"
	GroupHour  = "hour"
)

// UsageQuery selects and groups hourly aggregates.
type UsageQuery struct {
	// User and Model keep only this user's or model's usage; "" keeps all.
	User, Model string
	// Since and Until bound the hours: an hour counts when it starts at or
	// after Since truncated to the hour, and before Until. So Until 10:30
	// includes the 10:00 hour, and Since 10:30 does too. Zero is unbounded.
	Since, Until time.Time
	// GroupBy holds any of "user", "model", "day", "hour"; rows are sorted
	// by these in the order given. Empty: one row with the totals.
	GroupBy []string
}

// UsageRow is one group's totals. Only the fields grouped by are set.
type UsageRow struct {
	User  string `json:"user,omitempty"`
	Model string `json:"model,omitempty"`
	// Day is the UTC date, 2006-01-02.
	Day string `json:"day,omitempty"`
	// Hour is the hour's start, RFC 3339 UTC.
	Hour              string `json:"hour,omitempty"`
	Requests          int64  `json:"requests"`
	PromptTokens      int64  `json:"prompt_tokens"`
	CompletionTokens  int64  `json:"completion_tokens"`
	TotalTokens       int64  `json:"total_tokens"`
	CachedTokens      int64  `json:"cached_tokens"`
	EstimatedRequests int64  `json:"estimated_requests"`
}

// parseGroupBy checks and dedupes group-by words, keeping their order.
func parseGroupBy(words []string) ([]string, error) {
	var out []string
	for _, w := range words {
		w = strings.ToLower(strings.TrimSpace(w))
		switch w {
		case GroupUser, GroupModel, GroupDay, GroupHour:
		default:
			return nil, fmt.Errorf("unknown group_by %q (want user, model, day or hour): %w", w, ErrInvalid)
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out, nil
}

// Usage sums the hourly aggregates q selects into rows, one per group.
// Unknown group_by words and a Since after Until are ErrInvalid. It returns
// an empty slice when nothing matches.
func (s *Store) Usage(q UsageQuery) ([]UsageRow, error) {
	groups, err := parseGroupBy(q.GroupBy)
	if err != nil {
		return nil, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Since.After(q.Until) {
		return nil, fmt.Errorf("since %s is after until %s: %w", q.Since.Format(time.RFC3339), q.Until.Format(time.RFC3339), ErrInvalid)
	}
	if q.User != "" {
		if err := ValidUserID(q.User); err != nil {
			return nil, err
		}
	}
	var from uint64
	if !q.Since.IsZero() && q.Since.Unix() > 0 {
		from = uint64(q.Since.Unix()) / 3600 * 3600
	}
	to := uint64(math.MaxUint64) // exclusive, in Unix seconds rounded up
	if !q.Until.IsZero() {
		u := q.Until.Unix()
		if q.Until.Nanosecond() > 0 {
			u++
		}
		if u <= 0 {
			return []UsageRow{}, nil
		}
		to = uint64(u)
	}
	var byUser, byModel, byDay, byHour bool
	for _, g := range groups {
		switch g {
		case GroupUser:
			byUser = true
		case GroupModel:
			byModel = true
		case GroupDay:
			byDay = true
		case GroupHour:
			byHour = true
		}
	}

	rows := make(map[string]*UsageRow)
	var gk []byte
	add := func(hour uint64, user, model []byte, sum *sums) {
		// The group's identity as bytes: map lookups with string(gk) do not
		// allocate, so only new groups cost an allocation.
		gk = gk[:0]
		switch {
		case byHour:
			gk = binary.BigEndian.AppendUint64(gk, hour)
		case byDay:
			gk = binary.BigEndian.AppendUint64(gk, hour/86400*86400)
		}
		if byUser {
			gk = append(append(gk, user...), 0)
		}
		if byModel {
			gk = append(gk, model...)
		}
		row := rows[string(gk)]
		if row == nil {
			row = &UsageRow{}
			t := time.Unix(int64(hour), 0).UTC()
			if byUser {
				row.User = string(user)
			}
			if byModel {
				row.Model = string(model)
			}
			if byDay {
				row.Day = t.Format(time.DateOnly)
			}
			if byHour {
				row.Hour = t.Format(time.RFC3339)
			}
			rows[string(gk)] = row
		}
		row.Requests = satAdd(row.Requests, sum.requests)
		row.PromptTokens = satAdd(row.PromptTokens, sum.prompt)
		row.CompletionTokens = satAdd(row.CompletionTokens, sum.completion)
		row.TotalTokens = satAdd(row.TotalTokens, satAdd(sum.prompt, sum.completion))
		row.CachedTokens = satAdd(row.CachedTokens, sum.cached)
		row.EstimatedRequests = satAdd(row.EstimatedRequests, sum.estimated)
	}

	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAgg).Cursor()
		if q.User == "" {
			var seek []byte
			seek = binary.BigEndian.AppendUint64(seek, from)
			for k, v := c.Seek(seek); k != nil; k, v = c.Next() {
				hour, user, model, ok := splitAggKey(k)
				if !ok {
					return fmt.Errorf("store: aggregate key %x: %w", k, errCorrupt)
				}
				if hour >= to {
					break
				}
				if q.Model == "" || string(model) == q.Model {
					sum := decodeSums(v)
					add(hour, user, model, &sum)
				}
			}
			return journalUsage(tx, &q, from, to, add)
		}
		// One user: within each hour its entries are contiguous, so seek to
		// them hour by hour, jumping over hours without data.
		user := []byte(q.User)
		var prefix []byte
		for hour := from; hour < to; {
			prefix = aggKey(prefix[:0], hour, q.User, "")
			k, v := c.Seek(prefix)
			if len(k) < 8 { // end of bucket
				break
			}
			if h := binary.BigEndian.Uint64(k); h != hour {
				hour = h // the next hour with any data
				continue
			}
			for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				model := k[len(prefix):]
				if q.Model == "" || string(model) == q.Model {
					sum := decodeSums(v)
					add(hour, user, model, &sum)
				}
			}
			hour += 3600
		}
		return journalUsage(tx, &q, from, to, add)
	})
	if err != nil {
		return nil, err
	}

	out := make([]UsageRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b UsageRow) int {
		for _, g := range groups {
			var c int
			switch g {
			case GroupUser:
				c = cmp.Compare(a.User, b.User)
			case GroupModel:
				c = cmp.Compare(a.Model, b.Model)
			case GroupDay:
				c = cmp.Compare(a.Day, b.Day)
			case GroupHour:
				c = cmp.Compare(a.Hour, b.Hour)
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	return out, nil
}

// journalUsage passes add the aggregate deltas of the journal's entries that
// q selects (hours in [from, to)): the usage of the commits not folded yet.
func journalUsage(tx *bolt.Tx, q *UsageQuery, from, to uint64, add func(hour uint64, user, model []byte, sum *sums)) error {
	return tx.Bucket(bucketJournal).ForEach(func(_, v []byte) error {
		_ = decodeJournal(v, nil, func(key []byte, s *sums) {
			hour, user, model, ok := splitAggKey(key)
			if !ok || hour < from || hour >= to ||
				q.User != "" && string(user) != q.User || q.Model != "" && string(model) != q.Model {
				return
			}
			add(hour, user, model, s)
		})
		return nil // a damaged entry is dropped by the next fold too
	})
}
