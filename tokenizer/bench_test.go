package tokenizer

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// benchText returns about n bytes of the named kind of text: "prose" is
// Tom Sawyer when the module cache has it (else testdata/prose.txt, repeated,
// which flatters the cache), "code" is Go standard-library source.
func benchText(b *testing.B, kind string, n int) string {
	b.Helper()
	var s string
	switch kind {
	case "prose":
		if raw, err := os.ReadFile(tomSawyer()); err == nil {
			s = string(raw)
		} else {
			raw, err := os.ReadFile("testdata/prose.txt")
			if err != nil {
				b.Fatal(err)
			}
			s = string(raw)
		}
	case "code":
		s = goSource(b, n)
	}
	for len(s) < n {
		s += "\n" + s
	}
	return s[:n]
}

// BenchmarkCount compares the fast path ("new", warm cache) with
// tiktoken-go ("old") on about 400 KB of English and of Go code.
func BenchmarkCount(b *testing.B) {
	tok, err := Get("cl100k_base")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tok.reference(); err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"prose", "code"} {
		text := benchText(b, kind, 400_000)
		b.Run(kind+"/new", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				tok.count(text) // the text cache would answer every call but the first
			}
		})
		b.Run(kind+"/old", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tok.countReference(text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCount100K times the admission case: a prompt of 100,000 cl100k
// tokens of English, with the piece cache warm ("warm"), with a new cache
// each time ("cold"), counted again from the text cache ("repeat"), and on
// a single goroutine ("serial").
func BenchmarkCount100K(b *testing.B) {
	for _, name := range []string{"cl100k_base", "o200k_base"} {
		tok, err := Get(name)
		if err != nil {
			b.Fatal(err)
		}
		cl, _ := Get("cl100k_base")
		text := benchText(b, "prose", 400_000)
		// Trim (or grow) to 100,000 cl100k tokens.
		for cl.Count(text) < 100_000 {
			text += text[:20_000]
		}
		for n := cl.Count(text); n > 100_000; n = cl.Count(text) {
			text = text[:len(text)-(n-100_000)]
		}
		b.Run(name+"/warm", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				tok.count(text)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		})
		b.Run(name+"/cold", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			cold := &Tokenizer{name: name, m: new(model)}
			for b.Loop() {
				*cold.m = *tok.m
				cold.m.cache = newCountCache()
				cold.count(text)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		})
		b.Run(name+"/repeat", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			tok.Count(text)
			for b.Loop() {
				tok.Count(text) // the same text again: one hash of it
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
		})
		b.Run(name+"/serial", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				tok.m.count(text)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkCountShort counts chat messages of a few hundred and of about a
// hundred bytes: "first" as a new message is (the piece cache warm), "again"
// as a message seen before is (a resent history).
func BenchmarkCountShort(b *testing.B) {
	tok, err := Get("cl100k_base")
	if err != nil {
		b.Fatal(err)
	}
	for _, text := range []string{
		strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20),
		"Could you summarise the attached report in three bullet points, and flag any risks?",
	} {
		name := strconv.Itoa(len(text)) + "B"
		b.Run(name+"/first", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				tok.count(text)
			}
		})
		b.Run(name+"/again", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			tok.Count(text)
			for b.Loop() {
				tok.Count(text)
			}
		})
	}
}

// BenchmarkLoad measures building an encoding's model (rank table and caches).
func BenchmarkLoad(b *testing.B) {
	for _, name := range []string{"cl100k_base", "o200k_base"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var before, after runtime.MemStats
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				m, err := loadModel(name)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(m)
				b.StartTimer()
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-retained")
		})
	}
}

// BenchmarkGCWithFullCaches times a garbage collection with both caches
// full, as they are in a gate that has served varied traffic for a while:
// whatever the caches hold is marked on every cycle of the process, for
// every request Caddy serves. It reports the heap objects the caches hold.
func BenchmarkGCWithFullCaches(b *testing.B) {
	tok, err := Get("cl100k_base")
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Distinct pieces and texts enough to fill every slot several times.
	prose, code := benchText(b, "prose", 400_000), benchText(b, "code", 400_000)
	for i := 0; i < 4*textCacheSlots; i++ {
		tok.Count(prose[i%1000:][:100] + strconv.Itoa(i))
		tok.Count(" w" + strconv.Itoa(i) + "qz")
	}
	tok.count(prose)
	tok.count(code)
	runtime.GC()
	runtime.ReadMemStats(&after)
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(float64(int64(after.HeapObjects)-int64(before.HeapObjects)), "cache-objects")
	runtime.KeepAlive(tok)
}
