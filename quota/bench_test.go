package quota

import (
	"strconv"
	"sync/atomic"
	"testing"
)

func benchUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = "user-" + strconv.Itoa(i)
	}
	return users
}

func benchLimits() Limits {
	var l Limits
	l.Tokens[Minute] = 1 << 40
	l.Tokens[Day] = 1 << 40
	l.Tokens[Month] = 1 << 40
	l.Requests[Minute] = 1 << 30
	l.MaxParallel = 1 << 20
	return l
}

// BenchmarkAdmitSettle: 10,000 users round-robin from parallel goroutines
// (each starting at a different user), one Admit and one Settle per
// iteration, on the real clock.
func BenchmarkAdmitSettle(b *testing.B) {
	users := benchUsers(10000)
	e := NewEngine(Options{})
	l := benchLimits()
	for _, u := range users {
		r, _ := e.Admit(Request{User: u, Limits: l, Prompt: 1})
		r.Cancel()
	}
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seed.Add(1) * 5003
		for pb.Next() {
			i++
			r, err := e.Admit(Request{User: users[i%uint64(len(users))], Limits: l, Prompt: 500, DefaultOutput: 1024})
			if err != nil {
				b.Fatal(err)
			}
			r.Settle(500, 300)
		}
	})
}

// BenchmarkAdmitSettleOneUser measures the worst contention: every goroutine
// on the same user.
func BenchmarkAdmitSettleOneUser(b *testing.B) {
	e := NewEngine(Options{})
	l := benchLimits()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := e.Admit(Request{User: "one", Limits: l, Prompt: 500, DefaultOutput: 1024})
			if err != nil {
				b.Fatal(err)
			}
			r.Settle(500, 300)
		}
	})
}

func BenchmarkDenied(b *testing.B) {
	e := NewEngine(Options{})
	l := tokens(Day, 100)
	r, _ := e.Admit(Request{User: "u", Limits: l, Prompt: 100, PromptOnly: true})
	r.Settle(100, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Admit(Request{User: "u", Limits: l, Prompt: 10}); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkTightest(b *testing.B) {
	e := NewEngine(Options{})
	l := benchLimits()
	r, _ := e.Admit(Request{User: "u", Limits: l, Prompt: 100})
	r.Settle(100, 100)
	b.ReportAllocs()
	for b.Loop() {
		e.Tightest("u", l)
	}
}

func BenchmarkDirty10k(b *testing.B) {
	users := benchUsers(10000)
	e := NewEngine(Options{})
	l := benchLimits()
	b.ReportAllocs()
	for b.Loop() {
		for _, u := range users {
			r, _ := e.Admit(Request{User: u, Limits: l, Prompt: 1})
			r.Settle(1, 1)
		}
		e.Dirty()
	}
}

func BenchmarkAdmitSettleSerial(b *testing.B) {
	users := benchUsers(10000)
	e := NewEngine(Options{})
	l := benchLimits()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r, err := e.Admit(Request{User: users[i%len(users)], Limits: l, Prompt: 500, DefaultOutput: 1024})
		if err != nil {
			b.Fatal(err)
		}
		r.Settle(500, 300)
		i++
	}
}
