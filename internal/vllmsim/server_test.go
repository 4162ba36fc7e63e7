package vllmsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The exact bytes of a chat stream: key order, role chunk, finishing chunk
// with an EOS delta, usage chunk with empty choices, [DONE].
func TestChatStreamExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	resp := call(t, ts, http.MethodPost, "/v1/chat/completions",
		chatBody("Hello", `"stream":true,"stream_options":{"include_usage":true}`),
		"X-Request-Id", "test", "X-Sim-Length", "3")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	if te := resp.TransferEncoding; len(te) != 1 || te[0] != "chunked" {
		t.Errorf("transfer encoding %v", te)
	}
	body, _ := io.ReadAll(resp.Body)
	pre := `data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":0,"model":"sim-model","choices":[`
	want := pre + `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}` + "\n\n" +
		pre + `{"index":0,"delta":{"content":" water"},"logprobs":null,"finish_reason":null,"token_ids":null}]}` + "\n\n" +
		pre + `{"index":0,"delta":{"content":" it"},"logprobs":null,"finish_reason":null,"token_ids":null}]}` + "\n\n" +
		pre + `{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}` + "\n\n" +
		pre + `],"usage":{"prompt_tokens":8,"total_tokens":11,"completion_tokens":3}}` + "\n\n" +
		"data: [DONE]\n\n"
	if got := normalize(string(body)); got != want {
		t.Errorf("stream:\n%s\nwant:\n%s", got, want)
	}
}

func TestChatJSONExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	resp := call(t, ts, http.MethodPost, "/v1/chat/completions", chatBody("Hello", `"max_tokens":2`), "X-Request-Id", "j")
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) {
		t.Errorf("headers %v, length %d for %d bytes", resp.Header, resp.ContentLength, len(body))
	}
	want := `{"id":"chatcmpl-j","object":"chat.completion","created":0,"model":"sim-model","choices":[{"index":0,"message":{"role":"assistant","content":" water it","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":8,"total_tokens":10,"completion_tokens":2,"prompt_tokens_details":null,"completion_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`
	if got := normalize(string(body)); got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}
}

func TestCompletionsExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	_, body := post(t, ts, "/v1/completions", `{"prompt":"Hello","stream":true,"max_tokens":2}`, "X-Request-Id", "cx")
	pre := `data: {"id":"cmpl-cx","object":"text_completion","created":0,"model":"sim-model","choices":[`
	want := pre + `{"index":0,"text":" that","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}` + "\n\n" +
		pre + `{"index":0,"text":" but","logprobs":null,"finish_reason":"length","stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}` + "\n\n" +
		"data: [DONE]\n\n"
	if got := normalize(body); got != want {
		t.Errorf("stream:\n%s\nwant:\n%s", got, want)
	}
	_, body = post(t, ts, "/v1/completions", `{"prompt":"Hello","max_tokens":2}`, "X-Request-Id", "cx")
	wantJSON := `{"id":"cmpl-cx","object":"text_completion","created":0,"model":"sim-model","choices":[{"index":0,"text":" that but","logprobs":null,"finish_reason":"length","stop_reason":null,"token_ids":null,"prompt_logprobs":null,"prompt_token_ids":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":1,"total_tokens":3,"completion_tokens":2,"prompt_tokens_details":null,"completion_tokens_details":null},"kv_transfer_params":null}`
	if got := normalize(body); got != wantJSON {
		t.Errorf("body:\n%s\nwant:\n%s", got, wantJSON)
	}
}

// Older and newer shapes selected by Config.
func TestCompatSwitches(t *testing.T) {
	t.Run("CompletionsOmitNulls", func(t *testing.T) {
		_, ts := start(t, Config{CompletionsOmitNulls: true})
		_, body := post(t, ts, "/v1/completions", `{"prompt":"Hello","stream":true,"max_tokens":2,"stream_options":{"continuous_usage_stats":true}}`, "X-Request-Id", "cx")
		pre := `data: {"id":"cmpl-cx","object":"text_completion","created":0,"model":"sim-model","choices":[`
		want := pre + `{"index":0,"text":" that"}],"usage":{"prompt_tokens":1,"total_tokens":2,"completion_tokens":1}}` + "\n\n" +
			pre + `{"index":0,"text":" but","finish_reason":"length"}],"usage":{"prompt_tokens":1,"total_tokens":3,"completion_tokens":2}}` + "\n\n" +
			pre + `],"usage":{"prompt_tokens":1,"total_tokens":3,"completion_tokens":2}}` + "\n\n" +
			"data: [DONE]\n\n"
		if got := normalize(body); got != want {
			t.Errorf("stream:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("LegacyFields", func(t *testing.T) {
		_, ts := start(t, Config{LegacyFields: true})
		_, body := post(t, ts, "/v1/chat/completions", chatBody("Hello", `"max_tokens":1`))
		if !strings.Contains(body, `"tool_calls":[],"reasoning_content":null}`) || strings.Contains(body, "token_ids") || strings.Contains(body, "completion_tokens_details") {
			t.Errorf("legacy chat body %s", body)
		}
		_, body = post(t, ts, "/v1/chat/completions", chatBody("Hello", `"max_tokens":1,"stream":true`))
		if strings.Contains(body, "token_ids") {
			t.Errorf("legacy chat stream %s", body)
		}
		_, body = post(t, ts, "/v1/completions", `{"prompt":"x","max_tokens":1}`)
		if strings.Contains(body, "token_ids") {
			t.Errorf("legacy completion %s", body)
		}
		_, body = post(t, ts, "/v1/completions", `{"prompt":"x","max_tokens":1,"stream":true}`)
		if strings.Contains(body, "token_ids") || !strings.Contains(body, `"stop_reason":null}],"usage":null}`) {
			t.Errorf("legacy completion stream %s", body)
		}
	})
	t.Run("LongRequestIDs", func(t *testing.T) {
		for _, long := range []bool{false, true} {
			_, ts := start(t, Config{LongRequestIDs: long})
			_, body := post(t, ts, "/v1/chat/completions", chatBody("x", ""))
			id := decode(t, body)["id"].(string)
			want := 16
			if long {
				want = 32
			}
			if hex := strings.TrimPrefix(id, "chatcmpl-"); len(hex) != want || strings.Trim(hex, hexDigits) != "" {
				t.Errorf("long=%v: id %q", long, id)
			}
		}
	})
	t.Run("PromptTokensDetails", func(t *testing.T) {
		_, ts := start(t, Config{EnablePromptTokensDetails: true})
		_, body := post(t, ts, "/v1/chat/completions", chatBody("x", `"stream":true,"stream_options":{}`))
		if !strings.Contains(body, `"completion_tokens":16,"prompt_tokens_details":{"cached_tokens":0}}}`) {
			t.Errorf("usage chunk without details: %s", body)
		}
		_, body = post(t, ts, "/v1/chat/completions", chatBody("x", ""))
		if !strings.Contains(body, `"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":null}`) {
			t.Errorf("body without details: %s", body)
		}
	})
	t.Run("RequestIDHeaders", func(t *testing.T) {
		_, ts := start(t, Config{EnableRequestIDHeaders: true})
		resp := call(t, ts, http.MethodGet, "/health", "", "X-Request-Id", "abc")
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); got != "abc" {
			t.Errorf("echo %q", got)
		}
		resp = call(t, ts, http.MethodGet, "/health", "")
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); len(got) != 32 {
			t.Errorf("fresh id %q", got)
		}
	})
	t.Run("OmitEOS", func(t *testing.T) {
		tok := cl100k(t)
		for _, omit := range []bool{false, true} {
			_, ts := start(t, Config{OmitEOS: omit, DefaultLength: 5})
			_, body := post(t, ts, "/v1/chat/completions", chatBody("x", ""))
			m := decode(t, body)
			_, completion := usageOf(t, m["usage"])
			text := m["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"].(string)
			want := completion - 1
			if omit {
				want = completion
			}
			if completion != 5 || tok.Count(text) != want {
				t.Errorf("omit=%v: %d completion tokens, text %q", omit, completion, text)
			}
		}
	})
}

