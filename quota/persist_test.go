package quota

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is what the store package does with Dirty and Load.
type memStore struct {
	mu    sync.Mutex
	data  map[string][]byte
	loads int
	err   error
}

func (s *memStore) Load(user string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads++
	if s.err != nil {
		return nil, s.err
	}
	return s.data[user], nil
}

func (s *memStore) commit(m map[string][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range m {
		s.data[k] = v
	}
}

func TestPersistenceRoundTrip(t *testing.T) {
	clk := &fakeClock{t: t0}
	st := &memStore{data: map[string][]byte{}}
	a := NewEngine(Options{Now: clk.Now, Load: st.Load})
	var l Limits
	for w := Minute; w < NumWindows; w++ {
		l.Tokens[w] = 1 << 40
		l.Requests[w] = 1 << 30
	}
	users := []string{"alice", "bob", "carol@example.com", ""}
	for i, u := range users {
		for j := 0; j <= i; j++ {
			mustAdmit(t, a, Request{User: u, Limits: l, Prompt: 100, Output: 10}).Settle(int64(100+j), int64(7*i))
			clk.Add(1500 * time.Millisecond)
		}
	}
	mustAdmit(t, a, Request{User: "bob", Limits: l, Prompt: 5}).Cancel()
	dirty := a.Dirty()
	if len(dirty) != len(users) {
		t.Fatalf("dirty users %d, want %d", len(dirty), len(users))
	}
	if again := a.Dirty(); len(again) != 0 {
		t.Fatalf("second Dirty returned %d users", len(again))
	}
	st.commit(dirty)

	b := NewEngine(Options{Now: clk.Now, Load: st.Load})
	for _, u := range users {
		want, err := a.Status(u, l)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Status(u, l)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d windows, want %d", u, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%q: %+v\nwant %+v", u, got[i], want[i])
			}
		}
	}
	// Restored state keeps counting: the minute window still slides.
	clk.Add(30 * time.Second)
	tb, _, _ := b.Usage("carol@example.com")
	ta, _, _ := a.Usage("carol@example.com")
	if tb != ta || tb[Total] == 0 {
		t.Fatalf("usage after restore %v, want %v", tb, ta)
	}
	// A user is loaded once, then served from memory.
	loads := st.loads
	for range 3 {
		mustAdmit(t, b, Request{User: "alice", Limits: l, Prompt: 1}).Cancel()
	}
	if st.loads != loads+1 {
		t.Fatalf("loads %d, want %d", st.loads, loads+1)
	}
	if d := b.Dirty(); len(d) != 1 || d["alice"] == nil {
		t.Fatalf("dirty %v", d)
	}
}

func TestLoadErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	st := &memStore{data: map[string][]byte{"bad": {stateVersion, 1}}, err: boom}
	e := NewEngine(Options{Now: (&fakeClock{t: t0}).Now, Load: st.Load})
	if _, err := e.Admit(Request{User: "u"}); err != boom {
		t.Fatalf("Admit error %v, want the Load error as is", err)
	}
	if _, err := e.Status("u", Limits{}); err != boom {
		t.Fatalf("Status error %v", err)
	}
	if rs := e.Tightest("u", tokens(Day, 1)); rs.HasTokens || rs.HasRequests {
		t.Fatal("Tightest with a failing Load should give no windows")
	}
	if err := e.Reset("u"); err != boom {
		t.Fatalf("Reset error %v", err)
	}
	st.err = nil
	_, err := e.Admit(Request{User: "bad"})
	if err == nil || !strings.Contains(err.Error(), `user "bad"`) {
		t.Fatalf("corrupt state: %v", err)
	}
	if e.Reservations() != 0 {
		t.Fatal("a failed admission holds a reservation")
	}
}

