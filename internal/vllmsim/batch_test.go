package vllmsim

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

const batchPath = "/v1/chat/completions/batch"

// batchBody builds a batch chat request from conversations given as JSON
// arrays of messages.
func batchBody(extra string, convs ...string) string {
	b := `{"model":"sim-model","messages":[` + strings.Join(convs, ",") + `]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

// batchChoices returns the choices of a chat.completion body, checking
// that choice i has index i.
func batchChoices(t *testing.T, body string) []map[string]any {
	t.Helper()
	m := decode(t, body)
	if m["object"] != "chat.completion" || !strings.HasPrefix(m["id"].(string), "chatcmpl-") {
		t.Fatalf("not a chat.completion: %s", body)
	}
	var out []map[string]any
	for i, c := range m["choices"].([]any) {
		c := c.(map[string]any)
		if int(c["index"].(float64)) != i {
			t.Fatalf("choice %d has index %v", i, c["index"])
		}
		out = append(out, c)
	}
	return out
}

func TestBatchExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	resp := call(t, ts, http.MethodPost, batchPath,
		batchBody("", `[{"role":"user","content":"Hello"}]`, `[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi there"}]`),
		"X-Request-Id", "test", "X-Sim-Length", "3")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" || resp.StatusCode != 200 {
		t.Fatalf("%d %q", resp.StatusCode, ct)
	}
	b, _ := io.ReadAll(resp.Body)
	want := `{"id":"chatcmpl-test","object":"chat.completion","created":0,"model":"sim-model","choices":[` +
		`{"index":0,"message":{"role":"assistant","content":" water it","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null},` +
		`{"index":1,"message":{"role":"assistant","content":" people of","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}],` +
		`"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":24,"total_tokens":30,"completion_tokens":6,"prompt_tokens_details":null,"completion_tokens_details":null},` +
		`"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`
	if got := normalize(string(b)); got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}
}

// Each conversation is answered exactly as the same conversation sent
// alone to /v1/chat/completions, and usage is the sum of theirs: every
// prompt, every completion. Each is capped by its own context left.
func TestBatchMatchesSingleChats(t *testing.T) {
	sim, ts := start(t, Config{MaxModelLen: 60, VaryLengths: true})
	convs := []string{
		`[{"role":"user","content":"Hello"}]`,
		`[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4"},{"role":"user","content":"And 3+3?"}]`,
		// 49 prompt tokens: 11 left, fewer than the natural 16.
		`[{"role":"user","content":"` + strings.Repeat("lorem ", 40) + `"}]`,
	}
	for _, extra := range []string{"", `"max_completion_tokens":5,"max_tokens":100`, `"max_completion_tokens":null,"max_tokens":7`} {
		status, body := post(t, ts, batchPath, batchBody(extra, convs...))
		if status != 200 {
			t.Fatalf("%s: %d %s", extra, status, body)
		}
		choices := batchChoices(t, body)
		if len(choices) != len(convs) {
			t.Fatalf("%d choices", len(choices))
		}
		bp, bc := usageOf(t, decode(t, body)["usage"])
		var prompt, completion int
		finishes := map[string]int{}
		for i, conv := range convs {
			status, single := post(t, ts, "/v1/chat/completions", `{"model":"sim-model","messages":`+conv+strings.TrimSuffix(","+extra, ",")+`}`)
			if status != 200 {
				t.Fatalf("single %d: %d %s", i, status, single)
			}
			p, c := usageOf(t, decode(t, single)["usage"])
			prompt += p
			completion += c
			want := decode(t, single)["choices"].([]any)[0].(map[string]any)
			got := choices[i]
			if got["finish_reason"] != want["finish_reason"] || got["message"].(map[string]any)["content"] != want["message"].(map[string]any)["content"] {
				t.Errorf("%s: choice %d = %v, alone %v", extra, i, got, want)
			}
			finishes[got["finish_reason"].(string)]++
		}
		if bp != prompt || bc != completion {
			t.Errorf("%s: usage %d/%d, sum of singles %d/%d", extra, bp, bc, prompt, completion)
		}
		if extra == "" && (finishes["stop"] != 2 || finishes["length"] != 1) {
			t.Errorf("finishes %v", finishes)
		}
		if extra != "" && finishes["length"] != 3 {
			t.Errorf("%s: finishes %v", extra, finishes)
		}
	}
	if c := sim.Counters(); c.Requests != 3+3*3 {
		t.Errorf("counters %+v", c)
	}
}