// stream_options and the force flag, for chat and completions (VLLM.md
// §3.5 table).
func TestStreamOptionsSemantics(t *testing.T) {
	type mode int
	const (
		off mode = iota
		force
		forceLegacy
		legacyDefault
	)
	for _, tc := range []struct {
		name       string
		mode       mode
		options    string
		final, per bool
	}{
		{"none", off, "", false, false},
		{"include", off, `{"include_usage":true}`, true, false},
		{"empty object", off, `{}`, true, false},
		{"include+continuous", off, `{"include_usage":true,"continuous_usage_stats":true}`, true, true},
		{"continuous without include", off, `{"include_usage":false,"continuous_usage_stats":true}`, false, false},
		{"continuous only", off, `{"continuous_usage_stats":true}`, true, true},
		{"null", off, `null`, false, false},
		{"force none", force, "", true, true},
		{"force include false", force, `{"include_usage":false}`, true, true},
		{"legacy force none", forceLegacy, "", true, false},
		{"legacy force continuous", forceLegacy, `{"include_usage":false,"continuous_usage_stats":true}`, true, true},
		{"legacy default empty", legacyDefault, `{}`, false, false},
		{"legacy default continuous", legacyDefault, `{"continuous_usage_stats":true}`, false, false},
		{"legacy default include", legacyDefault, `{"include_usage":true}`, true, false},
	} {
		cfg := Config{DefaultLength: 4}
		switch tc.mode {
		case force:
			cfg.ForceIncludeUsage = true
		case forceLegacy:
			cfg.ForceIncludeUsage, cfg.LegacyForceIncludeUsage = true, true
		case legacyDefault:
			cfg.LegacyIncludeUsageDefault = true
		}
		_, ts := start(t, cfg)
		extra := `"stream":true,"n":2`
		if tc.options != "" {
			extra += `,"stream_options":` + tc.options
		}
		for _, ep := range []struct{ path, body string }{
			{"/v1/chat/completions", chatBody("Hi there", extra)},
			{"/v1/completions", `{"prompt":"Hi there",` + extra + `}`},
		} {
			status, body := post(t, ts, ep.path, ep.body)
			if status != 200 {
				t.Fatalf("%s %s: %d %s", tc.name, ep.path, status, body)
			}
			chunks := payloads(t, body)
			last := chunks[len(chunks)-1]
			gotFinal := len(last["choices"].([]any)) == 0
			if gotFinal != tc.final {
				t.Errorf("%s %s: final usage chunk %v, want %v", tc.name, ep.path, gotFinal, tc.final)
			}
			if gotFinal {
				prompt, completion := usageOf(t, last["usage"])
				if prompt != 9 && prompt != 2 || completion != 8 {
					t.Errorf("%s %s: final usage %d/%d", tc.name, ep.path, prompt, completion)
				}
				chunks = chunks[:len(chunks)-1]
			}
			running := map[int]int{}
			for _, ch := range chunks {
				u, has := ch["usage"]
				if has && u == nil {
					has = false // completions' "usage":null
				}
				if has != tc.per {
					t.Fatalf("%s %s: chunk usage %v, want %v: %v", tc.name, ep.path, has, tc.per, ch)
				}
				if !has {
					continue
				}
				c := ch["choices"].([]any)[0].(map[string]any)
				idx := int(c["index"].(float64))
				_, completion := usageOf(t, u)
				if d, ok := c["delta"].(map[string]any); ok && d["role"] != nil {
					if completion != 0 {
						t.Errorf("%s: role chunk usage %d", tc.name, completion)
					}
					continue
				}
				if completion <= running[idx] {
					t.Errorf("%s %s: index %d usage went %d → %d", tc.name, ep.path, idx, running[idx], completion)
				}
				running[idx] = completion
			}
			if tc.per && (running[0] != 4 || running[1] != 4) {
				t.Errorf("%s %s: last running usage %v", tc.name, ep.path, running)
			}
		}
	}
}

func TestStreamOptionsWithoutStream(t *testing.T) {
	_, ts := start(t, Config{})
	for _, tc := range []struct {
		extra  string
		status int
	}{
		{`"stream_options":{"include_usage":true}`, 400},
		{`"stream":false,"stream_options":{"include_usage":false}`, 400},
		{`"stream_options":{}`, 200}, // falsy in Python: vLLM lets it through
		{`"stream_options":null`, 200},
		{`"stream":true,"stream_options":[1]`, 400},
	} {
		status, body := post(t, ts, "/v1/chat/completions", chatBody("x", tc.extra))
		if status != tc.status {
			t.Errorf("%s: %d %s", tc.extra, status, body)
		}
		status2, _ := post(t, ts, "/v1/completions", `{"prompt":"x",`+tc.extra+`}`)
		if status2 != tc.status {
			t.Errorf("completions %s: %d", tc.extra, status2)
		}
		if tc.status == 400 && !strings.HasPrefix(tc.extra, `"stream":true`) {
			want := `{"error":{"message":"Stream options can only be defined when ` + "`stream=True`" + `.","type":"Bad Request","param":null,"code":400}}`
			if body != want {
				t.Errorf("body %s\nwant %s", body, want)
			}
		}
	}
}

// n > 1: one role chunk and one finishing chunk per index, the usage chunk
// sums completions and counts the prompt once.
func TestChatNChoices(t *testing.T) {
	sim, ts := start(t, Config{DefaultLength: 5})
	_, body := post(t, ts, "/v1/chat/completions", chatBody("Hello", `"stream":true,"n":3,"stream_options":{"include_usage":true}`))
	chunks := payloads(t, body)
	for i := 0; i < 3; i++ {
		c := chunks[i]["choices"].([]any)[0].(map[string]any)
		if int(c["index"].(float64)) != i || c["delta"].(map[string]any)["role"] != "assistant" {
			t.Errorf("chunk %d is not index %d's role chunk: %v", i, i, c)
		}
	}
	finishes := map[int]int{}
	for _, ch := range chunks[:len(chunks)-1] {
		choices := ch["choices"].([]any)
		if len(choices) != 1 {
			t.Fatalf("chunk with %d choices", len(choices))
		}
		c := choices[0].(map[string]any)
		if c["finish_reason"] != nil {
			finishes[int(c["index"].(float64))]++
		}
	}
	if len(finishes) != 3 || finishes[0] != 1 || finishes[1] != 1 || finishes[2] != 1 {
		t.Errorf("finishing chunks %v", finishes)
	}
	texts := chatText(chunks)
	if texts[0] == texts[1] || texts[1] == texts[2] {
		t.Errorf("choices read the same: %v", texts)
	}
	prompt, completion := usageOf(t, chunks[len(chunks)-1]["usage"])
	if prompt != 8 || completion != 15 {
		t.Errorf("usage %d/%d, want 8/15", prompt, completion)
	}
	c := sim.Counters()
	if c.PromptTokens != 8 || c.EnginePromptTokens != 24 || c.GenerationTokens != 15 || c.Requests != 1 {
		t.Errorf("counters %+v", c)
	}
	m := metrics(t, ts)
	if m[`vllm:prompt_tokens_total{`+modelLabels+`}`] != 24 || m[`vllm:request_success_total{`+modelLabels+`,finished_reason="stop"}`] != 3 {
		t.Errorf("metrics %v", m)
	}
}

