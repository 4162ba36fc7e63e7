package meter

import (
	"strings"
	"testing"
)

// jsonBodies are non-streaming response bodies as vLLM sends them.
var jsonBodies = []struct {
	name    string
	body    string
	usage   Usage
	usageOK bool
	err     *UpstreamError
}{
	{
		name: "chat completion",
		body: `{"id":"chatcmpl-1","object":"chat.completion","created":1760000000,"model":"m",` +
			`"choices":[{"index":0,"message":{"role":"assistant","content":"Hi! {\"usage\":1}","refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning":null},` +
			`"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}],` +
			`"service_tier":null,"system_fingerprint":null,` +
			`"usage":{"prompt_tokens":12,"total_tokens":15,"completion_tokens":3,"prompt_tokens_details":null},` +
			`"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`,
		usage: Usage{12, 3, 15, 0}, usageOK: true,
	},
	{
		name: "completion with cached tokens, pretty-printed",
		body: "{\n  \"id\": \"cmpl-1\",\n  \"object\": \"text_completion\",\n  \"choices\": [\n    {\"index\": 0, \"text\": \"]}\\\\\", \"logprobs\": null}\n  ],\n" +
			"  \"usage\": {\n    \"prompt_tokens\": 100,\n    \"total_tokens\": 116,\n    \"completion_tokens\": 16,\n    \"prompt_tokens_details\": {\"cached_tokens\": 64}\n  }\n}\n",
		usage: Usage{100, 16, 116, 64}, usageOK: true,
	},
	{
		name: "embeddings",
		body: `{"id":"embd-1","object":"list","created":1,"model":"e","data":[{"index":0,"object":"embedding","embedding":[0.0123,-0.5,1e-3,3.25]},` +
			`{"index":1,"object":"embedding","embedding":"AAAAAA=="}],"usage":{"prompt_tokens":8,"total_tokens":8,"completion_tokens":0,"prompt_tokens_details":null}}`,
		usage: Usage{8, 0, 8, 0}, usageOK: true,
	},
	{
		name: "responses API",
		body: `{"id":"resp_1","object":"response","created_at":1,"error":null,"incomplete_details":null,"output":[{"type":"message","content":[{"type":"output_text","text":"hello"}]}],` +
			`"status":"completed","usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":4},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":25}}`,
		usage: Usage{20, 5, 25, 4}, usageOK: true,
	},
	{
		name:  "rerank before 2025: usage as total_tokens only, all prompt",
		body:  `{"id":"rerank-1","model":"r","results":[{"index":0,"document":{"text":"a"},"relevance_score":0.9}],"usage":{"total_tokens":11}}`,
		usage: Usage{11, 0, 11, 0}, usageOK: true,
	},
	{
		name:  "messages API (vLLM)",
		body:  `{"id":"chatcmpl-1","type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"model":"m","stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":3}}`,
		usage: Usage{12, 3, 15, 0}, usageOK: true,
	},
	{
		name:  "messages API (Anthropic's cache counts)",
		body:  `{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":2,"cache_creation_input_tokens":10,"cache_read_input_tokens":30,"output_tokens":5}}`,
		usage: Usage{42, 5, 47, 30}, usageOK: true,
	},
	{
		name: "messages API error",
		body: `{"type":"error","error":{"type":"BadRequestError","message":"max_tokens must be positive"}}`,
		err:  &UpstreamError{Message: "max_tokens must be positive", Type: "BadRequestError"},
	},
	{
		name: "nested error (v0.10.1+)",
		body: `{"error":{"message":"The model ` + "`x`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`,
		err:  &UpstreamError{Message: "The model `x` does not exist.", Type: "NotFoundError", Code: "404", Status: 404},
	},
	{
		name: "flat error (v0.10.0 and older)",
		body: `{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}`,
		err:  &UpstreamError{Message: "This model's maximum context length is 4096 tokens.", Type: "BadRequestError", Code: "400", Status: 400},
	},
	{
		name: "401 from --api-key",
		body: `{"error":"Unauthorized"}`,
		err:  &UpstreamError{Message: "Unauthorized"},
	},
	{
		name: "error envelope sent with status 200",
		body: `{"error":{"message":"The model does not support Chat Completions API","type":"BadRequestError","param":null,"code":400}}`,
		err:  &UpstreamError{Message: "The model does not support Chat Completions API", Type: "BadRequestError", Code: "400", Status: 400},
	},
	{
		name: "responses API failed",
		body: `{"id":"resp_2","object":"response","error":{"code":"server_error","message":"boom"},"status":"failed","usage":null}`,
		err:  &UpstreamError{Message: "boom", Code: "server_error"},
	},
	{
		name: "FastAPI detail",
		body: `{"detail":"Not Found"}`,
	},
	{
		name: "not an object",
		body: `[{"usage":{"prompt_tokens":1}}]`,
	},
	{
		name: "empty",
		body: ``,
	},
	{
		name: "usage nested deeper only",
		body: `{"data":{"usage":{"prompt_tokens":1}},"choices":[{"usage":{"prompt_tokens":2}}]}`,
	},
	{
		name:  "truncated after usage",
		body:  `{"usage":{"prompt_tokens":3,"total_tokens":3,"completion_tokens":0},"choices":[{"text":"abc`,
		usage: Usage{3, 0, 3, 0}, usageOK: true,
	},
}

