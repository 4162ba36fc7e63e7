package quota

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// maxCount caps every counter so that sums of a few of them never overflow an
// int64 (limit − used − reserved stays representable).
const maxCount = 1 << 62

// bucket is one second of the sliding minute window. sec is Unix seconds;
// uint32 keeps the struct at 16 bytes and lasts until 2106.
type bucket struct {
	tokens   int64
	sec      uint32
	requests uint32
}

// userState is everything the engine knows about one user. It is guarded by
// its shard's mutex.
type userState struct {
	name     string
	start    [NumWindows]int64 // period start (Unix seconds) for Hour..Month
	tokens   [NumWindows]int64 // used in the current period, Hour..Total
	requests [NumWindows]int64 // made in the current period, Hour..Total
	// The sliding minute: buckets indexed by second mod 60, the latest second
	// seen (msec, never moves back), and running sums of the buckets in
	// (msec−60, msec], so that reading the window touches no bucket and
	// advancing it touches only the buckets that expire.
	minute   [60]bucket
	msec     int64
	mtok     int64
	mreq     int64
	reserved int64 // sum of held reservations
	inFlight int32
	// resets counts admin resets (zero), so that a request in flight
	// knows the tokens it checkpointed before one are gone.
	resets uint32
	dirty  bool // changed since the last Dirty call, and queued in shard.dirty
	gone   bool // dropped by Forget: never persisted again
}

// roll brings the state to clock c: it starts the calendar periods c has
// entered and advances the minute window.
//
// A clock that went back a little keeps the stored (later) periods rather
// than zeroing them, and the minute window stays at the latest second seen:
// the usage is not given back. A clock that went back further (it had
// jumped ahead, and was set right) would hold the user to the future
// period's usage until the clock got there, for as long as the jump, so then
// the usage counted in a period more than one period ahead is counted in the
// current one, and a minute window more than a minute ahead starts afresh.
func (u *userState) roll(c *clock) {
	for w := Hour; w < Total; w++ {
		switch {
		case c.start[w] > u.start[w]:
			u.start[w] = c.start[w]
			u.tokens[w] = 0
			u.requests[w] = 0
		case u.start[w] > c.start[w] && u.start[w] > c.reset(w).Unix():
			u.start[w] = c.start[w]
		}
	}
	sec := int64(secU32(c.sec))
	switch {
	case sec <= u.msec-60:
		u.minute = [60]bucket{}
		u.mtok, u.mreq = 0, 0
	case sec <= u.msec:
		return
	case sec-u.msec >= 60:
		u.mtok, u.mreq = 0, 0
	default:
		// Buckets of seconds msec−59 … sec−60 leave the window.
		for s := u.msec - 59; s <= sec-60; s++ {
			if b := &u.minute[mod(s, 60)]; int64(b.sec) == s {
				u.mtok = max(u.mtok-b.tokens, 0)
				u.mreq -= int64(b.requests)
			}
		}
	}
	u.msec = sec
}

// takeMinute removes up to n tokens from the bucket of second sec, if it
// is still in the minute window, and returns how many it removed.
func (u *userState) takeMinute(sec, n int64) int64 {
	b := &u.minute[mod(sec, 60)]
	if int64(b.sec) != sec || !u.live(b) {
		return 0
	}
	t := min(b.tokens, n)
	b.tokens -= t
	u.mtok = max(u.mtok-t, 0)
	return t
}

// live reports whether a bucket is inside the minute window.
func (u *userState) live(b *bucket) bool {
	return int64(b.sec) > u.msec-60 && int64(b.sec) <= u.msec
}

// minuteSum returns the tokens and requests of the sliding minute, as of the
// last roll.
func (u *userState) minuteSum() (tokens, requests int64) { return u.mtok, u.mreq }

func secU32(sec int64) uint32 {
	return uint32(min(max(sec, 0), math.MaxUint32))
}