// The relayed text of every endpoint counts back, with cl100k, to
// completion_tokens (minus the EOS when the answer stopped by itself).
func TestRelayedTextCountsBack(t *testing.T) {
	tok := cl100k(t)
	_, ts := start(t, Config{DefaultLength: 40})
	for _, tc := range []struct {
		name, extra string
		finish      string
	}{
		{"stop", "", "stop"},
		{"length", `"max_tokens":25`, "length"},
		{"chunked", `"max_completion_tokens":33`, "length"},
	} {
		extra := `"stream":true,"stream_options":{"include_usage":true}`
		if tc.extra != "" {
			extra += "," + tc.extra
		}
		_, body := post(t, ts, "/v1/chat/completions", chatBody("Tell me", extra), "X-Sim-Chunk", "3")
		chunks := payloads(t, body)
		_, completion := usageOf(t, chunks[len(chunks)-1]["usage"])
		want := completion
		if tc.finish == "stop" {
			want--
		}
		if got := tok.Count(chatText(chunks)[0]); got != want {
			t.Errorf("%s: text counts %d, completion_tokens %d", tc.name, got, completion)
		}
	}
	_, body := post(t, ts, "/v1/completions", `{"prompt":["a","b c"],"max_tokens":30,"n":2}`)
	m := decode(t, body)
	_, completion := usageOf(t, m["usage"])
	total := 0
	for _, c := range m["choices"].([]any) {
		total += tok.Count(c.(map[string]any)["text"].(string))
	}
	if total != completion || completion != 4*30 {
		t.Errorf("completions: text %d, usage %d", total, completion)
	}
}

// X-Sim-Chunk groups tokens after the first one.
func TestTokensPerChunk(t *testing.T) {
	_, ts := start(t, Config{})
	for _, tc := range []struct {
		chunk, length int
		sizes         []string
	}{
		{1, 3, []string{"w", "w", ""}},
		{4, 10, []string{"w", "wwww", "wwww", ""}},
		{3, 10, []string{"w", "www", "www", "ww"}},
		{16, 5, []string{"w", "www"}},
	} {
		_, body := post(t, ts, "/v1/chat/completions", chatBody("x", `"stream":true`),
			"X-Sim-Chunk", fmt.Sprint(tc.chunk), "X-Sim-Length", fmt.Sprint(tc.length))
		chunks := payloads(t, body)[1:]
		var sizes []string
		for _, ch := range chunks {
			content := ch["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)["content"].(string)
			sizes = append(sizes, strings.Repeat("w", strings.Count(content, " ")))
		}
		if fmt.Sprint(sizes) != fmt.Sprint(tc.sizes) {
			t.Errorf("chunk %d length %d: %v, want %v", tc.chunk, tc.length, sizes, tc.sizes)
		}
	}
}

// Output budget: natural length vs max_tokens vs context left.
func TestOutputBudget(t *testing.T) {
	_, ts := start(t, Config{MaxModelLen: 20, DefaultLength: 8})
	for _, tc := range []struct {
		path, body string
		hdr        []string
		completion int
		finish     string
	}{
		// The prompt "x" is 8 tokens, so 12 are left of the context.
		{"/v1/chat/completions", chatBody("x", ""), nil, 8, "stop"},
		{"/v1/chat/completions", chatBody("x", `"max_tokens":5`), nil, 5, "length"},
		{"/v1/chat/completions", chatBody("x", `"max_tokens":8`), nil, 8, "length"}, // a tie is "length"
		{"/v1/chat/completions", chatBody("x", `"max_tokens":9,"max_completion_tokens":3`), nil, 3, "length"},
		{"/v1/chat/completions", chatBody("x", ""), []string{"X-Sim-Length", "50"}, 12, "length"}, // context left
		{"/v1/completions", `{"prompt":"x"}`, []string{"X-Sim-Length", "50"}, 16, "length"},       // default 16
		{"/v1/completions", `{"prompt":"x","max_tokens":19}`, []string{"X-Sim-Length", "2"}, 2, "stop"},
	} {
		status, body := post(t, ts, tc.path, tc.body, tc.hdr...)
		if status != 200 {
			t.Fatalf("%s: %d %s", tc.body, status, body)
		}
		m := decode(t, body)
		_, completion := usageOf(t, m["usage"])
		finish := m["choices"].([]any)[0].(map[string]any)["finish_reason"]
		if completion != tc.completion || finish != tc.finish {
			t.Errorf("%s %v: %d %v, want %d %s", tc.body, tc.hdr, completion, finish, tc.completion, tc.finish)
		}
	}
}

func TestErrors(t *testing.T) {
	_, ts := start(t, Config{MaxModelLen: 20})
	long := strings.Repeat(" word", 30)
	for _, tc := range []struct {
		name, path, body string
		hdr              []string
		status           int
		want             string
	}{
		{"unknown model", "/v1/chat/completions", `{"model":"nope","messages":[]}`, nil, 404,
			`{"error":{"message":"The model ` + "`nope`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`},
		{"empty model is the default", "/v1/chat/completions", `{"model":"","messages":[],"max_tokens":1}`, nil, 200, ""},
		{"prompt too long", "/v1/chat/completions", chatBody(long, ""), nil, 400,
			`{"error":{"message":"This model's maximum context length is 20 tokens. However, your request has 37 input tokens. Please reduce the length of the input messages.","type":"BadRequestError","param":"input_tokens","code":400}}`},
		{"max_tokens too large", "/v1/completions", `{"prompt":"x","max_tokens":20}`, nil, 400,
			`{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 20. This model's maximum context length is 20 tokens and your request has 1 input tokens (20 > 20 - 1).","type":"BadRequestError","param":"max_tokens","code":400}}`},
		{"max_tokens zero", "/v1/chat/completions", chatBody("x", `"max_tokens":0`), nil, 400, ""},
		{"n zero", "/v1/chat/completions", chatBody("x", `"n":0`), nil, 400, ""},
		{"n zero completions", "/v1/completions", `{"prompt":"x","n":0}`, nil, 400, ""},
		{"content type", "/v1/chat/completions", "", []string{"Content-Type", "text/plain"}, 400,
			`{"error":{"message":"Unsupported Media Type: Only 'application/json' is allowed","type":"Bad Request","param":null,"code":400}}`},
		{"bad json", "/v1/chat/completions", `{"messages":`, nil, 400, ""},
		{"not an object", "/v1/completions", `[1]`, nil, 400, ""},
		{"no messages", "/v1/chat/completions", `{"model":"sim-model"}`, nil, 400, ""},
		{"bad messages", "/v1/chat/completions", `{"messages":"hi"}`, nil, 400, ""},
		{"bad content", "/v1/chat/completions", `{"messages":[{"role":"user","content":7}]}`, nil, 400, ""},
		{"continue and add", "/v1/chat/completions", `{"messages":[],"continue_final_message":true}`, nil, 400, ""},
		{"no prompt", "/v1/completions", `{"model":"sim-model"}`, nil, 400, ""},
		{"bad token echo", "/v1/completions", `{"prompt":[999999999],"echo":true,"max_tokens":1}`, nil, 400, ""},
		{"bad responses input", "/v1/responses", `{"input":{}}`, nil, 400, ""},
		{"responses unknown model", "/v1/responses", `{"model":"m2","input":"x"}`, nil, 404, ""},
		{"responses too long", "/v1/responses", `{"input":"x","max_output_tokens":100}`, nil, 400, ""},
		{"responses bad tools", "/v1/responses", `{"input":"x","tools":[x]}`, nil, 400, ""},
		{"bad chat tools", "/v1/chat/completions", `{"messages":[],"tools":{"a":}}`, nil, 400, ""},
		{"sim status", "/v1/chat/completions", `garbage`, []string{"X-Sim-Status", "503"}, 503,
			`{"error":{"message":"Simulated error (X-Sim-Status)","type":"ServiceUnavailableError","param":null,"code":503}}`},
		{"sim status 500", "/v1/completions", `{}`, []string{"X-Sim-Status", "500"}, 500,
			`{"error":{"message":"Simulated error (X-Sim-Status)","type":"InternalServerError","param":null,"code":500}}`},
		{"bad sim header", "/v1/chat/completions", chatBody("x", ""), []string{"X-Sim-Length", "zero"}, 400, ""},
	} {
		var status int
		var body string
		if tc.body == "" {
			resp := call(t, ts, http.MethodPost, tc.path, "{}", tc.hdr...)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, body = resp.StatusCode, string(b)
		} else {
			status, body = post(t, ts, tc.path, tc.body, tc.hdr...)
		}
		if status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, status, tc.status, body)
			continue
		}
		if tc.want != "" && body != tc.want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, body, tc.want)
		}
		if status >= 400 {
			e, ok := decode(t, body)["error"].(map[string]any)
			if !ok || int(e["code"].(float64)) != status {
				t.Errorf("%s: envelope %s", tc.name, body)
			}
		}
	}
	for _, tc := range []struct{ method, path, want string }{
		{http.MethodGet, "/v1/nothing", `{"detail":"Not Found"}`},
		{http.MethodGet, "/v1/chat/completions", `{"detail":"Method Not Allowed"}`},
		{http.MethodPost, "/v1/models", `{"detail":"Method Not Allowed"}`},
		{http.MethodPost, "/health", `{"detail":"Method Not Allowed"}`},
		{http.MethodPost, "/version", `{"detail":"Method Not Allowed"}`},
		{http.MethodPost, "/metrics", `{"detail":"Method Not Allowed"}`},
		{http.MethodPost, "/sim/requests", `{"detail":"Method Not Allowed"}`},
		{http.MethodGet, "/sim/reset", `{"detail":"Method Not Allowed"}`},
		{http.MethodPost, "/sim/counters", `{"detail":"Method Not Allowed"}`},
		{http.MethodGet, "/sim/other", `{"detail":"Not Found"}`},
	} {
		resp := call(t, ts, tc.method, tc.path, "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, resp.StatusCode, b)
		}
	}
}

