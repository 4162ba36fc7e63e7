package vllmsim

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// msgBody builds an Anthropic Messages request with one user message.
func msgBody(content, extra string) string {
	b := `{"model":"sim-model","messages":[{"role":"user","content":` + string(jsonText(content)) + `}]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

// messagesEvents splits an Anthropic stream into event names and data; the
// bare [DONE] that ends it has the name "".
func messagesEvents(t *testing.T, body string) (names, data []string) {
	t.Helper()
	for _, ev := range events(body) {
		if ev == "data: [DONE]" {
			names, data = append(names, ""), append(data, "[DONE]")
			continue
		}
		name, d, ok := strings.Cut(ev, "\ndata: ")
		if !ok || !strings.HasPrefix(name, "event: ") {
			t.Fatalf("bad event %q", ev)
		}
		name = strings.TrimPrefix(name, "event: ")
		if typ := decode(t, d)["type"]; typ != name {
			t.Errorf("event %s carries type %v", name, typ)
		}
		names, data = append(names, name), append(data, d)
	}
	return names, data
}

// messagesUsage returns input and output tokens of an Anthropic usage.
func messagesUsage(t *testing.T, v any) (int, int) {
	t.Helper()
	u, ok := v.(map[string]any)
	if !ok || len(u) != 2 {
		t.Fatalf("usage %v", v)
	}
	return int(u["input_tokens"].(float64)), int(u["output_tokens"].(float64))
}

// The exact bytes of a 3-token answer (two words and the EOS).
func TestMessagesStreamExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	resp := call(t, ts, http.MethodPost, "/v1/messages", msgBody("Hello", `"max_tokens":100,"stream":true`),
		"X-Request-Id", "test", "X-Sim-Length", "3")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	body, _ := io.ReadAll(resp.Body)
	want := "event: message_start\n" +
		`data: {"type":"message_start","message":{"id":"chatcmpl-test","content":[],"model":"sim-model","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":8,"output_tokens":0}}}` + "\n\n" +
		"event: content_block_start\n" +
		`data: {"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}` + "\n\n" +
		"event: content_block_delta\n" +
		`data: {"type":"content_block_delta","delta":{"type":"text_delta","text":" water"},"index":0}` + "\n\n" +
		"event: content_block_delta\n" +
		`data: {"type":"content_block_delta","delta":{"type":"text_delta","text":" it"},"index":0}` + "\n\n" +
		"event: content_block_stop\n" +
		`data: {"type":"content_block_stop","index":0}` + "\n\n" +
		"event: message_delta\n" +
		`data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":8,"output_tokens":3}}` + "\n\n" +
		"event: message_stop\n" +
		`data: {"type":"message_stop"}` + "\n\n" +
		"data: [DONE]\n\n"
	if string(body) != want {
		t.Errorf("stream:\n%s\nwant:\n%s", body, want)
	}

	// Cut by max_tokens: no EOS, stop_reason max_tokens.
	_, b := post(t, ts, "/v1/messages", msgBody("Hello", `"max_tokens":2,"stream":true`))
	names, data := messagesEvents(t, b)
	if strings.Join(names, " ") != "message_start content_block_start content_block_delta content_block_delta content_block_stop message_delta message_stop " ||
		data[5] != `{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":8,"output_tokens":2}}` {
		t.Errorf("max_tokens stream:\n%s", b)
	}
	// An answer that is only an EOS has no text block at all.
	_, b = post(t, ts, "/v1/messages", msgBody("Hello", `"max_tokens":9,"stream":true`), "X-Sim-Length", "1")
	names, data = messagesEvents(t, b)
	if strings.Join(names, " ") != "message_start message_delta message_stop " ||
		data[1] != `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":8,"output_tokens":1}}` {
		t.Errorf("empty stream:\n%s", b)
	}
}

func TestMessagesJSONExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	for _, tc := range []struct{ body, length, want string }{
		{msgBody("Hello", `"max_tokens":100`), "3",
			`{"id":"chatcmpl-j","type":"message","role":"assistant","content":[{"type":"text","text":" water it"}],"model":"sim-model","stop_reason":"end_turn","usage":{"input_tokens":8,"output_tokens":3}}`},
		{msgBody("Hello", `"max_tokens":2,"stream":null`), "16",
			`{"id":"chatcmpl-j","type":"message","role":"assistant","content":[{"type":"text","text":" water it"}],"model":"sim-model","stop_reason":"max_tokens","usage":{"input_tokens":8,"output_tokens":2}}`},
		{msgBody("Hello", `"max_tokens":5,"stream":false`), "1",
			`{"id":"chatcmpl-j","type":"message","role":"assistant","content":[],"model":"sim-model","stop_reason":"end_turn","usage":{"input_tokens":8,"output_tokens":1}}`},
	} {
		resp := call(t, ts, http.MethodPost, "/v1/messages", tc.body, "X-Request-Id", "j", "X-Sim-Length", tc.length)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) {
			t.Errorf("status %d, headers %v, length %d for %d bytes", resp.StatusCode, resp.Header, resp.ContentLength, len(body))
		}
		if string(body) != tc.want {
			t.Errorf("body:\n%s\nwant:\n%s", body, tc.want)
		}
	}
}

// An Anthropic request counts exactly as the chat request vLLM converts it
// to, written by hand here: input_tokens is that request's prompt_tokens
// (and /tokenize's count), and the answer is the same.
func TestMessagesPromptMatchesChat(t *testing.T) {
	const tools = `[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},` +
		`{"type":"function","function":{"name":"noop","parameters":{"type":"object"}}}]`
	pairs := []struct{ name, anthropic, chat string }{
		{"plain", msgBody("Hello", `"max_tokens":50`), chatBody("Hello", `"max_tokens":50`)},
		{"system string",
			`{"model":"sim-model","max_tokens":50,"system":"Be brief.","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"}]}`,
			`{"model":"sim-model","max_tokens":50,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"}]}`},
		{"blocks and tools",
			`{"model":"sim-model","max_tokens":50,"stop_sequences":["END"],"temperature":0.2,"metadata":{"user_id":"u"},` +
				`"system":[{"type":"text","text":"You are terse."},{"type":"text","text":" Answer in English."}],` +
				`"tools":[{"name":"get_weather","description":"Weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},{"name":"noop","input_schema":{}}],` +
				`"tool_choice":{"type":"auto"},"messages":[` +
				`{"role":"user","content":"What's the weather in Paris?"},` +
				`{"role":"assistant","content":[{"type":"thinking","thinking":"Use the tool.","signature":"sig"},{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris","days":2,"metric":true,"scale":1.5}}]},` +
				`{"role":"user","content":[{"type":"tool_result","id":"toolu_1","content":[{"type":"text","text":"It's 21°C"}]},{"type":"tool_result","id":"toolu_1","content":"sunny","is_error":false},` +
				`{"type":"text","text":"Thanks."},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"text","text":"And tomorrow?"}]},` +
				`{"role":"assistant","content":[{"type":"text","text":""}]},` +
				`{"role":"assistant","content":[{"type":"tool_result","content":[]}]},` +
				`{"role":"user","content":""}]}`,
			`{"model":"sim-model","max_tokens":50,"tools":` + tools + `,"messages":[` +
				`{"role":"system","content":"You are terse. Answer in English."},` +
				`{"role":"user","content":"What's the weather in Paris?"},` +
				`{"role":"assistant","content":"Let me check.","reasoning":"Use the tool.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\", \"days\": 2, \"metric\": true, \"scale\": 1.5}"}}]},` +
				`{"role":"tool","content":"[{'type': 'text', 'text': \"It's 21°C\"}]"},` +
				`{"role":"tool","content":"sunny"},` +
				`{"role":"user","content":[{"type":"text","text":"Thanks."},{"type":"image_url","image_url":{"url":"AAAA"}},{"type":"text","text":"And tomorrow?"}]},` +
				`{"role":"assistant","content":"Tool result: "},` +
				`{"role":"user","content":""}]}`},
	}
	for _, cfg := range []Config{{}, {ChatBOS: true, DefaultLength: 7}} {
		_, ts := start(t, cfg)
		for _, p := range pairs {
			_, cb := post(t, ts, "/v1/chat/completions", p.chat)
			chat := decode(t, cb)
			prompt, completion := usageOf(t, chat["usage"])
			text := chat["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"].(string)

			status, mb := post(t, ts, "/v1/messages", p.anthropic)
			if status != 200 {
				t.Fatalf("%s: %d %s", p.name, status, mb)
			}
			msg := decode(t, mb)
			in, out := messagesUsage(t, msg["usage"])
			got := msg["content"].([]any)[0].(map[string]any)["text"]
			if in != prompt || out != completion || got != text {
				t.Errorf("%s: messages %d/%d %q, chat %d/%d %q", p.name, in, out, got, prompt, completion, text)
			}

			_, sb := post(t, ts, "/v1/messages", strings.Replace(p.anthropic, `"max_tokens":50`, `"max_tokens":50,"stream":true`, 1))
			names, data := messagesEvents(t, sb)
			var streamed string
			for i, n := range names {
				if n == "content_block_delta" {
					streamed += decode(t, data[i])["delta"].(map[string]any)["text"].(string)
				}
			}
			startIn, _ := messagesUsage(t, decode(t, data[0])["message"].(map[string]any)["usage"])
			endIn, endOut := messagesUsage(t, decode(t, data[len(data)-3])["usage"])
			if startIn != prompt || endIn != prompt || endOut != completion || streamed != text {
				t.Errorf("%s: stream %d/%d/%d %q, chat %d/%d %q", p.name, startIn, endIn, endOut, streamed, prompt, completion, text)
			}

			countReq := strings.Replace(p.anthropic, `"max_tokens":50,`, "", 1)
			if status, cb := post(t, ts, "/v1/messages/count_tokens", countReq); status != 200 || cb != `{"input_tokens":`+strconv.Itoa(prompt)+`}` {
				t.Errorf("%s: count_tokens %d %s, want %d", p.name, status, cb, prompt)
			}
			_, tb := post(t, ts, "/tokenize", p.chat)
			if n := countOf(t, "/tokenize", tb); n != prompt {
				t.Errorf("%s: /tokenize %d, chat %d", p.name, n, prompt)
			}
		}
	}
}