func TestJSONMeter(t *testing.T) {
	for _, c := range jsonBodies {
		t.Run(c.name, func(t *testing.T) {
			// Whole, byte by byte, and in chunks of every size up to 9.
			for size := 0; size <= 9; size++ {
				m := NewJSONMeter()
				if size == 0 {
					m.Write([]byte(c.body))
				} else {
					for k := 0; k < len(c.body); k += size {
						m.Write([]byte(c.body[k:min(k+size, len(c.body))]))
					}
				}
				u, ok := m.Usage()
				if u != c.usage || ok != c.usageOK {
					t.Fatalf("size %d: Usage() = %+v %v, want %+v %v", size, u, ok, c.usage, c.usageOK)
				}
				e := m.Err()
				if (e == nil) != (c.err == nil) || e != nil && *e != *c.err {
					t.Fatalf("size %d: Err() = %+v, want %+v", size, e, c.err)
				}
			}
			// Whole, as the writer hands on a body of announced length.
			m := NewJSONMeter()
			m.WriteWhole([]byte(c.body))
			if u, ok := m.Usage(); u != c.usage || ok != c.usageOK {
				t.Fatalf("WriteWhole: Usage() = %+v %v, want %+v %v", u, ok, c.usage, c.usageOK)
			}
			if e := m.Err(); (e == nil) != (c.err == nil) || e != nil && *e != *c.err {
				t.Fatalf("WriteWhole: Err() = %+v, want %+v", e, c.err)
			}
		})
	}
}