func TestLegacyErrors(t *testing.T) {
	_, ts := start(t, Config{LegacyErrors: true, DefaultLength: 4})
	_, body := post(t, ts, "/v1/chat/completions", `{"model":"nope","messages":[]}`)
	if want := `{"object":"error","message":"The model ` + "`nope`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}`; body != want {
		t.Errorf("flat envelope %s", body)
	}
	_, body = post(t, ts, "/v1/chat/completions", chatBody("x", `"stream_options":{"include_usage":true}`))
	if !strings.Contains(body, `"type":"BadRequestError"`) {
		t.Errorf("validation type %s", body)
	}
	_, body = post(t, ts, "/v1/chat/completions", chatBody("x", `"stream":true`), "X-Sim-Error-After", "1")
	evs := events(body)
	if got := evs[len(evs)-2]; got != `data: {"error": {"object": "error", "message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}` {
		t.Errorf("legacy stream error %s", got)
	}
}

func TestAPIKey(t *testing.T) {
	_, ts := start(t, Config{APIKey: "k1", APIKeys: []string{"k2"}})
	for _, tc := range []struct {
		method, path, auth string
		status             int
	}{
		{http.MethodGet, "/v1/models", "", 401},
		{http.MethodGet, "/v1/models", "Bearer k1", 200},
		{http.MethodGet, "/v1/models", "bearer k2", 200},
		{http.MethodGet, "/v1/models", "BEARER k1", 200},
		{http.MethodGet, "/v1/models", "Bearer k3", 401},
		{http.MethodGet, "/v1/models", "Basic k1", 401},
		{http.MethodGet, "/v1/models", "k1", 401},
		{http.MethodGet, "/v1/nothing", "", 401},
		{http.MethodOptions, "/v1/models", "", 405},
		{http.MethodGet, "/metrics", "", 200},
		{http.MethodGet, "/health", "", 200},
		{http.MethodGet, "/version", "", 200},
		{http.MethodPost, "/tokenize", "", 200},
	} {
		body := ""
		if tc.method == http.MethodPost {
			body = `{"prompt":"hi"}`
		}
		resp := call(t, ts, tc.method, tc.path, body, "Authorization", tc.auth)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s %q: %d", tc.method, tc.path, tc.auth, resp.StatusCode)
		}
		if tc.status == 401 && (string(b) != `{"error":"Unauthorized"}` || resp.Header.Get("Content-Type") != "application/json") {
			t.Errorf("401 body %s", b)
		}
	}
	status, _ := post(t, ts, "/v1/chat/completions", chatBody("x", ""), "Authorization", "Bearer k2")
	if status != 200 {
		t.Errorf("chat with key: %d", status)
	}
}