// Validation failures: 400 in the OpenAI envelope of vLLM's app-wide
// handler, or the Anthropic one with AnthropicValidationErrors; nothing
// is generated or counted.
func TestMessagesValidation(t *testing.T) {
	bodies := map[string]string{
		"max_tokens missing":  msgBody("Hi", ""),
		"max_tokens zero":     msgBody("Hi", `"max_tokens":0`),
		"max_tokens negative": msgBody("Hi", `"max_tokens":-3`),
		"max_tokens null":     msgBody("Hi", `"max_tokens":null`),
		"model missing":       `{"max_tokens":5,"messages":[]}`,
		"model empty":         `{"model":"","max_tokens":5,"messages":[]}`,
		"messages missing":    `{"model":"sim-model","max_tokens":5}`,
		"role system":         `{"model":"sim-model","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`,
		"content number":      `{"model":"sim-model","max_tokens":5,"messages":[{"role":"user","content":5}]}`,
		"block type":          `{"model":"sim-model","max_tokens":5,"messages":[{"role":"user","content":[{"type":"audio"}]}]}`,
		"block input":         `{"model":"sim-model","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","input":"x"}]}]}`,
		"block content":       `{"model":"sim-model","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","content":[1]}]}]}`,
		"system number":       `{"model":"sim-model","max_tokens":5,"system":1,"messages":[]}`,
		"tool schema":         `{"model":"sim-model","max_tokens":5,"messages":[],"tools":[{"name":"t"}]}`,
		"tool choice":         `{"model":"sim-model","max_tokens":5,"messages":[],"tool_choice":{"type":"none"}}`,
		"not json":            `{"model":`,
	}
	for _, anthropic := range []bool{false, true} {
		sim, ts := start(t, Config{AnthropicValidationErrors: anthropic})
		for name, body := range bodies {
			status, b := post(t, ts, "/v1/messages", body)
			m := decode(t, b)
			e, _ := m["error"].(map[string]any)
			if status != 400 || e == nil {
				t.Errorf("%s: %d %s", name, status, b)
				continue
			}
			if anthropic && (m["type"] != "error" || e["type"] != "invalid_request_error" || len(e) != 2) ||
				!anthropic && (e["type"] != "Bad Request" || e["code"] != 400.0) {
				t.Errorf("%s (anthropic %v): %s", name, anthropic, b)
			}
		}
		_, b := post(t, ts, "/v1/messages", msgBody("Hi", ""))
		_, bc := post(t, ts, "/v1/messages/count_tokens", `{"messages":[]}`)
		want := `{"error":{"message":"Field required: max_tokens","type":"Bad Request","param":null,"code":400}}`
		if anthropic {
			want = `{"type":"error","error":{"type":"invalid_request_error","message":"Field required: max_tokens"}}`
		}
		if b != want || !strings.Contains(bc, "Model is required") {
			t.Errorf("anthropic %v: %s, count_tokens %s", anthropic, b, bc)
		}
		resp := call(t, ts, http.MethodPost, "/v1/messages", msgBody("Hi", `"max_tokens":5`), "Content-Type", "text/plain")
		ct, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || strings.HasPrefix(string(ct), `{"type":"error"`) != anthropic {
			t.Errorf("content type: %d %s", resp.StatusCode, ct)
		}
		if c := sim.Counters(); c != (Counters{}) {
			t.Errorf("counters %+v", c)
		}
	}
}