func TestBatchValidation(t *testing.T) {
	sim, ts := start(t, Config{MaxModelLen: 40})
	hello := `[{"role":"user","content":"Hello"}]`
	long := `[{"role":"user","content":"` + strings.Repeat("lorem ", 40) + `"}]`
	for _, tc := range []struct {
		body   string
		hdr    []string
		status int
		typ    string
		param  any
		msg    string
	}{
		{batchBody(""), nil, 400, "Bad Request", "body.messages", "List should have at least 1 item"},
		{batchBody("", hello, `[]`), nil, 400, "Bad Request", "body.messages.1", "List should have at least 1 item"},
		{`{"model":"sim-model"}`, nil, 400, "Bad Request", "body.messages", "Field required"},
		{`{"messages":[{"role":"user","content":"Hello"}]}`, nil, 400, "Bad Request", "body.messages.0", "Input should be a valid list"},
		{batchBody(`"n":2`, hello), nil, 400, "Bad Request", "n", "do not support `n > 1`"},
		{batchBody(`"n":0`, hello), nil, 400, "Bad Request", "n", "do not support `n > 1`"},
		{batchBody(`"use_beam_search":true`, hello), nil, 400, "Bad Request", "use_beam_search", "beam search"},
		{batchBody(`"tool_choice":"auto"`, hello), nil, 400, "Bad Request", "body.tool_choice", "Input should be 'none'"},
		{batchBody(`"tool_choice":{"type":"function","function":{"name":"f"}}`, hello), nil, 400, "Bad Request", "body.tool_choice", "Input should be 'none'"},
		// Raised by each conversation's ChatCompletionRequest, in the handler.
		{batchBody(`"continue_final_message":true`, hello), nil, 400, "BadRequestError", nil, "Cannot set both"},
		{batchBody(`"stream_options":{"include_usage":true}`, hello), nil, 400, "BadRequestError", nil, "Stream options can only be defined when `stream=True`."},
		{`{"model":"nope","messages":[` + hello + `],"n":1}`, nil, 404, "NotFoundError", "model", "The model `nope` does not exist."},
		{batchBody("", hello, long), nil, 400, "BadRequestError", "input_tokens", "maximum context length is 40 tokens"},
		{batchBody(`"max_tokens":33`, hello), nil, 400, "BadRequestError", "max_tokens", "is too large: 33"},
		{batchBody(`"max_completion_tokens":0,"max_tokens":5`, hello), nil, 400, "BadRequestError", "max_tokens", "at least 1, got 0"},
		// Every conversation is rendered before sampling is checked.
		{batchBody(`"max_tokens":0`, hello, long), nil, 400, "BadRequestError", "input_tokens", "maximum context length"},
		{batchBody("", hello), []string{"X-Sim-Status", "503"}, 503, "ServiceUnavailableError", nil, "Simulated error"},
		{batchBody("", hello), []string{"Content-Type", "text/plain"}, 400, "Bad Request", nil, "Unsupported Media Type"},
	} {
		status, body := post(t, ts, batchPath, tc.body, tc.hdr...)
		if status != tc.status {
			t.Errorf("%s: status %d %s", tc.body, status, body)
			continue
		}
		e, ok := decode(t, body)["error"].(map[string]any)
		if !ok || e["type"] != tc.typ || e["param"] != tc.param || !strings.Contains(e["message"].(string), tc.msg) || int(e["code"].(float64)) != status {
			t.Errorf("%s: %s", tc.body, body)
		}
	}
	if c := sim.Counters(); c.Requests != 0 || c.PromptTokens != 0 {
		t.Errorf("failed requests counted: %+v", c)
	}
	for _, extra := range []string{`"n":1`, `"n":null`, `"tool_choice":"none"`, `"tool_choice":null`, `"use_beam_search":false`, `"add_generation_prompt":false,"continue_final_message":true`} {
		if status, body := post(t, ts, batchPath, batchBody(extra, hello)); status != 200 {
			t.Errorf("%s: %d %s", extra, status, body)
		}
	}
}