// X-Sim-Error-After: a json.dumps error event and [DONE], no usage chunk;
// the generated tokens still count.
func TestErrorAfter(t *testing.T) {
	sim, ts := start(t, Config{DefaultLength: 10})
	_, body := post(t, ts, "/v1/chat/completions", chatBody("Hello", `"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}`), "X-Sim-Error-After", "3")
	evs := events(body)
	want := []string{
		`data: {"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}`,
		"data: [DONE]",
	}
	if len(evs) != 1+3+2 || evs[4] != want[0] || evs[5] != want[1] {
		t.Fatalf("events:\n%s", strings.Join(evs, "\n"))
	}
	c := sim.Counters()
	if c.GenerationTokens != 3 || c.Errored != 1 || c.PromptTokens != 8 || c.Requests != 1 {
		t.Errorf("counters %+v", c)
	}
	// Beyond the answer's length: every choice finishes, then the error
	// replaces the usage chunk.
	_, body = post(t, ts, "/v1/completions", `{"prompt":"x","stream":true,"max_tokens":2,"stream_options":{}}`, "X-Sim-Error-After", "5")
	evs = events(body)
	if len(evs) != 4 || !strings.Contains(evs[1], `"finish_reason":"length"`) || !strings.HasPrefix(evs[2], `data: {"error": `) {
		t.Errorf("events:\n%s", strings.Join(evs, "\n"))
	}
	status, body := post(t, ts, "/v1/chat/completions", chatBody("x", ""), "X-Sim-Error-After", "2")
	if status != 500 || body != `{"error":{"message":"Internal server error","type":"InternalServerError","param":null,"code":500}}` {
		t.Errorf("JSON error-after: %d %s", status, body)
	}
	m := metrics(t, ts)
	if m[`vllm:request_success_total{`+modelLabels+`,finished_reason="error"}`] != 2 ||
		m[`vllm:request_success_total{`+modelLabels+`,finished_reason="length"}`] != 1 {
		t.Errorf("metrics %v", m)
	}
	if got := sim.Counters(); got.GenerationTokens != 3+2+2 || got.Errored != 3 {
		t.Errorf("counters %+v", got)
	}
}

// X-Sim-Crash-After cuts the connection: the client sees an unexpected EOF
// after the tokens it was sent, and no [DONE].
func TestCrashAfter(t *testing.T) {
	sim, ts := start(t, Config{DefaultLength: 10})
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/responses"} {
		body := map[string]string{
			"/v1/chat/completions": chatBody("x", `"stream":true,"stream_options":{}`),
			"/v1/completions":      `{"prompt":"x","stream":true}`,
			"/v1/responses":        `{"input":"x","stream":true}`,
		}[path]
		resp := call(t, ts, http.MethodPost, path, body, "X-Sim-Crash-After", "4")
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: read error %v", path, err)
		}
		if strings.Contains(string(b), "[DONE]") || strings.Count(string(b), "delta") < 4 && strings.Count(string(b), `"text"`) < 4 {
			t.Errorf("%s: got %s", path, b)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(chatBody("x", "")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sim-Crash-After", "2")
	if resp, err := ts.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Error("JSON crash answered")
	}
	c := sim.Counters()
	if c.Errored != 4 || c.GenerationTokens != 4*3+2 {
		t.Errorf("counters %+v", c)
	}
}

// A client that goes away mid-stream: generation stops, the request counts
// as aborted, and the tokens generated so far are in the counters.
func TestClientDisconnectStream(t *testing.T) {
	sim, ts := start(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	resp := callCtx(ctx, t, ts, http.MethodPost, "/v1/chat/completions",
		chatBody("x", `"stream":true,"stream_options":{"continuous_usage_stats":true}`),
		"X-Sim-Length", "2000", "X-Sim-TPS", "500", "X-Sim-Chunk", "2")
	buf := make([]byte, 0, 4096)
	var seen int
	for seen < 5 {
		tmp := make([]byte, 1024)
		n, err := resp.Body.Read(tmp)
		if err != nil {
			t.Fatal(err)
		}
		buf = append(buf, tmp[:n]...)
		seen = strings.Count(string(buf), "\n\n")
	}
	cancel()
	resp.Body.Close()
	c := waitCounters(t, sim, func(c Counters) bool { return c.Aborted == 1 })
	received := 2*(seen-1) - 1 // role chunk, then 1 token and 2 per chunk
	if c.GenerationTokens < int64(received) || c.GenerationTokens >= 2000 || c.Requests != 1 || c.PromptTokens != 8 {
		t.Errorf("counters %+v after %d events", c, seen)
	}
	m := metrics(t, ts)
	if m[`vllm:request_success_total{`+modelLabels+`,finished_reason="abort"}`] != 1 ||
		m[`vllm:generation_tokens_total{`+modelLabels+`}`] != float64(c.GenerationTokens) ||
		m[`vllm:num_requests_running{`+modelLabels+`}`] != 0 {
		t.Errorf("metrics %v", m)
	}
}

// Headers go out before prefill ends; an abort during prefill counts no
// prompt tokens. The same for a JSON request.
func TestAbortDuringPrefill(t *testing.T) {
	sim, ts := start(t, Config{TTFT: time.Minute})
	for i, body := range []string{
		chatBody("x", `"stream":true`),
		`{"input":"x","stream":true}`,
	} {
		path := "/v1/chat/completions"
		if i == 1 {
			path = "/v1/responses"
		}
		ctx, cancel := context.WithCancel(context.Background())
		resp := callCtx(ctx, t, ts, http.MethodPost, path, body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		if c := sim.Counters(); c.Requests != int64(i+1) || c.PromptTokens != 0 {
			t.Errorf("before first token: %+v", c)
		}
		cancel()
		resp.Body.Close()
		waitCounters(t, sim, func(c Counters) bool { return c.Aborted == int64(i+1) })
	}
	for i, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", chatBody("x", "")},
		{"/v1/completions", `{"prompt":"x"}`},
		{"/v1/responses", `{"input":"x"}`},
		{"/v1/embeddings", `{"input":"x"}`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := ts.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s answered during prefill", tc.path)
		}
		cancel()
		waitCounters(t, sim, func(c Counters) bool { return c.Aborted == int64(3+i) })
	}
	c := sim.Counters()
	if c.PromptTokens != 0 || c.GenerationTokens != 0 {
		t.Errorf("counters %+v", c)
	}
	if m := metrics(t, ts); m[`vllm:request_success_total{`+modelLabels+`,finished_reason="abort"}`] != 6 {
		t.Errorf("abort metric %v", m)
	}
}

// The emulator waits TTFT before the first token and paces decoding. Only
// lower bounds are checked, so a slow machine cannot fail this.
func TestPacingLowerBounds(t *testing.T) {
	_, ts := start(t, Config{TTFT: 20 * time.Millisecond, TokensPerSecond: 1000})
	begin := time.Now()
	post(t, ts, "/v1/chat/completions", chatBody("x", `"stream":true`), "X-Sim-Length", "21")
	if d := time.Since(begin); d < 40*time.Millisecond {
		t.Errorf("20 ms TTFT + 20 tokens at 1000/s took %v", d)
	}
	begin = time.Now()
	post(t, ts, "/v1/completions", `{"prompt":"x","max_tokens":5}`, "X-Sim-TTFT", "60ms", "X-Sim-TPS", "0")
	if d := time.Since(begin); d < 60*time.Millisecond {
		t.Errorf("60 ms TTFT took %v", d)
	}
}

// Same request, same bytes, except id and created.
func TestDeterminism(t *testing.T) {
	_, ts := start(t, Config{})
	for _, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", chatBody("Same prompt", `"stream":true,"n":2,"stream_options":{"continuous_usage_stats":true}`)},
		{"/v1/chat/completions", chatBody("Same prompt", `"n":2`)},
		{"/v1/completions", `{"prompt":["a","b"],"stream":true}`},
		{"/v1/responses", `{"input":"x","stream":true}`},
		{"/v1/embeddings", `{"input":["a","b"]}`},
	} {
		_, a := post(t, ts, tc.path, tc.body)
		_, b := post(t, ts, tc.path, tc.body)
		if a == b {
			t.Errorf("%s: ids did not change", tc.path)
		}
		if normalize(a) != normalize(b) {
			t.Errorf("%s differs:\n%s\n%s", tc.path, a, b)
		}
	}
	_, a := post(t, ts, "/v1/chat/completions", chatBody("One prompt", ""))
	_, b := post(t, ts, "/v1/chat/completions", chatBody("Another, longer prompt", ""))
	if normalize(a) == normalize(b) {
		t.Error("different prompts gave the same answer")
	}
}

