package itest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// messagesBody is an Anthropic Messages request.
func messagesBody(stream bool, maxTokens int) map[string]any {
	return map[string]any{"model": "sim-model", "max_tokens": maxTokens, "stream": stream, "system": "Be brief.",
		"messages": []map[string]any{{"role": "user", "content": "Write a haiku about the sea."}}}
}

// anthropicError is Anthropic's error envelope, with the gate's code.
type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type, Message, Code string
	} `json:"error"`
}

func decodeAnthropicError(t testing.TB, b []byte) anthropicError {
	t.Helper()
	var e anthropicError
	if err := json.Unmarshal(b, &e); err != nil || e.Type != "error" || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an Anthropic error: %s (%v)", b, err)
	}
	return e
}

// TestMessagesAPI: vLLM's Anthropic Messages API (/v1/messages) is metered
// like chat, driven by Anthropic's Go SDK with a key the admin API issued
// (sent as x-api-key, as the SDK does): the usage recorded is what the
// emulator counted, streaming or not, and the gate's errors there come in
// Anthropic's envelope, which the SDK reads.
func TestMessagesAPI(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 12},
		global: "plan team {\n\t\t\ttokens 100000 per day\n\t\t}", site: "plan team"})
	if st := e.admin("PUT", "/llm_gate/users/claude", map[string]any{"plan": "team"}, nil); st != 200 && st != 201 {
		t.Fatalf("PUT user: %d", st)
	}
	var key struct{ ID, Key string }
	if st := e.admin("POST", "/llm_gate/users/claude/keys", map[string]any{"name": "sdk"}, &key); st != 201 {
		t.Fatalf("POST key: %d", st)
	}
	client := anthropic.NewClient(option.WithBaseURL(e.base), option.WithAPIKey(key.Key), option.WithMaxRetries(0))
	params := anthropic.MessageNewParams{
		Model:     "sim-model",
		MaxTokens: 64,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Write a haiku about the sea."))},
	}
	check := func(t *testing.T, n int, before vllmsim.Counters, in, out int64) {
		t.Helper()
		after := e.sim.Counters()
		r := e.waitRecords("claude", n)[0]
		prompt, gen := after.PromptTokens-before.PromptTokens, after.GenerationTokens-before.GenerationTokens
		if r.PromptTokens != prompt || r.CompletionTokens != gen || r.Estimated || r.Endpoint != "messages" || r.KeyID != key.ID {
			t.Fatalf("record %+v; the emulator counted prompt %d, generation %d", r, prompt, gen)
		}
		if in != prompt || out != gen || gen == 0 {
			t.Fatalf("the SDK read usage %d + %d; the emulator counted %d + %d", in, out, prompt, gen)
		}
	}

	t.Run("message", func(t *testing.T) {
		before := e.sim.Counters()
		msg, err := client.Messages.New(t.Context(), params)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Content) == 0 || msg.Content[0].Text == "" {
			t.Fatalf("no text: %+v", msg)
		}
		check(t, 1, before, msg.Usage.InputTokens, msg.Usage.OutputTokens)
	})

	t.Run("stream", func(t *testing.T) {
		before := e.sim.Counters()
		stream := client.Messages.NewStreaming(t.Context(), params)
		var msg anthropic.Message
		events := 0
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
			events++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if events < 5 || len(msg.Content) == 0 || msg.Content[0].Text == "" {
			t.Fatalf("%d events, message %+v", events, msg)
		}
		check(t, 2, before, msg.Usage.InputTokens, msg.Usage.OutputTokens)
		// Nothing was added to the stream the client sees: vLLM's own
		// events, and its trailing data: [DONE].
		resp := e.post("/v1/messages", "", messagesBody(true, 8), "x-api-key", key.Key)
		b := string(mustStatus(t, resp, 200))
		if !strings.HasPrefix(b, "event: message_start\ndata: ") || !strings.HasSuffix(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\ndata: [DONE]\n\n") ||
			resp.Header.Get("X-Ratelimit-Limit-Tokens") != "100000" {
			t.Fatalf("stream %q, headers %v", b, resp.Header)
		}
	})

	t.Run("errors in Anthropic's envelope", func(t *testing.T) {
		bad := anthropic.NewClient(option.WithBaseURL(e.base), option.WithAPIKey("sk-not-a-key"), option.WithMaxRetries(0))
		_, err := bad.Messages.New(t.Context(), params)
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Type() != "authentication_error" || !strings.Contains(ae.Message, "Incorrect API key") {
			t.Fatalf("SDK error %v", err)
		}
		// No credential at all; and count_tokens, which passes unmetered,
		// refuses the same way.
		for _, path := range []string{"/v1/messages", "/v1/messages/count_tokens"} {
			b := mustStatus(t, e.post(path, "", messagesBody(false, 8)), 401)
			if got := decodeAnthropicError(t, b); got.Error.Type != "authentication_error" || got.Error.Code != "missing_api_key" {
				t.Fatalf("%s: %s", path, b)
			}
		}
		b := mustStatus(t, e.post("/v1/messages", "", `{"model":`, "x-api-key", key.Key), 400)
		if got := decodeAnthropicError(t, b); got.Error.Type != "invalid_request_error" || got.Error.Code != "invalid_json" {
			t.Fatalf("%s", b)
		}
		// The OpenAI paths keep OpenAI's envelope.
		b = mustStatus(t, e.post("/v1/chat/completions", "", chatBody("sim-model", false, nil)), 401)
		decodeError(t, b)
		// vLLM's own refusals pass as vLLM sent them, uncharged.
		n := len(e.records("claude"))
		b = mustStatus(t, e.post("/v1/messages", "", map[string]any{"model": "nope", "max_tokens": 5, "messages": []any{}}, "x-api-key", key.Key), 404)
		if got := decodeAnthropicError(t, b); got.Error.Type != "NotFoundError" {
			t.Fatalf("%s", b)
		}
		if r := e.waitRecords("claude", n+1)[0]; r.Status != 404 || r.PromptTokens+r.CompletionTokens != 0 {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("count_tokens passes unmetered", func(t *testing.T) {
		n := len(e.records("claude"))
		var got struct {
			InputTokens int64 `json:"input_tokens"`
		}
		resp := e.post("/v1/messages/count_tokens", "", messagesBody(false, 8), "x-api-key", key.Key)
		if err := jsonDecode(resp, &got); err != nil || resp.StatusCode != 200 || got.InputTokens == 0 {
			t.Fatalf("%d %+v %v", resp.StatusCode, got, err)
		}
		time.Sleep(50 * time.Millisecond)
		if m := len(e.records("claude")); m != n {
			t.Fatalf("count_tokens left a usage record (%d, then %d)", n, m)
		}
	})
}

// TestMessagesBudget: /v1/messages no longer goes around a budget. A
// max_tokens above what the budget allows is lowered before vLLM sees it,
// an exhausted budget is refused with Anthropic's rate_limit_error (and
// x-should-retry: false, which Anthropic's SDKs obey), and a stream cut
// mid-way is charged vLLM's own prompt count (from message_start) plus the
// relayed text.
func TestMessagesBudget(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 400},
		global: "plan small {\n\t\t\ttokens 1000 per day\n\t\t}", site: "plan small", flush: "0"})
	tk := token(t, "mia", nil)
	b := mustStatus(t, e.post("/v1/messages", tk, messagesBody(false, 100000)), 200)
	var sent struct {
		MaxTokens int `json:"max_tokens"`
	}
	recs := e.sim.Requests()
	if err := json.Unmarshal(recs[len(recs)-1].Body, &sent); err != nil || sent.MaxTokens < 1 || sent.MaxTokens > 1000 {
		t.Fatalf("vLLM was asked for max_tokens %d (%v): the budget did not bind; answer %s", sent.MaxTokens, err, b)
	}
	for i := 0; ; i++ {
		resp := e.post("/v1/messages", tk, messagesBody(true, 300))
		body := readAll(t, resp.Body)
		if resp.StatusCode == 200 {
			if i > 10 {
				t.Fatal("a 1,000-token budget admitted more than ten requests of 300")
			}
			continue
		}
		if resp.StatusCode != 429 || resp.Header.Get("X-Should-Retry") != "false" {
			t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
		}
		if got := decodeAnthropicError(t, body); got.Error.Type != "rate_limit_error" || got.Error.Code != "insufficient_quota" {
			t.Fatalf("%s", body)
		}
		break
	}
	var used int64
	for _, r := range e.records("mia") {
		used += r.PromptTokens + r.CompletionTokens
	}
	if used > 1000+50 { // the budget, and at most the prompt estimates' error
		t.Fatalf("charged %d tokens on a 1,000-token budget", used)
	}

	t.Run("cut stream", func(t *testing.T) {
		before := e.sim.Counters()
		b := string(mustStatus(t, e.post("/v1/messages", token(t, "cut", nil), messagesBody(true, 50), "X-Sim-Error-After", "6"), 200))
		if !strings.Contains(b, "event: error\n") {
			t.Fatalf("no error event: %s", b)
		}
		prompt := e.sim.Counters().PromptTokens - before.PromptTokens
		r := e.waitRecords("cut", 1)[0]
		if !r.Estimated || r.PromptTokens != prompt || r.CompletionTokens < 4 || r.CompletionTokens > 8 {
			t.Fatalf("record %+v; the emulator counted a prompt of %d", r, prompt)
		}
	})
}