// addMinute counts tokens and requests in the bucket of the current second
// (msec; call roll first).
func (u *userState) addMinute(tokens, requests int64) {
	b := &u.minute[u.msec%60]
	if int64(b.sec) != u.msec {
		*b = bucket{sec: uint32(u.msec)} // the slot's old second has expired
	}
	b.tokens = satAdd(b.tokens, tokens)
	b.requests = uint32(min(int64(b.requests)+requests, math.MaxUint32))
	u.mtok = satAdd(u.mtok, tokens)
	u.mreq += requests
}

// used returns the tokens (or requests) counted in window w; the minute sums
// are passed in because the caller reads them once.
func (u *userState) used(w Window, requests bool, minTok, minReq int64) int64 {
	switch {
	case w == Minute && requests:
		return minReq
	case w == Minute:
		return minTok
	case requests:
		return u.requests[w]
	}
	return u.tokens[w]
}

// ageOut returns how long until the minute window has shed at least excess
// tokens (or requests), at least one second. If ageing out alone cannot free
// that much (reservations hold the rest), it is the time until every bucket
// has aged out.
func (u *userState) ageOut(now time.Time, excess int64, requests bool) time.Duration {
	var freed int64
	last := u.msec - 59
	for s := u.msec - 59; s <= u.msec; s++ {
		b := &u.minute[mod(s, 60)]
		if int64(b.sec) != s {
			continue
		}
		v := b.tokens
		if requests {
			v = int64(b.requests)
		}
		if v == 0 {
			continue
		}
		last = s
		freed += v
		if freed >= excess {
			break
		}
	}
	return max(time.Unix(last+60, 0).Sub(now), time.Second)
}

// lastActive returns the latest second in the minute window with a non-zero
// count of the given kind, and whether there is one.
func (u *userState) lastActive(requests bool) (int64, bool) {
	for s := u.msec; s > u.msec-60; s-- {
		b := &u.minute[mod(s, 60)]
		if int64(b.sec) == s && (requests && b.requests != 0 || !requests && b.tokens != 0) {
			return s, true
		}
	}
	return 0, false
}

// zero clears every window (not reservations or in-flight counts), keeping
// the current periods.
func (u *userState) zero(c *clock) {
	u.roll(c)
	u.resets++
	u.tokens = [NumWindows]int64{}
	u.requests = [NumWindows]int64{}
	u.minute = [60]bucket{}
	u.mtok, u.mreq = 0, 0
}

func satAdd(a, b int64) int64 {
	if s := a + b; s < maxCount && s >= 0 {
		return s
	}
	return maxCount
}

// Persisted state, all integers as (u)varints:
//
//	version byte (2)
//	for Hour, Day, Week, Month, Total: period start (varint), tokens, requests
//	mask: bit k set for a bucket of second latest−k (k < 60); bit 0 is set
//	whenever any is, latest being the latest bucket's second
//	if the mask is not 0: latest, then per set bit from k = 0 up: tokens, requests
//
// Version 1 (read, no longer written) had a bucket count, then per bucket
// its second, tokens and requests: five bytes of each bucket's seven or so
// went to its second, and a user who makes a request every second or two
// has forty buckets or more, rewritten in every commit that changes them.
//
// Reservations and in-flight counts are not persisted: they belong to the
// process that holds the requests.
const stateVersion = 2

// encode appends the user's persisted state to buf.
func (u *userState) encode(buf []byte) []byte {
	buf = append(buf, stateVersion)
	for w := Hour; w < NumWindows; w++ {
		buf = binary.AppendVarint(buf, u.start[w])
		buf = binary.AppendUvarint(buf, uint64(u.tokens[w]))
		buf = binary.AppendUvarint(buf, uint64(u.requests[w]))
	}
	// The kept buckets, by age from the latest of them.
	latest := int64(-1)
	for i := range u.minute {
		if b := &u.minute[i]; u.kept(b) {
			latest = max(latest, int64(b.sec))
		}
	}
	var mask uint64
	for i := range u.minute {
		if b := &u.minute[i]; u.kept(b) {
			mask |= 1 << uint(latest-int64(b.sec))
		}
	}
	buf = binary.AppendUvarint(buf, mask)
	if mask == 0 {
		return buf
	}
	buf = binary.AppendUvarint(buf, uint64(latest))
	for k := int64(0); mask>>k != 0; k++ {
		if mask&(1<<k) != 0 {
			b := &u.minute[mod(latest-k, 60)]
			buf = binary.AppendUvarint(buf, uint64(b.tokens))
			buf = binary.AppendUvarint(buf, uint64(b.requests))
		}
	}
	return buf
}