// TestTailUsage: the backward walk finds the last top-level usage of the
// bodies vLLM sends, past members of every kind, and leaves to the forward
// scan every body where it could differ from it.
func TestTailUsage(t *testing.T) {
	for _, c := range []struct {
		name, body, want string // want "" = left to the forward scan
	}{
		{"chat completion", jsonBodies[0].body, `{"prompt_tokens":12,"total_tokens":15,"completion_tokens":3,"prompt_tokens_details":null}`},
		{"pretty-printed", jsonBodies[1].body, "{\n    \"prompt_tokens\": 100,\n    \"total_tokens\": 116,\n    \"completion_tokens\": 16,\n    \"prompt_tokens_details\": {\"cached_tokens\": 64}\n  }"},
		{"after members of every kind", `{"usage":{"a":1},"s":"x\\\"}","n":-1.5e3,"t":true,"o":{"k":["]",{"\\":"["}]},"a":[1,"\\"],"z":null}`, `{"a":1}`},
		{"the last of two", `{"usage":{"a":1}, "usage" : {"a":2} }`, `{"a":2}`},
		{"the last is null", `{"usage":{"a":1},"usage":null}`, ""},
		{"not an object", `{"usage":[1]}`, ""},
		{"none", `{"id":"x","choices":[{"usage":{"a":1}}]}`, ""},
		{"a null error, as the Responses API writes", `{"error" : null,"output":[{"error":null}],"usage":{"a":1}}`, `{"a":1}`},
		{"an error member", `{"error":{"code":"x"},"usage":{"a":1}}`, ""},
		{"a null error and another", `{"error":null,"x":{"error":"boom"},"usage":{"a":1}}`, ""},
		{"error as a value", `{"x":"error","usage":{"a":1}}`, ""},
		{"a null error at the end", `{"usage":{"a":1},"error":nul`, ""},
		{"an error object", `{"object":"error","usage":{"a":1}}`, ""},
		{"an escaped key", `{"us\u0061ge":{"a":2},"usage":{"a":1}}`, ""},
		{"a key with an escape", `{"x":1,"us\tage":{"a":2}}`, ""},
		{"trailing bytes", `{"usage":{"a":1}}x`, ""},
		{"not an object at all", `["usage",{"usage":{"a":1}}]`, ""},
		{"empty object", `{}`, ""},
		{"unterminated string", `{"usage":{"a":1},"x":"abc}`, ""},
		{"unbalanced", `{"usage":{"a":1},"x":]}`, ""},
		{"beyond the budget", `{"usage":{"a":1},"x":"` + strings.Repeat("y", tailBudget) + `"}`, ""},
		{"a big member before it", `{"x":["` + strings.Repeat("y", 2*tailBudget) + `"],"usage":{"a":1}}`, `{"a":1}`},
		{"a long scalar across the budget", `{"usage":{"a":1},"n":` + strings.Repeat("1", tailBudget) + `}`, ""},
		{"escapes below the budget", `{"x":"` + strings.Repeat(`\\`, tailBudget) + `\"","usage":{"a":1},"y":"` + strings.Repeat("z", tailBudget-40) + `"}`, `{"a":1}`},
		{"missing colon after usage", `{"x":1,"usage" {"a":1}}`, ""},
		{"missing comma after usage", `{"usage":{"a":1} "x":1}`, ""},
		// Not JSON before the usage member: the walk stops at the usage it
		// meets first, where the forward scan may find none.
		{"two objects", `{"a":1} {"usage":{"a":1}}`, `{"a":1}`},
		{"missing colon before", `{"x" 1,"usage":{"a":1}}`, `{"a":1}`},
	} {
		v, ok := tailUsage([]byte(c.body))
		if ok != (c.want != "") || string(v) != c.want {
			t.Errorf("%s: tailUsage = %q %v, want %q", c.name, v, ok, c.want)
		}
	}
}

func TestJSONMeterBounds(t *testing.T) {
	// A value longer than maxCapture is dropped, not kept in part.
	big := `{"error":{"message":"` + strings.Repeat("x", maxCapture) + `"},"usage":{"prompt_tokens":1}}`
	m := NewJSONMeter()
	for k := 0; k < len(big); k += 1000 {
		m.Write([]byte(big[k:min(k+1000, len(big))]))
	}
	if m.Err() != nil {
		t.Fatal("kept an oversized error")
	}
	if u, ok := m.Usage(); !ok || u.PromptTokens != 1 {
		t.Fatalf("usage after an oversized member: %+v %v", u, ok)
	}
	if c := cap(m.raw[capError]); c > 2*maxCapture {
		t.Fatalf("capture grew to %d", c)
	}
	// Long keys match nothing, whatever their prefix.
	m.Reset()
	m.Write([]byte(`{"usage` + strings.Repeat(" ", 300) + `":{"prompt_tokens":1},"error":null}`))
	if _, ok := m.Usage(); ok || m.Err() != nil {
		t.Fatal("matched a long key")
	}
	// Reset forgets the previous body.
	m.Reset()
	m.Write([]byte(`{"object":"chat.completion","usage":{"prompt_tokens":5}}`))
	if u, ok := m.Usage(); !ok || u.PromptTokens != 5 || m.Err() != nil {
		t.Fatalf("after Reset: %+v %v %v", u, ok, m.Err())
	}
}