// TestMessagesSlotFreedAtTheEnd: a Messages stream gives its place in
// max_parallel back at message_stop, before the client reads it (an
// Anthropic-compatible server need not send vLLM's trailing [DONE]).
func TestMessagesSlotFreedAtTheEnd(t *testing.T) {
	e, freed := slotWatch(t, func(w io.Writer) {
		for _, ev := range []string{
			`message_start`, `{"type":"message_start","message":{"id":"m","content":[],"model":"sim-model","usage":{"input_tokens":5,"output_tokens":0}}}`,
			`content_block_delta`, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}`,
			`message_delta`, `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}`,
			`message_stop`, `{"type":"message_stop"}`,
		} {
			if ev[0] == '{' {
				fmt.Fprintf(w, "data: %s\n\n", ev)
			} else {
				fmt.Fprintf(w, "event: %s\n", ev)
			}
		}
	})
	b := mustStatus(t, e.post("/v1/messages", token(t, "serial", nil), messagesBody(true, 5)), 200)
	if !<-freed {
		t.Fatalf("the request was still in flight after message_stop reached the client: %s", b)
	}
	// Anthropic's own stream gives the prompt in message_start only.
	if r := e.waitRecords("serial", 1)[0]; r.PromptTokens != 5 || r.CompletionTokens != 1 || r.Estimated {
		t.Fatalf("record %+v", r)
	}
}
