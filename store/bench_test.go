package store

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkCommit measures committing usage the way the background writer
// does, with fsync on (the default), for several batch sizes.
func BenchmarkCommit(b *testing.B) {
	for _, sync := range []bool{true, false} {
		for _, size := range []int{1, 100, 1000} {
			name := fmt.Sprintf("records=%d", size)
			if !sync {
				name += "/nosync"
			}
			b.Run(name, func(b *testing.B) {
				s, err := Open(filepath.Join(b.TempDir(), "gate.db"), Options{NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				users := make([]string, 50)
				for i := range users {
					users[i] = fmt.Sprintf("user-%d", i)
					if err := s.PutUser(&User{ID: users[i]}); err != nil {
						b.Fatal(err)
					}
				}
				r := rand.New(rand.NewPCG(1, 1))
				recs := genRecords(r, size, users, []string{"llama-8b", "llama-70b", "qwen"}, time.Minute)
				// A flush carries the requests of the last interval: spread
				// each batch's times over one second.
				for j := range recs {
					recs[j].Time = t0.Add(time.Duration(r.Int64N(int64(time.Second))))
				}
				counters := map[string][]byte{}
				for _, rec := range recs[:min(len(recs), 20)] {
					counters[rec.User] = make([]byte, 64)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					// Move time forward so records append like in production.
					for j := range recs {
						recs[j].Time = recs[j].Time.Add(time.Second)
					}
					if err := s.Commit(&Batch{Records: recs, Counters: counters}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
				reportFile(b, s, b.N*size)
			})
		}
	}
}

func BenchmarkKeyByHash(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "gate.db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 10000
	hashes := make([][32]byte, n)
	for u := range 100 {
		if err := s.PutUser(&User{ID: fmt.Sprintf("user-%d", u)}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		hashes[i] = sha256.Sum256([]byte(fmt.Sprintf("secret-%d", i)))
		k := &Key{ID: fmt.Sprintf("key-%d", i), UserID: fmt.Sprintf("user-%d", i%100), Name: "laptop", Prefix: "sk-abcd", Hash: hashes[i], Created: t0}
		if err := s.PutKey(k); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.KeyByHash(hashes[i%n]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUsageQuery queries 30 days of hourly aggregates for 20 users and
// 3 models (43,200 aggregate entries).
func BenchmarkUsageQuery(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "gate.db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := t0.Add(-30 * 24 * time.Hour).Truncate(time.Hour)
	var recs []Record
	for h := range 30 * 24 {
		for u := range 20 {
			for _, m := range []string{"llama-8b", "llama-70b", "qwen"} {
				recs = append(recs, Record{Time: start.Add(time.Duration(h) * time.Hour), User: fmt.Sprintf("user-%02d", u), Model: m, PromptTokens: 100, CompletionTokens: 50})
			}
		}
		if len(recs) >= 10000 {
			if err := s.Commit(&Batch{Records: recs}); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if err := s.Commit(&Batch{Records: recs}); err != nil {
		b.Fatal(err)
	}
	queries := map[string]UsageQuery{
		"all/user,model,day": {GroupBy: []string{"user", "model", "day"}},
		"all/total":          {},
		"one-user/day":       {User: "user-07", GroupBy: []string{"day"}},
		"one-user/last-day":  {User: "user-07", Since: t0.Add(-24 * time.Hour), GroupBy: []string{"hour"}},
	}
	for name, q := range queries {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rows, err := s.Usage(q)
				if err != nil || len(rows) == 0 {
					b.Fatal(rows, err)
				}
			}
		})
	}
}

func BenchmarkRecordsPage(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "gate.db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(2, 2))
	recs := genRecords(r, 100000, []string{"alice", "bob", "carol", "dave"}, []string{"m"}, 24*time.Hour)
	commitAll(b, s, recs, 10000)
	for _, q := range []RecordQuery{{Limit: 100}, {User: "carol", Limit: 100}} {
		b.Run(fmt.Sprintf("user=%q", q.User), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if page, _, err := s.Records(q); err != nil || len(page) != 100 {
					b.Fatal(len(page), err)
				}
			}
		})
	}
}

// BenchmarkCommitUsers commits one second of traffic (3,000 requests) the
// way the writer does, records and counters, from one user or spread over
// 3,000 of 10,000 users (the bench's many-users scenario): what a flush
// costs per record when every request dirties another user's counters and
// hourly sums. Each user's counters take state bytes: 48 is a user with a
// few requests in the last minute; 128 and 300 a user with one every second
// or two in the quota engine's state version 2 and 1 (forty seconds of the
// minute with a count; five bytes of each one's seven went to its second
// in version 1).
func BenchmarkCommitUsers(b *testing.B) {
	const perFlush, all = 3000, 10000
	for _, c := range []struct{ distinct, state int }{{1, 48}, {perFlush, 48}, {perFlush, 128}, {perFlush, 300}} {
		distinct := c.distinct
		b.Run(fmt.Sprintf("users=%d/state=%d", distinct, c.state), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "gate.db"), Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			users := make([]string, all)
			for i := range users {
				users[i] = fmt.Sprintf("user%05d", i)
				if err := s.PutUser(&User{ID: users[i]}); err != nil {
					b.Fatal(err)
				}
			}
			recs := make([]Record, perFlush)
			tm := t0
			next := 0
			st0 := s.db.Stats().TxStats
			written0 := st0.GetWrite()
			b.ReportAllocs()
			for b.Loop() {
				counters := make(map[string][]byte, distinct)
				for j := range recs {
					u := users[0]
					if distinct > 1 {
						u = users[next%all]
						next++
					}
					tm = tm.Add(time.Second / perFlush)
					recs[j] = Record{Time: tm, User: u, Model: "llama-8b", Endpoint: "chat", Plan: "free", Status: 200, PromptTokens: 20, CompletionTokens: 16}
					counters[u] = make([]byte, c.state)
				}
				if err := s.Commit(&Batch{Records: recs, Counters: counters}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perFlush), "ns/record")
			st := s.db.Stats().TxStats
			b.ReportMetric(float64(st.GetWrite()-written0)/float64(b.N), "writes/commit")
			reportFile(b, s, b.N*perFlush)
		})
	}
}

// BenchmarkCommitOpen commits the open records of 1,000 streams in flight,
// as each commit does while they run (a stream's is rewritten with its
// counts so far): what checkpointing the streams adds to a commit.
func BenchmarkCommitOpen(b *testing.B) {
	const streams = 1000
	s, err := Open(filepath.Join(b.TempDir(), "gate.db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	open := make(map[uint64]Record, streams)
	b.ReportAllocs()
	n := int64(0)
	for b.Loop() {
		n++
		for id := range uint64(streams) {
			open[id+1] = Record{Time: t0, User: fmt.Sprintf("user%03d", id%100), Model: "llama-8b", Endpoint: "chat", Plan: "free",
				Status: 200, PromptTokens: 20, CompletionTokens: 50 * n, Estimated: true, Duration: time.Duration(n) * time.Second}
		}
		if err := s.Commit(&Batch{Open: open}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/stream")
}

// reportFile reports the bytes of the store's pages per record committed
// (up to its high-water mark: the file itself grows in doublings, which
// would hide a difference smaller than one), and the share of those pages
// that are free.
func reportFile(b *testing.B, s *Store, records int) {
	b.Helper()
	var size int64
	if err := s.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/float64(records), "file-B/record")
	st := s.db.Stats()
	b.ReportMetric(float64(st.FreePageN+st.PendingPageN)*float64(s.db.Info().PageSize)/float64(size)*100, "%free")
}