func TestForgetAndMarkDirty(t *testing.T) {
	e, _ := newTestEngine(t0)
	l := tokens(Day, 1000)
	r := mustAdmit(t, e, Request{User: "gone", Limits: l, Prompt: 100, Output: 100})
	mustAdmit(t, e, Request{User: "kept", Limits: l, Prompt: 100, Output: 100}).Settle(100, 100)
	e.Forget("gone")
	e.Forget("never-seen")
	r.Settle(100, 100) // settles against the dropped state
	if d := e.Dirty(); len(d) != 1 || d["kept"] == nil {
		t.Fatalf("dirty %v", d)
	}
	if e.Reservations() != 0 || e.InFlight("gone") != 0 {
		t.Fatal("forgotten reservation still counted")
	}
	if tok, _ := usage(t, e, "gone"); tok[Day] != 0 {
		t.Fatalf("forgotten user starts with %d", tok[Day])
	}
	e.MarkDirty("kept")
	e.MarkDirty("nobody")
	if d := e.Dirty(); len(d) != 1 || d["kept"] == nil {
		t.Fatalf("dirty after MarkDirty %v", d)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := func() []byte {
		e, clk := newTestEngine(t0)
		mustAdmit(t, e, Request{User: "u", Prompt: 3, Output: 4}).Settle(3, 4)
		clk.Add(time.Second)
		mustAdmit(t, e, Request{User: "u", Prompt: 3, Output: 4}).Settle(3, 4)
		return e.Dirty()["u"]
	}()
	var u userState
	if err := u.decode(valid); err != nil {
		t.Fatalf("valid state: %v", err)
	}
	if !bytes.Equal(u.encode(nil), valid) {
		t.Fatal("re-encoding differs")
	}
	// The version byte and five zero windows, then the minute's buckets.
	v1, v2 := windowsOnly(1), windowsOnly(stateVersion)
	cat := func(a []byte, b ...byte) []byte { return append(append([]byte{}, a...), b...) }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"version", append([]byte{3}, valid[1:]...), "version 3"},
		{"truncated", valid[:len(valid)-1], "truncated"},
		{"trailing", cat(valid, 0), "trailing"},
		{"counter out of range", []byte{stateVersion, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "out of range"},
		// Version 1: a count, then second, tokens and requests per bucket.
		{"v1 too many buckets", cat(v1, 61), "out of range"},
		// A bucket whose second is 60 s after another's lands in the same slot.
		{"v1 same slot twice", cat(v1, 2, 10, 1, 0, 70, 1, 0), "two minute buckets"},
		{"v1 empty bucket", cat(v1, 1, 5, 0, 0), "empty minute bucket"},
		{"v1 truncated", cat(v1, 2, 10, 1, 0), "truncated"},
		// Version 2: a mask of ages, the latest second, then tokens and
		// requests per bucket.
		{"v2 age of 60 s", cat(v2, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 100, 1, 1, 1, 1), "out of range"},
		{"v2 no latest bucket", cat(v2, 2, 100, 1, 1), "latest second"},
		{"v2 before second 0", cat(v2, 5, 1, 1, 1, 1, 1), "before second 1"},
		{"v2 empty bucket", cat(v2, 3, 100, 1, 1, 0, 0), "empty minute bucket"},
		{"v2 truncated", cat(v2, 3, 100, 1, 1, 1), "truncated"},
		{"v2 second out of range", cat(v2, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 1), "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u userState
			err := u.decode(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decode: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	e, clk := newTestEngine(t0)
	for i := range 5 {
		mustAdmit(&testing.T{}, e, Request{User: "u", Prompt: int64(i * 1000), Output: 4}).Settle(int64(i*1000), 4)
		clk.Add(7 * time.Second)
	}
	f.Add(e.Dirty()["u"])
	f.Add((&userState{}).encode(nil))
	big := userState{tokens: [NumWindows]int64{Total: maxCount}, start: [NumWindows]int64{Hour: math.MinInt64}}
	f.Add(big.encode(nil))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var u userState
		if err := u.decode(data); err != nil {
			return
		}
		// Whatever decodes must re-encode to bytes that decode to the same
		// state, and counters must be in range.
		enc := u.encode(nil)
		var v userState
		if err := v.decode(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if u.start != v.start || u.tokens != v.tokens || u.requests != v.requests || u.minute != v.minute {
			t.Fatal("round trip changed the state")
		}
		for w := range NumWindows {
			if u.tokens[w] < 0 || u.tokens[w] > maxCount || u.requests[w] < 0 || u.requests[w] > maxCount {
				t.Fatalf("counter out of range: %v %v", u.tokens, u.requests)
			}
		}
		tok, _ := u.minuteSum()
		if tok < 0 {
			t.Fatal("minute sum overflowed")
		}
	})
}

// The running minute sums must always equal the buckets they summarize, as
// the clock jumps forward by any amount, stalls, or goes back.
func TestMinuteRunningSums(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var u userState
	now := t0
	for i := range 200000 {
		switch r.IntN(10) {
		case 0:
			now = now.Add(time.Duration(r.IntN(200)) * time.Second)
		case 1:
			now = now.Add(-time.Duration(r.IntN(90)) * time.Second)
		default:
			now = now.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
		}
		if i%1000 == 999 { // through persistence now and then
			var v userState
			if err := v.decode(u.encode(nil)); err != nil {
				t.Fatal(err)
			}
			u = v
		}
		c := newClock(now)
		u.roll(&c)
		if r.IntN(3) > 0 {
			u.addMinute(r.Int64N(1000), r.Int64N(2))
		}
		var tok, req int64
		for j := range u.minute {
			if b := &u.minute[j]; u.live(b) {
				tok += b.tokens
				req += int64(b.requests)
			}
		}
		if gt, gr := u.minuteSum(); gt != tok || gr != req {
			t.Fatalf("step %d: sums %d/%d, buckets %d/%d", i, gt, gr, tok, req)
		}
		if u.msec < c.sec && c.sec >= 0 {
			t.Fatalf("step %d: minute clock %d behind %d", i, u.msec, c.sec)
		}
	}
}

func TestDecodeDropsExpiredBuckets(t *testing.T) {
	s := append(windowsOnly(1), 2, 100, 5, 1, 30, 7, 1) // seconds 100 and 30: 30 expired
	var u userState
	if err := u.decode(s); err != nil {
		t.Fatal(err)
	}
	if tok, req := u.minuteSum(); tok != 5 || req != 1 || u.msec != 100 {
		t.Fatalf("sums %d/%d at %d; want 5/1 at 100", tok, req, u.msec)
	}
	want := append(windowsOnly(stateVersion), 1, 100, 5, 1)
	if enc := u.encode(nil); !bytes.Equal(enc, want) {
		t.Fatalf("expired bucket re-encoded: %v", enc)
	}
}

// windowsOnly is a state of version v with five zero windows, to which a
// test appends the minute's buckets.
func windowsOnly(v byte) []byte { return append([]byte{v}, make([]byte, 3*(NumWindows-Hour))...) }

// encodeV1 writes u as builds before state version 2 did.
func encodeV1(u *userState) []byte {
	buf := []byte{1}
	for w := Hour; w < NumWindows; w++ {
		buf = binary.AppendVarint(buf, u.start[w])
		buf = binary.AppendUvarint(buf, uint64(u.tokens[w]))
		buf = binary.AppendUvarint(buf, uint64(u.requests[w]))
	}
	var kept []*bucket
	for i := range u.minute {
		if b := &u.minute[i]; u.kept(b) {
			kept = append(kept, b)
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(kept)))
	for _, b := range kept {
		buf = binary.AppendUvarint(buf, uint64(b.sec))
		buf = binary.AppendUvarint(buf, uint64(b.tokens))
		buf = binary.AppendUvarint(buf, uint64(b.requests))
	}
	return buf
}

// TestStateVersions: a state written in version 1 (by an earlier build)
// reads as the same state as in version 2, which is at least 40 % smaller
// for a user with a request every second or two.
func TestStateVersions(t *testing.T) {
	e, clk := newTestEngine(t0)
	var l Limits
	l.Tokens[Day] = 1 << 40
	for i := range 200 {
		clk.Add(1600 * time.Millisecond)
		if i%9 == 0 {
			clk.Add(5 * time.Second) // some gaps in the minute
		}
		mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 20, Output: 16}).Settle(20, int64(16+i%300))
	}
	v2 := e.Dirty()["u"]
	var u, w userState
	if err := u.decode(v2); err != nil {
		t.Fatal(err)
	}
	v1 := encodeV1(&u)
	if err := w.decode(v1); err != nil {
		t.Fatal(err)
	}
	if u.start != w.start || u.tokens != w.tokens || u.requests != w.requests || u.minute != w.minute ||
		u.msec != w.msec || u.mtok != w.mtok || u.mreq != w.mreq {
		t.Fatal("version 1 and 2 read as different states")
	}
	if !bytes.Equal(w.encode(nil), v2) {
		t.Fatal("a version 1 state re-encodes differently")
	}
	n := 0
	for i := range u.minute {
		if u.kept(&u.minute[i]) {
			n++
		}
	}
	if n < 20 {
		t.Fatalf("%d buckets: the test wants a busy minute", n)
	}
	if 10*len(v2) > 6*len(v1) {
		t.Fatalf("version 2 takes %d bytes, version 1 %d", len(v2), len(v1))
	}
	t.Logf("%d bytes, version 1: %d", len(v2), len(v1))
}

// TestDirtyManyUsers: the states of a thousand users, encoded side by side,
// each restore to their own counts.
func TestDirtyManyUsers(t *testing.T) {
	clk := &fakeClock{t: t0}
	st := &memStore{data: map[string][]byte{}}
	a := NewEngine(Options{Now: clk.Now, Load: st.Load})
	var l Limits
	l.Tokens[Day] = 1 << 40
	user := func(i int) string {
		return "user-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strconv.Itoa(i)
	}
	for i := range 1000 {
		mustAdmit(t, a, Request{User: user(i), Limits: l, Prompt: 1}).Settle(int64(1+i), int64(i%5))
	}
	dirty := a.Dirty()
	if len(dirty) != 1000 {
		t.Fatalf("%d dirty users, want 1000", len(dirty))
	}
	st.commit(dirty)
	b := NewEngine(Options{Now: clk.Now, Load: st.Load})
	for i := range 1000 {
		tokens, _, err := b.Usage(user(i))
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(1 + i + i%5); tokens[Day] != want {
			t.Fatalf("%s restored with %d tokens today, want %d", user(i), tokens[Day], want)
		}
	}
}
