package vllmsim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// nullWriter is a flushable ResponseWriter that drops what it gets, to
// measure the emulator's own cost per chunk.
type nullWriter struct {
	h http.Header
	n int
}

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }
func (w *nullWriter) WriteHeader(int)             {}
func (w *nullWriter) Flush()                      {}

// BenchmarkChatChunk measures building, writing and flushing one content
// chunk with continuous usage: the per-token path. It must not allocate.
func BenchmarkChatChunk(b *testing.B) {
	s := New(Config{})
	nw := &nullWriter{h: http.Header{}}
	sw, _ := startStream(nw)
	g := &generation{s: s, choices: []choice{s.newChoice(0, 20, 1<<30, "length")}}
	cs := &chatStream{s: s, sw: sw, g: g, continuous: true,
		prefix: appendChunkPrefix(nil, "chatcmpl-0123456789abcdef", "chat.completion.chunk", 1700000000, "sim-model")}
	c := &g.choices[0]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.emitted = i + 1
		if err := cs.emit(c, i, i+1); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(nw.n / max(b.N, 1)))
}

// BenchmarkChatStreamHTTP is one 256-token chat stream over loopback per
// operation, client included.
func BenchmarkChatStreamHTTP(b *testing.B) {
	_, ts := start(b, Config{DefaultLength: 256})
	body := chatBody("Benchmark me", `"stream":true,"stream_options":{"include_usage":true}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp := call(b, ts, http.MethodPost, "/v1/chat/completions", body)
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	b.ReportMetric(float64(256*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkConcurrentStreams runs 1,000 chat streams at once per operation,
// unpaced (64 tokens as fast as possible) and paced (32 tokens at 100/s
// after a 50 ms TTFT, about 0.36 s per stream).
func BenchmarkConcurrentStreams(b *testing.B) {
	for _, bc := range []struct {
		name   string
		cfg    Config
		tokens int
	}{
		{"unpaced", Config{DefaultLength: 64}, 64},
		{"paced", Config{DefaultLength: 32, TTFT: 50 * time.Millisecond, TokensPerSecond: 100}, 32},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const streams = 1000
			sim, ts := start(b, bc.cfg)
			tr := &http.Transport{MaxIdleConnsPerHost: streams, MaxConnsPerHost: 0}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			body := chatBody("Benchmark me", `"stream":true`)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var wg sync.WaitGroup
				errs := make(chan error, streams)
				for j := 0; j < streams; j++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
						resp, err := client.Do(req)
						if err != nil {
							errs <- err
							return
						}
						if _, err := io.Copy(io.Discard, resp.Body); err != nil {
							errs <- err
						}
						resp.Body.Close()
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := sim.Counters().GenerationTokens; got != int64(b.N*streams*bc.tokens) {
				b.Fatalf("generated %d tokens", got)
			}
			b.ReportMetric(float64(b.N*streams)/b.Elapsed().Seconds(), "streams/s")
			b.ReportMetric(float64(b.N*streams*bc.tokens)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