// Counters equal the usage the server reported, over a mix of requests.
func TestCountersMatchReportedUsage(t *testing.T) {
	sim, ts := start(t, Config{DefaultLength: 7})
	var prompt, completion, engine int
	add := func(p, c, n int) { prompt += p; completion += c; engine += n * p }
	for _, tc := range []struct {
		path, body string
		n          int
	}{
		{"/v1/chat/completions", chatBody("alpha", ""), 1},
		{"/v1/chat/completions", chatBody("beta", `"n":3,"max_tokens":4`), 3},
		{"/v1/chat/completions", chatBody("gamma", `"stream":true,"stream_options":{"include_usage":true}`), 1},
		{"/v1/completions", `{"prompt":"delta","max_tokens":9}`, 1},
		{"/v1/completions", `{"prompt":"epsilon","stream":true,"n":2,"stream_options":{}}`, 2},
		{"/v1/embeddings", `{"input":"zeta eta"}`, 1},
	} {
		status, body := post(t, ts, tc.path, tc.body)
		if status != 200 {
			t.Fatalf("%s: %d %s", tc.body, status, body)
		}
		var usage any
		if strings.HasPrefix(body, "data:") {
			chunks := payloads(t, body)
			usage = chunks[len(chunks)-1]["usage"]
		} else {
			usage = decode(t, body)["usage"]
		}
		p, c := usageOf(t, usage)
		add(p, c, tc.n)
	}
	_, body := post(t, ts, "/v1/responses", `{"input":"theta","stream":true}`)
	evs := events(body)
	last := decode(t, strings.SplitN(evs[len(evs)-1], "data: ", 2)[1])
	u := last["response"].(map[string]any)["usage"].(map[string]any)
	add(int(u["input_tokens"].(float64)), int(u["output_tokens"].(float64)), 1)

	c := sim.Counters()
	if c.PromptTokens != int64(prompt) || c.GenerationTokens != int64(completion) || c.EnginePromptTokens != int64(engine) || c.Requests != 7 || c.Aborted != 0 {
		t.Errorf("counters %+v, reported prompt %d completion %d engine %d", c, prompt, completion, engine)
	}
	m := metrics(t, ts)
	if m[`vllm:prompt_tokens_total{`+modelLabels+`}`] != float64(engine) || m[`vllm:generation_tokens_total{`+modelLabels+`}`] != float64(completion) {
		t.Errorf("metrics %v", m)
	}
	if m[`vllm:request_generation_tokens_sum{`+modelLabels+`}`] != float64(completion) || m[`vllm:request_prompt_tokens_sum{`+modelLabels+`}`] != float64(engine) {
		t.Errorf("histogram sums %v", m)
	}
	if m[`vllm:request_prompt_tokens_count{`+modelLabels+`}`] != m[`vllm:request_prompt_tokens_bucket{`+modelLabels+`,le="+Inf"}`] {
		t.Errorf("histogram count %v", m)
	}
	status, js := get(t, ts, "/sim/counters")
	if status != 200 || decode(t, js)["GenerationTokens"].(float64) != float64(completion) {
		t.Errorf("/sim/counters %s", js)
	}
	resp := call(t, ts, http.MethodPost, "/sim/reset", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || sim.Counters() != (Counters{}) {
		t.Errorf("reset: %d %+v", resp.StatusCode, sim.Counters())
	}
	if m := metrics(t, ts); m[`vllm:generation_tokens_total{`+modelLabels+`}`] != 0 {
		t.Errorf("metrics after reset %v", m)
	}
}

func TestMultipleModels(t *testing.T) {
	sim, ts := start(t, Config{ModelNames: []string{"a", "b", "a"}, MaxModelLen: 100})
	_, body := get(t, ts, "/v1/models")
	m := decode(t, body)
	data := m["data"].([]any)
	if len(data) != 2 || data[1].(map[string]any)["id"] != "b" || data[0].(map[string]any)["max_model_len"].(float64) != 100 {
		t.Fatalf("models %s", body)
	}
	_, body = post(t, ts, "/v1/chat/completions", `{"model":"b","messages":[],"max_tokens":2}`)
	if decode(t, body)["model"] != "b" {
		t.Errorf("model %s", body)
	}
	_, body = post(t, ts, "/v1/chat/completions", `{"messages":[],"max_tokens":2}`)
	if decode(t, body)["model"] != "a" {
		t.Errorf("default model %s", body)
	}
	met := metrics(t, ts)
	if met[`vllm:generation_tokens_total{model_name="b",engine="0"}`] != 2 || met[`vllm:generation_tokens_total{model_name="a",engine="0"}`] != 2 {
		t.Errorf("per-model metrics %v", met)
	}
	if sim.Config().ModelNames[0] != "a" {
		t.Error("config")
	}
}

func TestMiscRoutes(t *testing.T) {
	sim, ts := start(t, Config{Version: "9.9.9"})
	if status, body := get(t, ts, "/version"); status != 200 || body != `{"version":"9.9.9"}` {
		t.Errorf("version %d %s", status, body)
	}
	if status, body := get(t, ts, "/health"); status != 200 || body != "" {
		t.Errorf("health %d %q", status, body)
	}
	sim.SetHealthy(false)
	if status, _ := get(t, ts, "/health"); status != 503 {
		t.Errorf("unhealthy %d", status)
	}
	sim.SetHealthy(true)
	_, body := get(t, ts, "/v1/models")
	want := `{"object":"list","data":[{"id":"sim-model","object":"model","created":0,"owned_by":"vllm","root":"sim-model","parent":null,"max_model_len":8192,"permission":[{"id":"modelperm-`
	if !strings.HasPrefix(normalize(body), want) {
		t.Errorf("models %s", body)
	}
	resp := call(t, ts, http.MethodGet, "/v1/models", "")
	resp.Body.Close()
	if resp.Header.Get("Server") != "uvicorn" {
		t.Errorf("server header %q", resp.Header.Get("Server"))
	}
}

// echo: completions repeat the prompt before the first token; chat repeats
// the last message when it has the answer's role.
func TestEcho(t *testing.T) {
	_, ts := start(t, Config{DefaultLength: 3})
	_, body := post(t, ts, "/v1/completions", `{"prompt":[[9906,1917]],"echo":true,"max_tokens":2}`)
	text := decode(t, body)["choices"].([]any)[0].(map[string]any)["text"].(string)
	if !strings.HasPrefix(text, "Hello world ") {
		t.Errorf("echo of ids: %q", text)
	}
	_, body = post(t, ts, "/v1/completions", `{"prompt":"say \"hi\"","echo":true,"stream":true,"max_tokens":2}`)
	if first := payloads(t, body)[0]["choices"].([]any)[0].(map[string]any)["text"].(string); !strings.HasPrefix(first, `say "hi" `) {
		t.Errorf("streamed echo %q", first)
	}
	msgs := `"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"Sure:"}],"echo":true,"add_generation_prompt":false`
	_, body = post(t, ts, "/v1/chat/completions", `{`+msgs+`}`)
	msg := decode(t, body)["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	if !strings.HasPrefix(msg["content"].(string), "Sure: ") || msg["role"] != "assistant" {
		t.Errorf("chat echo %v", msg)
	}
	_, body = post(t, ts, "/v1/chat/completions", `{`+msgs+`,"stream":true}`)
	chunks := payloads(t, body)
	if chatText(chunks)[0] == "" || !strings.HasPrefix(chatText(chunks)[0], "Sure: ") {
		t.Errorf("chat stream echo %v", chatText(chunks))
	}
}

func TestResponses(t *testing.T) {
	tok := cl100k(t)
	sim, ts := start(t, Config{DefaultLength: 6})
	_, body := post(t, ts, "/v1/responses", `{"input":"Hi","instructions":"Be brief.","stream":true}`)
	var names []string
	var text string
	var final map[string]any
	for i, ev := range events(body) {
		name, data, ok := strings.Cut(ev, "\ndata: ")
		if !ok || !strings.HasPrefix(name, "event: ") {
			t.Fatalf("bad event %q", ev)
		}
		name = strings.TrimPrefix(name, "event: ")
		names = append(names, name)
		obj := decode(t, data)
		if obj["type"] != name || int(obj["sequence_number"].(float64)) != i {
			t.Errorf("event %d: %s", i, data)
		}
		if name == "response.output_text.delta" {
			text += obj["delta"].(string)
		}
		final = obj
	}
	want := "response.created response.in_progress response.output_item.added response.content_part.added " +
		strings.Repeat("response.output_text.delta ", 5) +
		"response.output_text.done response.content_part.done response.output_item.done response.completed"
	if strings.Join(names, " ") != want {
		t.Errorf("events %v", names)
	}
	resp := final["response"].(map[string]any)
	usage := resp["usage"].(map[string]any)
	if resp["status"] != "completed" || usage["output_tokens"].(float64) != 6 || tok.Count(text) != 5 || resp["instructions"] != "Be brief." {
		t.Errorf("completed %v, text %q", resp, text)
	}
	if in := int(usage["input_tokens"].(float64)); in != 3+1+tok.Count("Be brief.")+3+1+tok.Count("Hi")+3 {
		t.Errorf("input tokens %d", in)
	}
	_, body = post(t, ts, "/v1/responses", `{"input":[{"role":"user","content":"Hi"}],"max_output_tokens":2}`)
	m := decode(t, body)
	if m["status"] != "incomplete" || m["incomplete_details"].(map[string]any)["reason"] != "max_output_tokens" ||
		m["usage"].(map[string]any)["output_tokens"].(float64) != 2 || m["max_output_tokens"].(float64) != 2 {
		t.Errorf("incomplete response %s", body)
	}
	out := m["output"].([]any)[0].(map[string]any)["content"].([]any)[0].(map[string]any)["text"].(string)
	if tok.Count(out) != 2 {
		t.Errorf("output %q", out)
	}
	_, body = post(t, ts, "/v1/responses", `{"input":"Hi","stream":true}`, "X-Sim-Error-After", "2")
	evs := events(body)
	if last := evs[len(evs)-1]; !strings.HasPrefix(last, "event: error\ndata: {\"code\":\"InternalServerError\"") || strings.Contains(body, "response.completed") {
		t.Errorf("responses error: %s", last)
	}
	status, _ := post(t, ts, "/v1/responses", `{"input":"Hi"}`, "X-Sim-Error-After", "2")
	if status != 500 {
		t.Errorf("JSON error-after %d", status)
	}
	if c := sim.Counters(); c.Errored != 2 || c.GenerationTokens != 6+2+2+2 {
		t.Errorf("counters %+v", c)
	}
}

func TestEmbeddings(t *testing.T) {
	sim, ts := start(t, Config{EmbeddingDim: 8})
	_, body := post(t, ts, "/v1/embeddings", `{"input":["hello world","bye"]}`)
	m := decode(t, body)
	if !strings.HasPrefix(normalize(body), `{"id":"embd-X","object":"list","created":0,"model":"sim-model","data":[{"index":0,"object":"embedding","embedding":[`) {
		t.Errorf("shape %s", body)
	}
	data := m["data"].([]any)
	vec := data[0].(map[string]any)["embedding"].([]any)
	var norm float64
	for _, v := range vec {
		norm += v.(float64) * v.(float64)
	}
	if len(vec) != 8 || norm < 0.999 || norm > 1.001 {
		t.Errorf("vector %v (norm² %v)", vec, norm)
	}
	if p, c := usageOf(t, m["usage"]); p != 3 || c != 0 {
		t.Errorf("usage %d/%d", p, c)
	}
	_, b64 := post(t, ts, "/v1/embeddings", `{"input":"hello world","encoding_format":"base64"}`)
	if s := decode(t, b64)["data"].([]any)[0].(map[string]any)["embedding"].(string); len(s) != 44 {
		t.Errorf("base64 %q", s)
	}
	_, ids := post(t, ts, "/v1/embeddings", `{"input":[[1,2,3]]}`)
	if p, _ := usageOf(t, decode(t, ids)["usage"]); p != 3 {
		t.Errorf("id input usage %d", p)
	}
	for _, tc := range []struct {
		body   string
		hdr    []string
		status int
	}{
		{`{"input":"x","encoding_format":"hex"}`, nil, 400},
		{`{"input":7}`, nil, 400},
		{`{"input":"x","model":"z"}`, nil, 404},
		{`{"input":"` + strings.Repeat(" a", 9000) + `"}`, nil, 400},
		{`{"input":"x"}`, []string{"X-Sim-Error-After", "0"}, 500},
	} {
		if status, body := post(t, ts, "/v1/embeddings", tc.body, tc.hdr...); status != tc.status {
			t.Errorf("%.40s: %d %s", tc.body, status, body)
		}
	}
	if c := sim.Counters(); c.PromptTokens != 3+2+3+1 || c.GenerationTokens != 0 || c.Errored != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestChatBOS: a template that starts with a BOS counts one token more in
// chat prompts and their /tokenize, and nothing more in completions.
func TestChatBOS(t *testing.T) {
	_, plain := start(t, Config{})
	_, bos := start(t, Config{ChatBOS: true})
	const msgs = `{"messages":[{"role":"user","content":"Hello"}]}`
	for _, path := range []string{"/v1/chat/completions", "/tokenize"} {
		_, a := post(t, plain, path, msgs)
		_, b := post(t, bos, path, msgs)
		pa, pb := countOf(t, path, a), countOf(t, path, b)
		if pb != pa+1 {
			t.Errorf("%s: %d with a BOS, %d without; want one more", path, pb, pa)
		}
	}
	_, a := post(t, plain, "/v1/completions", `{"prompt":"Hello"}`)
	_, b := post(t, bos, "/v1/completions", `{"prompt":"Hello"}`)
	if pa, pb := countOf(t, "", a), countOf(t, "", b); pa != pb {
		t.Errorf("completions: %d with a BOS, %d without; want the same", pb, pa)
	}
}

// countOf is a /tokenize answer's count, or an answer's prompt_tokens.
func countOf(t *testing.T, path, body string) int {
	t.Helper()
	if path == "/tokenize" {
		return int(decode(t, body)["count"].(float64))
	}
	prompt, _ := usageOf(t, decode(t, body)["usage"])
	return prompt
}

func TestTokenize(t *testing.T) {
	tok := cl100k(t)
	_, ts := start(t, Config{MaxModelLen: 4096})
	for _, msgs := range []string{
		`[{"role":"user","content":"Hello"}]`,
		`[{"role":"system","content":"Be terse."},{"role":"user","name":"ann","content":[{"type":"text","text":"What is 2+2?"}]}]`,
	} {
		_, tb := post(t, ts, "/tokenize", `{"messages":`+msgs+`}`)
		_, cb := post(t, ts, "/v1/chat/completions", `{"messages":`+msgs+`}`)
		tr := decode(t, tb)
		prompt, _ := usageOf(t, decode(t, cb)["usage"])
		if int(tr["count"].(float64)) != prompt || len(tr["tokens"].([]any)) != prompt || tr["max_model_len"].(float64) != 4096 || tr["token_strs"] != nil {
			t.Errorf("tokenize %s vs prompt_tokens %d", tb, prompt)
		}
	}
	_, tb := post(t, ts, "/tokenize", `{"prompt":"Hello world","return_token_strs":true}`)
	if want := `{"count":2,"max_model_len":4096,"tokens":[9906,1917],"token_strs":["Hello"," world"]}`; tb != want {
		t.Errorf("prompt form %s", tb)
	}
	text := "Ünïcode and <|endoftext|> too"
	ids, _ := json.Marshal(tok.Encode(text))
	if _, db := post(t, ts, "/detokenize", `{"tokens":`+string(ids)+`}`); decode(t, db)["prompt"] != text {
		t.Errorf("detokenize %s", db)
	}
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/tokenize", `{}`, 400},
		{"/tokenize", `{"prompt":"x","model":"zz"}`, 404},
		{"/tokenize", `{"messages":[],"continue_final_message":true}`, 400},
		{"/tokenize", `{"messages":"x"}`, 400},
		{"/tokenize", `{"messages":[{"role":"user","content":1}]}`, 400},
		{"/tokenize", `{"prompt":"\x"}`, 400},
		{"/tokenize", `{"messages":[],"add_generation_prompt":false}`, 200},
		{"/detokenize", `{}`, 400},
		{"/detokenize", `{"tokens":[-4]}`, 400},
		{"/detokenize", `{"tokens":[1],"model":"zz"}`, 404},
	} {
		if status, body := post(t, ts, tc.path, tc.body); status != tc.status {
			t.Errorf("%s %s: %d %s", tc.path, tc.body, status, body)
		}
	}
}

func TestRecording(t *testing.T) {
	sim, ts := start(t, Config{})
	body := chatBody("x", `"stream":true,"max_tokens":3,"max_completion_tokens":2,"n":1,"stream_options":{"include_usage":true,"continuous_usage_stats":false}`)
	post(t, ts, "/v1/chat/completions", body, "X-Custom", "yes")
	post(t, ts, "/v1/responses", `{"input":"x","max_output_tokens":4}`)
	get(t, ts, "/metrics")
	post(t, ts, "/v1/completions", `not json`)
	get(t, ts, "/sim/requests")
	recs := sim.Requests()
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Method != "POST" || r.Path != "/v1/chat/completions" || string(r.Body) != body || r.Header.Get("X-Custom") != "yes" ||
		!r.Stream || *r.MaxTokens != 3 || *r.MaxCompletionTokens != 2 || *r.N != 1 || r.Model != "sim-model" ||
		r.StreamOptions == nil || !*r.StreamOptions.IncludeUsage || *r.StreamOptions.ContinuousUsageStats {
		t.Errorf("record %+v", r)
	}
	if *recs[1].MaxOutputTokens != 4 || recs[2].Method != "GET" || recs[3].MaxTokens != nil || string(recs[3].Body) != "not json" {
		t.Errorf("records %+v", recs[1:])
	}
	_, js := get(t, ts, "/sim/requests")
	var list []map[string]any
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list) != 4 || list[0]["body"] != body || list[0]["max_tokens"].(float64) != 3 {
		t.Errorf("/sim/requests %s", js)
	}
	sim.Reset()
	if _, js := get(t, ts, "/sim/requests"); js != "[]" {
		t.Errorf("after reset %s", js)
	}

	small, ts2 := start(t, Config{RecordLimit: 3})
	for i := 0; i < 10; i++ {
		get(t, ts2, fmt.Sprintf("/health?i=%d", i))
	}
	if recs := small.Requests(); len(recs) != 3 || recs[2].RawQuery != "i=9" || recs[0].RawQuery != "i=7" {
		t.Errorf("limited records %+v", recs)
	}
	none, ts3 := start(t, Config{RecordLimit: -1})
	get(t, ts3, "/health")
	if len(none.Requests()) != 0 {
		t.Error("recording disabled but recorded")
	}
}