// The route's own errors come in the Anthropic envelope with the type and
// status chat gives them; a stream request gets them as JSON too.
func TestMessagesErrors(t *testing.T) {
	sim, ts := start(t, Config{MaxModelLen: 20})
	long := strings.Repeat(" word", 30)
	for _, tc := range []struct {
		name, body string
		hdr        []string
		status     int
		want       string
	}{
		{"unknown model", `{"model":"nope","max_tokens":5,"stream":true,"messages":[]}`, nil, 404,
			`{"type":"error","error":{"type":"NotFoundError","message":"The model ` + "`nope`" + ` does not exist."}}`},
		{"prompt too long", msgBody(long, `"max_tokens":5,"stream":true`), nil, 400,
			`{"type":"error","error":{"type":"BadRequestError","message":"This model's maximum context length is 20 tokens. However, your request has 37 input tokens. Please reduce the length of the input messages."}}`},
		{"max_tokens too large", msgBody("x", `"max_tokens":20`), nil, 400,
			`{"type":"error","error":{"type":"BadRequestError","message":"'max_tokens' or 'max_completion_tokens' is too large: 20. This model's maximum context length is 20 tokens and your request has 8 input tokens (20 > 20 - 8)."}}`},
		{"sim status", `garbage`, []string{"X-Sim-Status", "503"}, 503,
			`{"type":"error","error":{"type":"ServiceUnavailableError","message":"Simulated error (X-Sim-Status)"}}`},
		{"tool choice without name", `{"model":"sim-model","max_tokens":5,"messages":[],"tool_choice":{"type":"tool"}}`, nil, 400, ""},
	} {
		status, body := post(t, ts, "/v1/messages", tc.body, tc.hdr...)
		if status != tc.status || tc.want != "" && body != tc.want || !strings.HasPrefix(body, `{"type":"error","error":{"type":"`) {
			t.Errorf("%s: %d %s", tc.name, status, body)
		}
	}
	if status, body := post(t, ts, "/v1/messages/count_tokens", `{"model":"nope","messages":[]}`); status != 404 || !strings.HasPrefix(body, `{"type":"error"`) {
		t.Errorf("count_tokens unknown model: %d %s", status, body)
	}
	if c := sim.Counters(); c != (Counters{}) {
		t.Errorf("counters %+v", c)
	}
}