// vLLM accepts stream and tools on the batch route (issue #50026): tools
// never reach the template, and stream leaves each choice with its last
// step only. Config.BatchRejectsStreamAndTools rejects both instead.
func TestBatchStreamAndTools(t *testing.T) {
	sim, ts := start(t, Config{})
	hello, hi := `[{"role":"user","content":"Hello"}]`, `[{"role":"user","content":"Hi"}]`
	_, full := post(t, ts, batchPath, batchBody("", hello, hi))
	fullChoices := batchChoices(t, full)
	fp, _ := usageOf(t, decode(t, full)["usage"])
	sim.Reset()

	// One token per step: the last is the EOS alone, as reported in #50026.
	resp := call(t, ts, http.MethodPost, batchPath, batchBody(`"stream":true,"stream_options":{"include_usage":true}`, hello, hi))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	p, c := usageOf(t, decode(t, body)["usage"])
	for i, ch := range batchChoices(t, body) {
		if msg := ch["message"].(map[string]any); msg["content"] != "" || ch["finish_reason"] != "stop" {
			t.Errorf("choice %d: %v", i, ch)
		}
	}
	if p != fp || c != 2 {
		t.Errorf("usage %d/%d", p, c)
	}
	// The engine generated every token all the same.
	if got := sim.Counters(); got.GenerationTokens != 2*16 || got.PromptTokens != int64(fp) {
		t.Errorf("counters %+v", got)
	}
	// Four tokens per step after the first: 1, 4, 4, 4, 3 — two words and the EOS.
	_, body = post(t, ts, batchPath, batchBody(`"stream":true`, hello, hi), "X-Sim-Chunk", "4")
	if _, c := usageOf(t, decode(t, body)["usage"]); c != 2*3 {
		t.Errorf("chunked usage %d", c)
	}
	for i, ch := range batchChoices(t, body) {
		got := ch["message"].(map[string]any)["content"].(string)
		all := fullChoices[i]["message"].(map[string]any)["content"].(string)
		if strings.Count(got, " ") != 2 || !strings.HasSuffix(all, got) {
			t.Errorf("choice %d: %q of %q", i, got, all)
		}
	}

	tools := `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`
	_, body = post(t, ts, batchPath, batchBody(tools, hello, hi))
	if p, _ := usageOf(t, decode(t, body)["usage"]); p != fp {
		t.Errorf("tools counted: prompt %d, without tools %d", p, fp)
	}
	_, plain := post(t, ts, "/v1/chat/completions", `{"messages":`+hello+`}`)
	_, withTools := post(t, ts, "/v1/chat/completions", `{"messages":`+hello+`,`+tools+`}`)
	pp, _ := usageOf(t, decode(t, plain)["usage"])
	if pt, _ := usageOf(t, decode(t, withTools)["usage"]); pt <= pp {
		t.Errorf("chat prompt with tools %d, without %d", pt, pp)
	}

	_, ts = start(t, Config{BatchRejectsStreamAndTools: true})
	for _, tc := range []struct{ extra, param string }{
		{`"stream":true`, "stream"},
		{`"stream":false,"stream_options":{"include_usage":true}`, "stream"},
		{tools, "tools"},
	} {
		status, body := post(t, ts, batchPath, batchBody(tc.extra, hello))
		e, _ := decode(t, body)["error"].(map[string]any)
		if status != 400 || e["type"] != "Bad Request" || e["param"] != tc.param {
			t.Errorf("%s: %d %s", tc.extra, status, body)
		}
	}
	if status, body := post(t, ts, batchPath, batchBody(`"stream":false,"tools":null`, hello)); status != 200 {
		t.Errorf("stream false: %d %s", status, body)
	}
}

