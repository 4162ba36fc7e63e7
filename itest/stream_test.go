package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// waitRecords polls the admin API until user has n records committed.
func (e *env) waitRecords(user string, n int) []record {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := e.records(user)
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("user %s: %d records, want %d", user, len(recs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSSEEventsArriveAsSent proves the gate relays each event when the
// upstream sends it: with the emulator producing 10 tokens at 20 tokens/s,
// the client must see them spread over ~450 ms, not in one burst at the end.
func TestSSEEventsArriveAsSent(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 20, DefaultLength: 10}})
	start := time.Now()
	resp := e.post("/v1/chat/completions", token(t, "alice", nil), chatBody("sim-model", true, nil))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp.Body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	events := readSSE(t, resp.Body)
	resp.Body.Close()
	if len(events) > 0 {
		t.Logf("first event after %v", events[0].at.Sub(start))
	}
	// At 20 tokens/s the emulator spends (n-1)×50 ms between the first and
	// last token. A buffering proxy delivers them within a millisecond.
	assertUnbuffered(t, events)
}

var volatile = regexp.MustCompile(`"(id|created|created_at|system_fingerprint)":("[^"]*"|\d+)`)

func normalize(b []byte) string { return volatile.ReplaceAllString(string(b), `"$1":X`) }

// TestHiddenUsageChunk: a client that did not ask for usage sees the stream
// byte for byte as the emulator sends it; one that asked sees the usage chunk.
func TestHiddenUsageChunk(t *testing.T) {
	e := newEnv(t, envOpts{})
	body := chatBody("sim-model", true, map[string]any{"max_tokens": 12})
	direct, err := http.Post(e.simURL+"/v1/chat/completions", "application/json", strings.NewReader(mustJSON(t, body)))
	if err != nil {
		t.Fatal(err)
	}
	want := readAll(t, direct.Body)
	got := mustStatus(t, e.post("/v1/chat/completions", token(t, "bob", nil), body), 200)
	if normalize(got) != normalize(want) {
		t.Fatalf("stream through the gate differs from the emulator's:\n got: %s\nwant: %s", got, want)
	}
	if strings.Contains(string(got), `"usage"`) {
		t.Fatalf("usage leaked to a client that did not ask: %s", got)
	}
	// The emulator did receive the injected stream_options.
	reqs := e.sim.Requests()
	last := reqs[len(reqs)-1]
	if !strings.Contains(string(last.Body), `"include_usage":true`) {
		t.Fatalf("upstream request lacks include_usage: %s", last.Body)
	}
	if strings.Contains(string(last.Body), testSecret) || last.Header.Get("Authorization") != "" {
		t.Fatalf("credential forwarded upstream: %v", last.Header)
	}

	body["stream_options"] = map[string]any{"include_usage": true}
	got = mustStatus(t, e.post("/v1/chat/completions", token(t, "bob", nil), body), 200)
	if !strings.Contains(string(got), `"choices":[],"usage":{`) {
		t.Fatalf("client asked for usage and did not get it: %s", got)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUsageMatchesEmulator: what the gate records equals what the emulator
// counted, exactly, for every endpoint, streaming or not.
func TestUsageMatchesEmulator(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{VaryLengths: true}}) // choices of one request differ in length
	cases := []struct {
		name, path string
		body       map[string]any
		hdr        []string
	}{
		{"chat stream", "/v1/chat/completions", chatBody("sim-model", true, nil), nil},
		{"chat", "/v1/chat/completions", chatBody("sim-model", false, nil), nil},
		{"chat stream n=3", "/v1/chat/completions", chatBody("sim-model", true, map[string]any{"n": 3, "max_tokens": 7}), nil},
		{"chat n=3 of different lengths", "/v1/chat/completions", chatBody("sim-model", false, map[string]any{"n": 3}), nil},
		{"chat stream n=3 of different lengths, continuous, cut", "/v1/chat/completions", chatBody("sim-model", true, map[string]any{"n": 3,
			"stream_options": map[string]any{"include_usage": true, "continuous_usage_stats": true}}), []string{"X-Sim-Error-After", "15"}},
		{"chat stream 4 tokens per chunk", "/v1/chat/completions", chatBody("sim-model", true, nil), []string{"X-Sim-Chunk", "4"}},
		{"chat stream client usage", "/v1/chat/completions", chatBody("sim-model", true, map[string]any{"stream_options": map[string]any{"include_usage": true}}), nil},
		{"chat stream include_usage null", "/v1/chat/completions", chatBody("sim-model", true, map[string]any{"stream_options": map[string]any{"include_usage": nil}}), nil},
		{"completions max_tokens null", "/v1/completions", map[string]any{"model": "sim-model", "prompt": "Once upon a time", "max_tokens": nil}, nil},
		{"chat stream continuous", "/v1/chat/completions", chatBody("sim-model", true, map[string]any{"stream_options": map[string]any{"include_usage": true, "continuous_usage_stats": true}}), nil},
		{"completions stream 2 prompts", "/v1/completions", map[string]any{"model": "sim-model", "prompt": []string{"Once upon a time", "In a galaxy"}, "stream": true, "max_tokens": 9}, nil},
		// No final usage chunk: the usage comes from the continuous usage
		// of each choice, whose prompt is its own prompt's.
		{"completions stream 2 prompts n=2 continuous, cut", "/v1/completions", map[string]any{"model": "sim-model", "prompt": []string{"Once upon a time there was a king", "In a galaxy"}, "n": 2, "stream": true, "max_tokens": 9,
			"stream_options": map[string]any{"include_usage": true, "continuous_usage_stats": true}}, []string{"X-Sim-Error-After", "3"}},
		{"completions", "/v1/completions", map[string]any{"model": "sim-model", "prompt": "Once upon a time", "max_tokens": 5}, nil},
		{"embeddings", "/v1/embeddings", map[string]any{"model": "sim-model", "input": []string{"hello world", "good night moon"}}, nil},
		{"responses", "/v1/responses", map[string]any{"model": "sim-model", "input": "Write a haiku."}, nil},
		{"responses stream", "/v1/responses", map[string]any{"model": "sim-model", "input": "Write a haiku.", "stream": true}, nil},
		{"chat batch", "/v1/chat/completions/batch", map[string]any{"model": "sim-model", "messages": [][]map[string]any{
			{{"role": "user", "content": "Write a haiku."}}, {{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a sea."}}}}, nil},
		{"rerank", "/v1/rerank", map[string]any{"model": "sim-model", "query": "What is the capital of France?",
			"documents": []string{"Paris is the capital of France.", "Berlin is in Germany."}, "top_n": 1}, nil},
		{"score", "/v1/score", map[string]any{"model": "sim-model", "text_1": "a query", "text_2": []string{"one doc", "two doc"}}, nil},
		{"messages", "/v1/messages", messagesBody(false, 30), nil},
		{"messages stream", "/v1/messages", messagesBody(true, 30), nil},
		{"messages stream 4 tokens per chunk", "/v1/messages", messagesBody(true, 30), []string{"X-Sim-Chunk", "4"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := "u" + string(rune('a'+i))
			before := e.sim.Counters()
			b := mustStatus(t, e.post(c.path, token(t, user, nil), c.body, c.hdr...), 200)
			after := e.sim.Counters()
			recs := e.waitRecords(user, 1)
			r := recs[0]
			prompt, gen := after.PromptTokens-before.PromptTokens, after.GenerationTokens-before.GenerationTokens
			// A cut stream's running counts are exact, and marked estimated
			// all the same: vLLM's final word never came.
			if r.PromptTokens != prompt || r.CompletionTokens != gen || r.Estimated != strings.HasSuffix(c.name, ", cut") {
				t.Fatalf("recorded prompt=%d completion=%d estimated=%v; emulator counted prompt=%d generation=%d\nresponse: %.400s",
					r.PromptTokens, r.CompletionTokens, r.Estimated, prompt, gen, b)
			}
			if prompt == 0 {
				t.Fatal("emulator counted no prompt tokens")
			}
			if r.Endpoint == "" || r.Model != "sim-model" || r.Status != 200 {
				t.Fatalf("record %+v", r)
			}
		})
	}
}

// TestCutStreamsAreEstimated: a mid-stream error and a client that goes
// away both leave an estimated record of what was relayed.
func TestCutStreamsAreEstimated(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 40}})
	t.Run("mid-stream error", func(t *testing.T) {
		b := mustStatus(t, e.post("/v1/chat/completions", token(t, "err", nil), chatBody("sim-model", true, nil), "X-Sim-Error-After", "5"), 200)
		r := e.waitRecords("err", 1)[0]
		if !r.Estimated || r.CompletionTokens < 4 || r.CompletionTokens > 7 || r.PromptTokens == 0 {
			t.Fatalf("record %+v after %s", r, b)
		}
	})
	t.Run("upstream crash", func(t *testing.T) {
		resp := e.post("/v1/chat/completions", token(t, "crash", nil), chatBody("sim-model", true, nil), "X-Sim-Crash-After", "6")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r := e.waitRecords("crash", 1)[0]
		if !r.Estimated || r.CompletionTokens < 5 || r.CompletionTokens > 8 {
			t.Fatalf("record %+v", r)
		}
	})
	// vLLM answers 200 before the engine starts: an upstream cut before
	// the first token still had the prompt read (the README's promise).
	t.Run("upstream cut before the first token", func(t *testing.T) {
		resp := e.post("/v1/chat/completions", token(t, "early-cut", nil), chatBody("sim-model", true, nil), "X-Sim-Crash-After", "0")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r := e.waitRecords("early-cut", 1)[0]
		if resp.StatusCode != 200 || !r.Estimated || r.PromptTokens == 0 || r.CompletionTokens != 0 {
			t.Fatalf("status %d, record %+v; want the prompt charged, estimated", resp.StatusCode, r)
		}
	})
	// Continuous usage gives running counts: exact as far as they go, but
	// the stream ended without vLLM's final word.
	t.Run("continuous usage, then an error", func(t *testing.T) {
		body := chatBody("sim-model", true, map[string]any{"stream_options": map[string]any{"include_usage": true, "continuous_usage_stats": true}})
		b := mustStatus(t, e.post("/v1/chat/completions", token(t, "cont-err", nil), body, "X-Sim-Error-After", "5"), 200)
		r := e.waitRecords("cont-err", 1)[0]
		if !r.Estimated || r.CompletionTokens != 5 || r.PromptTokens == 0 {
			t.Fatalf("record %+v after %s; want the running counts, estimated", r, b)
		}
	})
	// vLLM's 500 to a non-streaming request (generation failed) cannot say
	// what it generated: the prompt it processed is charged (VLLM.md §10.1
	// rule 5), where a refusal (4xx) is not.
	t.Run("500 after generation", func(t *testing.T) {
		mustStatus(t, e.post("/v1/chat/completions", token(t, "failed", nil), chatBody("sim-model", false, nil), "X-Sim-Error-After", "5"), 500)
		r := e.waitRecords("failed", 1)[0]
		if !r.Estimated || r.PromptTokens == 0 || r.CompletionTokens != 0 || r.Status != 500 {
			t.Fatalf("record %+v; want the prompt charged, estimated", r)
		}
		mustStatus(t, e.post("/v1/chat/completions", token(t, "refused", nil), chatBody("sim-model", false, nil), "X-Sim-Status", "400"), 400)
		if r := e.waitRecords("refused", 1)[0]; r.PromptTokens != 0 || r.CompletionTokens != 0 {
			t.Fatalf("a 400 was charged: %+v", r)
		}
	})
	// echo repeats the prompt (completions) or the assistant's last
	// message (chat) before the answer: that text is not generated.
	t.Run("echo, then an error", func(t *testing.T) {
		long := strings.Repeat("the quick brown fox jumps over the lazy dog ", 20)
		for _, c := range []struct {
			user, path string
			body       map[string]any
		}{
			{"echo-cmpl", "/v1/completions", map[string]any{"model": "sim-model", "prompt": long, "echo": true, "stream": true, "max_tokens": 30, "n": 2}},
			{"echo-chat", "/v1/chat/completions", chatBody("sim-model", true, map[string]any{"echo": true, "messages": []map[string]any{
				{"role": "user", "content": "Go on."}, {"role": "assistant", "content": long}}})},
		} {
			b := mustStatus(t, e.post(c.path, token(t, c.user, nil), c.body, "X-Sim-Error-After", "5"), 200)
			if !strings.Contains(string(b), "lazy dog") {
				t.Fatalf("%s: no echo in %.300s", c.user, b)
			}
			r := e.waitRecords(c.user, 1)[0]
			choices := int64(1)
			if c.user == "echo-cmpl" {
				choices = 2
			}
			if !r.Estimated || r.CompletionTokens < 4*choices || r.CompletionTokens > 7*choices || r.PromptTokens < 150 {
				t.Errorf("%s: record %+v; want about 5 tokens a choice generated", c.user, r)
			}
		}
	})
	t.Run("client disconnect", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", e.base+"/v1/chat/completions",
			strings.NewReader(mustJSON(t, chatBody("sim-model", true, nil))))
		req.Header.Set("Authorization", "Bearer "+token(t, "gone", nil))
		req.Header.Set("X-Sim-TPS", "50")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1)
		var seen []byte
		for len(seen) < 600 { // a few events
			n, err := resp.Body.Read(buf)
			if err != nil {
				t.Fatalf("%v after %q", err, seen)
			}
			seen = append(seen, buf[:n]...)
		}
		cancel()
		resp.Body.Close()
		r := e.waitRecords("gone", 1)[0]
		if !r.Estimated || r.CompletionTokens < 1 || r.CompletionTokens >= 40 {
			t.Fatalf("record %+v", r)
		}
		deadline := time.Now().Add(5 * time.Second)
		for e.sim.Counters().Aborted == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if e.sim.Counters().Aborted == 0 {
			t.Fatal("the emulator never saw the abort: the gate did not cancel upstream")
		}
	})
	// A non-streaming request whose client gives up before the answer:
	// vLLM read the prompt and was generating, so the prompt is charged
	// (it used to be free, however long the prompt and the generation).
	t.Run("client gone before the answer", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", e.base+"/v1/chat/completions",
			strings.NewReader(mustJSON(t, chatBody("sim-model", false, nil))))
		req.Header.Set("Authorization", "Bearer "+token(t, "impatient", nil))
		req.Header.Set("X-Sim-TPS", "50") // 40 tokens: 0.8 s
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("answered %d before the client's timeout", resp.StatusCode)
		}
		r := e.waitRecords("impatient", 1)[0]
		if !r.Estimated || r.PromptTokens == 0 || r.CompletionTokens != 0 {
			t.Fatalf("record %+v; want the prompt charged, estimated", r)
		}
	})
}

// TestEmptyStreamOptions: "stream_options":{} asks current vLLM for the
// usage chunk, and asked vLLM of 2024 for nothing. The gate spells
// include_usage out, so that either one sends the chunk: the usage is exact
// on both, and the client, who expects the chunk, sees it.
func TestEmptyStreamOptions(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy default %v", legacy), func(t *testing.T) {
			e := newEnv(t, envOpts{sim: vllmsim.Config{LegacyIncludeUsageDefault: legacy}})
			body := chatBody("sim-model", true, map[string]any{"max_tokens": 6, "stream_options": map[string]any{}})
			got := mustStatus(t, e.post("/v1/chat/completions", token(t, "opts", nil), body), 200)
			if !strings.Contains(string(got), `"choices":[],"usage":{`) {
				t.Fatalf("no usage chunk for the client: %s", got)
			}
			if r := e.waitRecords("opts", 1)[0]; r.Estimated || r.CompletionTokens != 6 {
				t.Fatalf("record %+v; want exact, 6 tokens", r)
			}
		})
	}
}