// X-Sim-Error-After: vLLM's converter cannot read the chat stream's error
// event as a chunk and sends its own error event, then [DONE]; no
// content_block_stop and no usage. The tokens generated still count.
func TestMessagesErrorAfter(t *testing.T) {
	sim, ts := start(t, Config{DefaultLength: 10})
	_, body := post(t, ts, "/v1/messages", msgBody("Hello", `"max_tokens":100,"stream":true`), "X-Sim-Error-After", "2")
	names, data := messagesEvents(t, body)
	wantErr := `{"type":"error","error":{"type":"internal_error","message":"2 validation errors for ChatCompletionStreamResponse\nmodel\n` +
		`  Field required [type=missing, input_value={'error': {'message': 'In...am': None, 'code': 500}}, input_type=dict]\n` +
		`    For further information visit https://errors.pydantic.dev/2.12/v/missing\nchoices\n` +
		`  Field required [type=missing, input_value={'error': {'message': 'In...am': None, 'code': 500}}, input_type=dict]\n` +
		`    For further information visit https://errors.pydantic.dev/2.12/v/missing"}}`
	if strings.Join(names, " ") != "message_start content_block_start content_block_delta content_block_delta error " || data[4] != wantErr {
		t.Errorf("stream:\n%s", body)
	}
	if c := sim.Counters(); c.Requests != 1 || c.Errored != 1 || c.PromptTokens != 8 || c.GenerationTokens != 2 {
		t.Errorf("counters %+v", c)
	}
	// Failing before the first token: the error is the first event.
	_, body = post(t, ts, "/v1/messages", msgBody("Hello", `"max_tokens":100,"stream":true`), "X-Sim-Error-After", "0")
	if names, _ := messagesEvents(t, body); strings.Join(names, " ") != "error " {
		t.Errorf("error-after 0:\n%s", body)
	}
	status, body := post(t, ts, "/v1/messages", msgBody("Hello", `"max_tokens":100`), "X-Sim-Error-After", "3")
	if status != 500 || body != `{"type":"error","error":{"type":"InternalServerError","message":"Internal server error"}}` {
		t.Errorf("JSON error-after: %d %s", status, body)
	}
	if c := sim.Counters(); c.Requests != 3 || c.Errored != 3 || c.PromptTokens != 16 || c.GenerationTokens != 5 {
		t.Errorf("counters %+v", c)
	}

	resp := call(t, ts, http.MethodPost, "/v1/messages", msgBody("x", `"max_tokens":100,"stream":true`), "X-Sim-Crash-After", "4")
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || strings.Count(string(b), "content_block_delta\n") != 4 || strings.Contains(string(b), "[DONE]") {
		t.Errorf("crash: %v %s", err, b)
	}
	m := metrics(t, ts)
	if m[`vllm:request_success_total{`+modelLabels+`,finished_reason="error"}`] != 4 {
		t.Errorf("metrics %v", m)
	}
}