// kept reports whether encode keeps a bucket: a live one with a count.
func (u *userState) kept(b *bucket) bool {
	return u.live(b) && (b.tokens != 0 || b.requests != 0)
}

var errTruncated = errors.New("truncated")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(limit uint64) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	if v > limit {
		d.err = fmt.Errorf("value %d out of range", v)
		return 0
	}
	d.b = d.b[n:]
	return int64(v)
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

// decode replaces the persisted part of u's state with data. It rejects
// anything encode would not produce.
func (u *userState) decode(data []byte) error {
	if len(data) == 0 {
		return errors.New("quota: empty state")
	}
	if data[0] != 1 && data[0] != stateVersion {
		return fmt.Errorf("quota: unsupported state version %d", data[0])
	}
	d := decoder{b: data[1:]}
	var s userState
	for w := Hour; w < NumWindows; w++ {
		s.start[w] = d.varint()
		s.tokens[w] = d.uvarint(maxCount)
		s.requests[w] = d.uvarint(maxCount)
	}
	// put fills the bucket of second sec; it reports a corrupt one.
	put := func(sec, tok, req int64) error {
		b := &s.minute[sec%60]
		if b.tokens != 0 || b.requests != 0 {
			return fmt.Errorf("quota: corrupt state: two minute buckets for second %d mod 60", sec%60)
		}
		if tok == 0 && req == 0 {
			return errors.New("quota: corrupt state: empty minute bucket")
		}
		*b = bucket{sec: uint32(sec), tokens: tok, requests: uint32(req)}
		return nil
	}
	if data[0] == 1 {
		n := d.uvarint(uint64(len(s.minute)))
		for range n {
			sec := d.uvarint(math.MaxUint32)
			tok := d.uvarint(maxCount)
			req := d.uvarint(math.MaxUint32)
			if d.err != nil {
				break
			}
			if err := put(sec, tok, req); err != nil {
				return err
			}
		}
	} else if mask := d.uvarint(1<<len(s.minute) - 1); mask != 0 {
		if mask&1 == 0 {
			return errors.New("quota: corrupt state: no bucket for the latest second")
		}
		latest := d.uvarint(math.MaxUint32)
		for k := int64(0); mask>>k != 0 && d.err == nil; k++ {
			if mask&(1<<k) == 0 {
				continue
			}
			tok := d.uvarint(maxCount)
			req := d.uvarint(math.MaxUint32)
			if d.err != nil {
				break
			}
			if k > latest {
				return fmt.Errorf("quota: corrupt state: a bucket %d s before second %d", k, latest)
			}
			if err := put(latest-k, tok, req); err != nil {
				return err
			}
		}
	}
	if d.err != nil {
		return fmt.Errorf("quota: corrupt state: %w", d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("quota: corrupt state: %d trailing bytes", len(d.b))
	}
	// The latest bucket is the minute clock; older seconds have expired.
	for i := range s.minute {
		s.msec = max(s.msec, int64(s.minute[i].sec))
	}
	for i := range s.minute {
		if b := &s.minute[i]; s.live(b) {
			s.mtok = satAdd(s.mtok, b.tokens)
			s.mreq += int64(b.requests)
		} else {
			*b = bucket{}
		}
	}
	u.start, u.tokens, u.requests = s.start, s.tokens, s.requests
	u.minute, u.msec, u.mtok, u.mreq = s.minute, s.msec, s.mtok, s.mreq
	return nil
}