// TestExplicitNulls: pydantic reads an explicit null as None, unlike an
// absent member: a completions max_tokens of null leaves the rest of the
// context (absent: 16), and an include_usage of null asks for no usage
// (absent, in a present stream_options: usage).
func TestExplicitNulls(t *testing.T) {
	_, ts := start(t, Config{MaxModelLen: 200, DefaultLength: 1000})
	_, b := post(t, ts, "/v1/completions", `{"prompt":"hi","max_tokens":null}`)
	prompt, completion := usageOf(t, decode(t, b)["usage"])
	if prompt+completion != 200 {
		t.Errorf("max_tokens null: %d + %d tokens; want the context, 200", prompt, completion)
	}
	_, b = post(t, ts, "/v1/completions", `{"prompt":"hi"}`)
	if _, completion := usageOf(t, decode(t, b)["usage"]); completion != 16 {
		t.Errorf("max_tokens absent: %d tokens; want 16", completion)
	}
	_, b = post(t, ts, "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":null}}`)
	if strings.Contains(b, `"usage":{`) {
		t.Errorf("include_usage null sent usage: %s", b)
	}
	_, b = post(t, ts, "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{}}`)
	if !strings.Contains(b, `"usage":{`) {
		t.Errorf("include_usage absent sent no usage: %s", b)
	}
}

// TestVaryLengths: with VaryLengths, choice i ends i tokens before the
// natural length; a cap that stops them first stops them all alike.
func TestVaryLengths(t *testing.T) {
	_, ts := start(t, Config{VaryLengths: true, DefaultLength: 10})
	_, b := post(t, ts, "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":3}`)
	if _, completion := usageOf(t, decode(t, b)["usage"]); completion != 10+9+8 {
		t.Errorf("n=3: %d tokens; want 10+9+8", completion)
	}
	_, b = post(t, ts, "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":3,"max_tokens":5}`)
	if _, completion := usageOf(t, decode(t, b)["usage"]); completion != 15 {
		t.Errorf("n=3 capped at 5: %d tokens; want 15", completion)
	}
}