// The counters and /metrics add up to the usage the route reported, as for
// chat; requests are recorded with their max_tokens and stream flag.
func TestMessagesCounters(t *testing.T) {
	sim, ts := start(t, Config{DefaultLength: 6, APIKey: "k"})
	auth := []string{"Authorization", "Bearer k", "X-Sim-Chunk", "2"}
	var prompt, completion int
	for _, body := range []string{
		msgBody("Hello", `"max_tokens":100`),
		msgBody("Hello there", `"max_tokens":3,"stream":true`),
		msgBody("Hi", `"max_tokens":100,"stream":true`),
	} {
		status, b := post(t, ts, "/v1/messages", body, auth...)
		if status != 200 {
			t.Fatalf("%d %s", status, b)
		}
		var in, out int
		if strings.Contains(body, `"stream":true`) {
			names, data := messagesEvents(t, b)
			in, out = messagesUsage(t, decode(t, data[len(data)-3])["usage"])
			// Chunks of 2 tokens after the first: 1, 2, 2 and the EOS
			// alone, which sends no delta; 1, 2 when max_tokens is 3.
			if deltas := strings.Count(strings.Join(names, " "), "content_block_delta"); out == 6 && deltas != 3 || out == 3 && deltas != 2 {
				t.Errorf("%d tokens in %d deltas:\n%s", out, deltas, b)
			}
		} else {
			in, out = messagesUsage(t, decode(t, b)["usage"])
		}
		prompt += in
		completion += out
	}
	c := sim.Counters()
	if c.Requests != 3 || c.PromptTokens != int64(prompt) || c.EnginePromptTokens != int64(prompt) || c.GenerationTokens != int64(completion) || c.Errored != 0 || c.Aborted != 0 {
		t.Errorf("counters %+v, reported %d/%d", c, prompt, completion)
	}
	m := metrics(t, ts)
	if m[`vllm:prompt_tokens_total{`+modelLabels+`}`] != float64(prompt) || m[`vllm:generation_tokens_total{`+modelLabels+`}`] != float64(completion) ||
		m[`vllm:request_success_total{`+modelLabels+`,finished_reason="stop"}`] != 2 || m[`vllm:request_success_total{`+modelLabels+`,finished_reason="length"}`] != 1 {
		t.Errorf("metrics %v", m)
	}
	recs := sim.Requests()
	if len(recs) != 4 || recs[1].Path != "/v1/messages" || !recs[1].Stream || *recs[1].MaxTokens != 3 || recs[0].Stream || recs[0].Model != "sim-model" {
		t.Errorf("records %+v", recs)
	}
	// vLLM's key check reads Authorization only, not Anthropic's x-api-key.
	if status, b := post(t, ts, "/v1/messages", msgBody("Hi", `"max_tokens":5`), "X-Api-Key", "k"); status != 401 || b != `{"error":"Unauthorized"}` {
		t.Errorf("x-api-key: %d %s", status, b)
	}
}

func TestAppendPython(t *testing.T) {
	for _, tc := range []struct{ in, dumps, str string }{
		{`{"a":[1,2.5,1e16,1E-5,0.0001,-0.0,-0,true,null,"é\""],"b":{}}`,
			`{"a": [1, 2.5, 1e+16, 1e-05, 0.0001, -0.0, 0, true, null, "\u00e9\""], "b": {}}`,
			`{'a': [1, 2.5, 1e+16, 1e-05, 0.0001, -0.0, 0, True, None, 'é"'], 'b': {}}`},
		{`[{"type":"text","text":"it's","n":1.0,"x":[true,null],"u":"é\u0001\u200b😀"}]`,
			`[{"type": "text", "text": "it's", "n": 1.0, "x": [true, null], "u": "\u00e9\u0001\u200b\ud83d\ude00"}]`,
			`[{'type': 'text', 'text': "it's", 'n': 1.0, 'x': [True, None], 'u': 'é\x01\u200b😀'}]`},
		{`[1e15, 123456789012345678.0, 1e999, "a\\b\n"]`,
			`[1000000000000000.0, 1.2345678901234568e+17, Infinity, "a\\b\n"]`,
			`[1000000000000000.0, 1.2345678901234568e+17, inf, 'a\\b\n']`},
	} {
		for _, dumps := range []bool{true, false} {
			want := tc.str
			if dumps {
				want = tc.dumps
			}
			if got, err := appendPython(nil, []byte(tc.in), dumps); err != nil || string(got) != want {
				t.Errorf("%s (dumps %v):\n%s %v\nwant\n%s", tc.in, dumps, got, err, want)
			}
		}
	}
}