// One batch counts as one request in Counters, and as one engine request
// per conversation in /metrics; the per-request failure headers apply to
// every conversation.
func TestBatchCounters(t *testing.T) {
	sim, ts := start(t, Config{DefaultLength: 6, MaxModelLen: 42})
	convs := []string{
		`[{"role":"user","content":"alpha"}]`,
		`[{"role":"user","content":"beta gamma"}]`,
		`[{"role":"user","content":"` + strings.Repeat("lorem ", 30) + `"}]`, // 39 tokens: 3 left
	}
	status, body := post(t, ts, batchPath, batchBody("", convs...))
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	p, c := usageOf(t, decode(t, body)["usage"])
	if got := sim.Counters(); got.Requests != 1 || got.PromptTokens != int64(p) || got.EnginePromptTokens != int64(p) || got.GenerationTokens != int64(c) || c != 6+6+3 {
		t.Errorf("counters %+v, usage %d/%d", got, p, c)
	}
	m := metrics(t, ts)
	if m[`vllm:prompt_tokens_total{`+modelLabels+`}`] != float64(p) || m[`vllm:generation_tokens_total{`+modelLabels+`}`] != float64(c) ||
		m[`vllm:request_success_total{`+modelLabels+`,finished_reason="stop"}`] != 2 || m[`vllm:request_success_total{`+modelLabels+`,finished_reason="length"}`] != 1 ||
		m[`vllm:request_prompt_tokens_count{`+modelLabels+`}`] != 3 || m[`vllm:num_requests_running{`+modelLabels+`}`] != 0 {
		t.Errorf("metrics %v", m)
	}
	if recs := sim.Requests(); len(recs) == 0 || recs[0].Path != batchPath || recs[0].Model != "sim-model" {
		t.Errorf("records %+v", recs)
	}

	status, body = post(t, ts, batchPath, batchBody("", convs[:2]...), "X-Sim-Error-After", "2")
	if status != 500 || body != `{"error":{"message":"Internal server error","type":"InternalServerError","param":null,"code":500}}` {
		t.Errorf("error-after: %d %s", status, body)
	}
	if got := sim.Counters(); got.Errored != 1 || got.GenerationTokens != int64(c)+2*2 {
		t.Errorf("counters %+v", got)
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+batchPath, strings.NewReader(batchBody("", convs[:2]...)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sim-Crash-After", "1")
	if resp, err := ts.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Error("crash answered")
	}
	got := sim.Counters()
	if got.Errored != 2 || got.Requests != 3 || got.GenerationTokens != int64(c)+2*2+2*1 {
		t.Errorf("counters %+v", got)
	}
	if m := metrics(t, ts); m[`vllm:request_success_total{`+modelLabels+`,finished_reason="error"}`] != 4 {
		t.Errorf("metrics %v", m)
	}
}

// Role and echo are per conversation: without a generation prompt the
// answer takes the role of the conversation's last message, and echo
// repeats that message.
func TestBatchEchoAndRole(t *testing.T) {
	_, ts := start(t, Config{DefaultLength: 3})
	_, body := post(t, ts, batchPath, batchBody(`"echo":true,"add_generation_prompt":false`,
		`[{"role":"user","content":"q"},{"role":"assistant","content":"Sure:"}]`,
		`[{"role":"user","content":"Say"}]`))
	choices := batchChoices(t, body)
	for i, want := range []struct{ role, prefix string }{{"assistant", "Sure: "}, {"user", "Say "}} {
		msg := choices[i]["message"].(map[string]any)
		if msg["role"] != want.role || !strings.HasPrefix(msg["content"].(string), want.prefix) {
			t.Errorf("choice %d: %v", i, msg)
		}
	}
	// With the generation prompt the role is the response role, and the
	// user's message is not echoed.
	_, body = post(t, ts, batchPath, batchBody(`"echo":true`, `[{"role":"user","content":"Say"}]`))
	if msg := batchChoices(t, body)[0]["message"].(map[string]any); msg["role"] != "assistant" || strings.HasPrefix(msg["content"].(string), "Say") {
		t.Errorf("echo with generation prompt: %v", msg)
	}
}
