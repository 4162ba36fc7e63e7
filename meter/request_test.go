package meter

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/llmgate/llmgate/tokenizer"
)

func TestEndpoint(t *testing.T) {
	for _, c := range []struct {
		path string
		ep   Endpoint
		name string
	}{
		{"/v1/chat/completions", EndpointChat, "chat"},
		{"/v1/completions", EndpointCompletions, "completions"},
		{"/v1/embeddings", EndpointEmbeddings, "embeddings"},
		{"/v1/responses", EndpointResponses, "responses"},
		{"/v1/messages", EndpointMessages, "messages"},
		{"/v1/rerank", EndpointRerank, "rerank"},
		{"/v1/score", EndpointScore, "score"},
		{"/rerank", EndpointOther, "other"},
		{"/v1/messages/count_tokens", EndpointOther, "other"},
		{"/v1/models", EndpointOther, "other"},
		{"/v1/chat/completions/", EndpointOther, "other"},
		{"/v1/chat/completions/batch", EndpointChatBatch, "chat_batch"},
		{"/invocations", EndpointOther, "other"},
	} {
		if got := EndpointFor(c.path); got != c.ep || got.String() != c.name {
			t.Errorf("EndpointFor(%q) = %v (%s), want %v (%s)", c.path, got, got, c.ep, c.name)
		}
	}
}

func TestParseRequest(t *testing.T) {
	for _, c := range []struct {
		name string
		ep   Endpoint
		body string
		want Request // prompt spans are not compared
	}{
		{
			name: "minimal chat",
			ep:   EndpointChat,
			body: `{"model":"llama-3","messages":[{"role":"user","content":"hi"}]}`,
			want: Request{Endpoint: EndpointChat, Model: "llama-3", N: 1, Prompts: 1},
		},
		{
			name: "stream with usage and max_tokens",
			ep:   EndpointChat,
			body: `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":256,"n":3,"messages":[]}`,
			want: Request{Endpoint: EndpointChat, Model: "m", Stream: true, N: 3, Prompts: 1, MaxTokens: 256,
				MaxTokensField: "max_tokens", StreamOptions: true, IncludeUsage: true},
		},
		{
			// vLLM's Anthropic request reads max_tokens only, and has no n
			// nor stream_options: what it ignores, the gate does too.
			name: "messages",
			ep:   EndpointMessages,
			body: `{"model":"m","max_tokens":300,"max_completion_tokens":5,"n":"x","stream":true,"stream_options":7,"system":"Be brief.","messages":[]}`,
			want: Request{Endpoint: EndpointMessages, Model: "m", Stream: true, N: 1, Prompts: 1, MaxTokens: 300, MaxTokensField: "max_tokens"},
		},
		{
			// Unlike chat, the batch takes max_completion_tokens unless null:
			// a 0 there binds.
			name: "chat batch",
			ep:   EndpointChatBatch,
			body: `{"model":"m","n":2,"max_completion_tokens":0,"max_tokens":50,"messages":[[{"role":"user","content":"a"}],[{"role":"user","content":"b"}],[]]}`,
			want: Request{Endpoint: EndpointChatBatch, Model: "m", N: 2, Prompts: 3, MaxTokensField: "max_completion_tokens"},
		},
		{
			name: "chat batch, max_completion_tokens null",
			ep:   EndpointChatBatch,
			body: `{"max_completion_tokens":null,"max_tokens":50,"messages":[[{"role":"user","content":"a"}]]}`,
			want: Request{Endpoint: EndpointChatBatch, N: 1, Prompts: 1, MaxTokens: 50, MaxTokensField: "max_tokens"},
		},
		{
			name: "max_completion_tokens wins over max_tokens",
			ep:   EndpointChat,
			body: `{"max_tokens":1000,"max_completion_tokens":50}`,
			want: Request{Endpoint: EndpointChat, N: 1, Prompts: 1, MaxTokens: 50, MaxTokensField: "max_completion_tokens"},
		},
		{
			name: "null max_completion_tokens falls back to max_tokens",
			ep:   EndpointChat,
			body: `{"max_completion_tokens":null,"max_tokens":70}`,
			want: Request{Endpoint: EndpointChat, N: 1, Prompts: 1, MaxTokens: 70, MaxTokensField: "max_tokens"},
		},
		{
			name: "completions ignore max_completion_tokens",
			ep:   EndpointCompletions,
			body: `{"prompt":["a","b","c"],"max_completion_tokens":5,"n":2}`,
			want: Request{Endpoint: EndpointCompletions, N: 2, Prompts: 3, MaxTokens: DefaultCompletionsMaxTokens, OtherCap: true}, // vLLM's default binds
		},
		{
			name: "completions token arrays",
			ep:   EndpointCompletions,
			body: `{"prompt":[[1,2,3],[4,5]],"max_tokens":7}`,
			want: Request{Endpoint: EndpointCompletions, N: 1, Prompts: 2, MaxTokens: 7, MaxTokensField: "max_tokens"},
		},
		{
			name: "completions one token array",
			ep:   EndpointCompletions,
			body: `{"prompt":[1,2,3]}`,
			want: Request{Endpoint: EndpointCompletions, N: 1, Prompts: 1, MaxTokens: DefaultCompletionsMaxTokens},
		},
		{
			name: "chat max_completion_tokens 0 is false to vLLM: max_tokens binds",
			ep:   EndpointChat,
			body: `{"max_completion_tokens":0,"max_tokens":100000}`,
			want: Request{Endpoint: EndpointChat, N: 1, Prompts: 1, MaxTokens: 100000, MaxTokensField: "max_tokens"},
		},
		{
			name: "chat max_completion_tokens 0 alone: no cap",
			ep:   EndpointChat,
			body: `{"max_completion_tokens":0}`,
			want: Request{Endpoint: EndpointChat, N: 1, Prompts: 1},
		},
		{
			name: "completions max_tokens null is no cap (None), not the default",
			ep:   EndpointCompletions,
			body: `{"prompt":"a","max_tokens":null}`,
			want: Request{Endpoint: EndpointCompletions, N: 1, Prompts: 1},
		},
		{
			name: "responses",
			ep:   EndpointResponses,
			body: `{"model":"m","input":"hi","max_output_tokens":99,"max_tokens":5,"stream":true}`,
			want: Request{Endpoint: EndpointResponses, Model: "m", Stream: true, N: 1, Prompts: 1, MaxTokens: 99, MaxTokensField: "max_output_tokens"},
		},
		{
			name: "embeddings list",
			ep:   EndpointEmbeddings,
			body: `{"model":"e","input":["a","b"]}`,
			want: Request{Endpoint: EndpointEmbeddings, Model: "e", N: 1, Prompts: 2},
		},
		{
			name: "empty stream_options means usage (current vLLM default)",
			ep:   EndpointChat,
			body: `{"stream":true,"stream_options":{}}`,
			want: Request{Endpoint: EndpointChat, Stream: true, N: 1, Prompts: 1, StreamOptions: true, IncludeUsage: true, IncludeUsageImplied: true},
		},
		{
			name: "include_usage false, continuous true",
			ep:   EndpointChat,
			body: `{"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}`,
			want: Request{Endpoint: EndpointChat, Stream: true, N: 1, Prompts: 1, StreamOptions: true, ContinuousUsage: true},
		},
		{
			name: "include_usage null is a no",
			ep:   EndpointChat,
			body: `{"stream":true,"stream_options":{"include_usage":null}}`,
			want: Request{Endpoint: EndpointChat, Stream: true, N: 1, Prompts: 1, StreamOptions: true},
		},
		{
			name: "nulls everywhere",
			ep:   EndpointChat,
			body: `{"model":null,"stream":null,"n":null,"max_tokens":null,"stream_options":null,"messages":null,"tools":null}`,
			want: Request{Endpoint: EndpointChat, N: 1, Prompts: 1},
		},
		{
			name: "escaped keys are read like vLLM reads them; case matters",
			ep:   EndpointChat,
			body: `{"max\u005ftokens":12,"Max_Tokens":99999,"str\u0065am":true,"MODEL":"no"}`,
			want: Request{Endpoint: EndpointChat, Stream: true, N: 1, Prompts: 1, MaxTokens: 12, MaxTokensField: "max_tokens"},
		},
		{
			name: "repeated key: the last wins",
			ep:   EndpointChat,
			body: `{"max_tokens":10,"max_tokens":20000}`,
			want: Request{Endpoint: EndpointChat, N: 1, Prompts: 1, MaxTokens: 20000, MaxTokensField: "max_tokens"},
		},
		{
			name: "integral floats and unicode model",
			ep:   EndpointChat,
			body: ` {"max_tokens":1.6e2,"n":2.0,"model":"qw\u00e9n"} `,
			want: Request{Endpoint: EndpointChat, Model: "qwén", N: 2, Prompts: 1, MaxTokens: 160, MaxTokensField: "max_tokens"},
		},
		{
			name: "explicit zero cap",
			ep:   EndpointCompletions,
			body: `{"prompt":"x","max_tokens":0,"echo":true}`,
			want: Request{Endpoint: EndpointCompletions, N: 1, Prompts: 1, MaxTokensField: "max_tokens", Echo: true},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseRequest(c.ep, []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			got := *r
			got.messages, got.prompt, got.input, got.instructions, got.tools, got.functions = nil, nil, nil, nil, nil, nil
			got.model, got.renderOpts, got.system = nil, nil, nil
			got.query, got.documents, got.queries, got.items, got.data1, got.data2, got.text1, got.text2 = nil, nil, nil, nil, nil, nil, nil, nil
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	for _, c := range []struct {
		body  string
		msg   string
		param string // the member named as the error's param ("" for the whole body)
	}{
		{``, "not valid JSON", ""},
		{`{"model":"m",}`, "not valid JSON: invalid character '}'", ""},
		{`[1]`, "must be a JSON object", ""},
		{`"x"`, "must be a JSON object", ""},
		{`{"max_tokens":"100"}`, "max_tokens must be an integer", "max_tokens"},
		{`{"max_tokens":10.5}`, "max_tokens must be an integer", "max_tokens"},
		{`{"max_tokens":1e30}`, "max_tokens is out of range", "max_tokens"},
		{`{"max_tokens":1e400}`, "max_tokens is out of range", "max_tokens"},
		{`{"max_tokens":99999999999999999999}`, "max_tokens is out of range", "max_tokens"},
		{`{"max_tokens":-1}`, "max_tokens must not be negative", "max_tokens"},
		{`{"max_completion_tokens":true}`, "max_completion_tokens must be an integer", "max_completion_tokens"},
		{`{"max_output_tokens":[]}`, "max_output_tokens must be an integer", "max_output_tokens"},
		{`{"n":0}`, "n must be between 1 and 65536", "n"},
		{`{"n":100000}`, "n must be between 1 and 65536", "n"},
		{`{"n":"2"}`, "n must be an integer", "n"},
		{`{"stream":"true"}`, "stream must be a boolean", "stream"},
		{`{"stream":1}`, "stream must be a boolean", "stream"},
		{`{"model":5}`, "model must be a string", "model"},
		{`{"stream_options":true}`, "stream_options must be an object", "stream_options"},
		{`{"stream_options":{"include_usage":"yes"}}`, "stream_options.include_usage must be a boolean", "stream_options"},
		{`{"stream_options":{"continuous_usage_stats":1}}`, "stream_options.continuous_usage_stats must be a boolean", "stream_options"},
		{`{"messages":"hi"}`, "messages must be an array", "messages"},
		{`{"tools":{}}`, "tools must be an array", "tools"},
		{`{"prompt":5}`, "prompt must be a string or an array", "prompt"},
		{`{"input":{}}`, "input must be a string or an array", "input"},
		{`{"instructions":[]}`, "instructions must be a string", "instructions"},
	} {
		_, err := ParseRequest(EndpointChat, []byte(c.body))
		if !errors.Is(err, ErrInvalidJSON) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseRequest(%s) = %v, want an ErrInvalidJSON with %q", c.body, err, c.msg)
		}
		param := ""
		if fe := (*FieldError)(nil); errors.As(err, &fe) {
			param = fe.Param
		}
		if param != c.param {
			t.Errorf("ParseRequest(%s): param %q, want %q", c.body, param, c.param)
		}
	}
	if _, err := ParseRequest(EndpointChatBatch, []byte(`{"stream":true,"messages":[[]]}`)); err == nil || !strings.Contains(err.Error(), "stream is not supported by the batch endpoint") {
		t.Errorf("a streaming batch: %v", err)
	}
	// Pooling requests read only their own members: a stray n or stream
	// that vLLM ignores is not refused.
	for _, ep := range []Endpoint{EndpointRerank, EndpointScore} {
		r, err := ParseRequest(ep, []byte(`{"model":"r","n":"x","stream":7,"max_tokens":-1,"query":"q","documents":["d"]}`))
		if err != nil || !r.PromptOnly() || r.Model != "r" {
			t.Errorf("%v: %+v %v", ep, r, err)
		}
		if _, err := ParseRequest(ep, []byte(`{"text_1":5}`)); err == nil || !strings.Contains(err.Error(), "text_1 must be a string, an array or an object") {
			t.Errorf("%v: text_1 5: %v", ep, err)
		}
	}
	if _, err := ParseRequest(EndpointChat, []byte(`{"query":7,"text_1":false}`)); err != nil {
		t.Errorf("a chat request's pooling members were read: %v", err)
	}
	if _, err := ParseRequest(EndpointChat, []byte(`{"system":7}`)); err != nil {
		t.Errorf("a chat request's system member (not OpenAI's) was read: %v", err)
	}
	if _, err := ParseRequest(EndpointMessages, []byte(`{"system":7}`)); err == nil || !strings.Contains(err.Error(), "system must be a string or an array") {
		t.Errorf("a messages request's system 7: %v", err)
	}
	// n within bounds, but n times the prompts is more completions than a
	// reservation counts: refused, where the engine would otherwise reserve
	// for fewer than vLLM generates.
	body := `{"prompt":["a","b","c"],"n":65536,"max_tokens":10}`
	if _, err := ParseRequest(EndpointCompletions, []byte(body)); !errors.Is(err, ErrInvalidJSON) || !strings.Contains(err.Error(), "asks for 196608 completions; at most 65536") {
		t.Errorf("ParseRequest(%s) = %v, want the completions asked for refused", body, err)
	}
	body = `{"prompt":["a","b"],"n":32768}`
	if r, err := ParseRequest(EndpointCompletions, []byte(body)); err != nil || r.Choices() != 65536 {
		t.Errorf("ParseRequest(%s) = %v; want 65536 choices accepted", body, err)
	}
}

func TestTokenizeBody(t *testing.T) {
	for _, c := range []struct {
		ep   Endpoint
		body string
		want string // "" means: not possible
	}{
		{EndpointChat, `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"tools":[{"type":"function"}],"chat_template_kwargs":{"enable_thinking":false},"add_generation_prompt":false,"add_generation_prompt":true}`,
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}],"chat_template_kwargs":{"enable_thinking":false},"add_generation_prompt":true}`},
		{EndpointChat, `{"messages":[]}`, `{"messages":[]}`},
		{EndpointChat, `{"model":"m"}`, ""},
		{EndpointCompletions, `{"model":"m","prompt":"Once upon","max_tokens":5}`, `{"model":"m","prompt":"Once upon"}`},
		{EndpointCompletions, `{"prompt":["a","b"]}`, ""},
		{EndpointCompletions, `{"prompt":[1,2]}`, ""},
		{EndpointEmbeddings, `{"model":"e","input":"text"}`, `{"model":"e","prompt":"text"}`},
		{EndpointResponses, `{"input":"x"}`, ""},
		// Messages: the chat vLLM converts them to (system first, a tool
		// use a call with json.dumps of its input, a user's tool result a
		// tool message before the rest, a message left empty dropped).
		{EndpointMessages, `{"model":"m","max_tokens":5,"system":"Be brief.","tools":[{"input_schema":{"type":"object"},"name":"f","description":"F."}],"messages":[` +
			`{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"ok"},{"type":"tool_use","id":"t1","name":"f","input":{"a":1,"b":[2,3]}}]},` +
			`{"role":"user","content":[{"type":"tool_result","id":"t1","content":"done"},{"type":"text","text":""}]},{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"AAA"}},{"type":"text","text":"see"}]}]}`,
			`{"model":"m","messages":[{"content":"Be brief.","role":"system"},{"content":"hi","role":"user"},` +
				`{"content":"ok","reasoning":"hm","role":"assistant","tool_calls":[{"function":{"arguments":"{\"a\": 1, \"b\": [2, 3]}","name":"f"},"id":"t1","type":"function"}]},` +
				`{"content":"done","role":"tool","tool_call_id":"t1"},` +
				`{"content":[{"image_url":{"url":"AAA"},"type":"image_url"},{"text":"see","type":"text"}],"role":"user"}],` +
				`"tools":[{"type":"function","function":{"name":"f","description":"F.","parameters":{"type":"object"}}}]}`},
		{EndpointMessages, `{"model":"m","messages":[{"role":"user","content":5}]}`, ""},
	} {
		r, err := ParseRequest(c.ep, []byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := r.TokenizeBody()
		if ok != (c.want != "") || string(got) != c.want {
			t.Errorf("TokenizeBody(%s) = %s, %v; want %s", c.body, got, ok, c.want)
		}
		if ok && !json.Valid(got) {
			t.Errorf("TokenizeBody(%s) is not JSON: %s", c.body, got)
		}
	}
}

func TestChoices(t *testing.T) {
	for _, c := range []struct {
		ep   Endpoint
		body string
		want int
	}{
		{EndpointChat, `{"n":4}`, 4},
		{EndpointCompletions, `{"n":2,"prompt":["a","b","c"]}`, 6},
		{EndpointCompletions, `{"prompt":[]}`, 1},
		{EndpointCompletions, `{"n":3,"prompt":"a"}`, 3},
		{EndpointEmbeddings, `{"input":["a","b"]}`, 1},
		{EndpointChatBatch, `{"n":2,"messages":[[],[],[]]}`, 6},
		{EndpointChatBatch, `{"messages":[]}`, 1},
	} {
		r, err := ParseRequest(c.ep, []byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Choices(); got != c.want {
			t.Errorf("%s: Choices() = %d, want %d", c.body, got, c.want)
		}
	}
}

var (
	tokOnce sync.Once
	tok     *tokenizer.Tokenizer
)

func cl100k(t testing.TB) *tokenizer.Tokenizer {
	tokOnce.Do(func() {
		var err error
		if tok, err = tokenizer.Get("cl100k_base"); err != nil {
			t.Fatal(err)
		}
	})
	return tok
}

func TestEstimatePrompt(t *testing.T) {
	tk := cl100k(t)
	n := func(s string) int64 { return int64(tk.Count(s)) }
	compact := func(s string) string {
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(s)); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	tools := `[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]`
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 50)
	for _, c := range []struct {
		name string
		ep   Endpoint
		body string
		want int64
	}{
		{
			name: "chat strings, name, escapes",
			ep:   EndpointChat,
			body: `{"messages":[{"role":"system","content":"You are helpful.\nBe brief."},{"role":"user","name":"bob","content":"Hi \"there\" \u00e9t\u00e9"}]}`,
			want: 3 + n("system") + n("You are helpful.\nBe brief.") +
				3 + n("user") + n("bob") + 1 + n(`Hi "there" été`) + 3,
		},
		{
			// Each distinct role is counted once per request (four are
			// remembered; the others are counted every time).
			name: "chat roles repeated, six distinct, one escaped, one not a string",
			ep:   EndpointChat,
			body: `{"messages":[{"role":"system","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"},` +
				`{"role":"user","content":"d"},{"role":"tool","content":"e"},{"role":"developer","content":"f"},{"role":"narrator","content":"g"},` +
				`{"role":"us\u0065r","content":"h"},{"role":7,"content":"i"},{"role":"narrator","content":"j"},{"role":"assistant","content":"k"}]}`,
			want: 11*3 + n("system") + 3*n("user") + 2*n("assistant") + n("tool") + n("developer") + 2*n("narrator") +
				n("a") + n("b") + n("c") + n("d") + n("e") + n("f") + n("g") + n("h") + n("i") + n("j") + n("k") + 3,
		},
		{
			name: "chat parts: text and an image",
			ep:   EndpointChat,
			body: `{"messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`,
			want: 3 + n("user") + n("What is this?") + MediaPartTokens + 3,
		},
		{
			name: "chat tool calls and tools",
			ep:   EndpointChat,
			body: `{"messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}],"tools":` + tools + `}`,
			want: 3 + n("user") + n("weather?") +
				3 + n("assistant") + n("get_weather") + n(`{"city":"Paris"}`) +
				3 + n("tool") + n("sunny") + 3 + n(compact(tools)),
		},
		{
			name: "chat legacy functions and function_call",
			ep:   EndpointChat,
			body: `{"messages":[{"role":"assistant","function_call":{"name":"f","arguments":"{}"}}],"functions":[{"name":"f"}]}`,
			want: 3 + n("assistant") + n("f") + n("{}") + 3 + n(`[{"name":"f"}]`),
		},
		{
			name: "completions string",
			ep:   EndpointCompletions,
			body: `{"prompt":` + jsonString(long) + `}`,
			want: n(long),
		},
		{
			name: "completions list of strings",
			ep:   EndpointCompletions,
			body: `{"prompt":["Once upon a time","In a galaxy"]}`,
			want: n("Once upon a time") + n("In a galaxy"),
		},
		{
			name: "completions token arrays",
			ep:   EndpointCompletions,
			body: `{"prompt":[[101,102,103],[7,8]]}`,
			want: 5,
		},
		{
			name: "completions one token array",
			ep:   EndpointCompletions,
			body: `{"prompt":[101,102,103,104]}`,
			want: 4,
		},
		{
			name: "embeddings",
			ep:   EndpointEmbeddings,
			body: `{"input":["first text","second text"]}`,
			want: n("first text") + n("second text"),
		},
		{
			name: "embeddings string",
			ep:   EndpointEmbeddings,
			body: `{"input":"one text"}`,
			want: n("one text"),
		},
		{
			name: "responses string input and instructions",
			ep:   EndpointResponses,
			body: `{"instructions":"Be terse.","input":"Tell me a joke."}`,
			want: 3 + n("system") + n("Be terse.") + 3 + n("user") + n("Tell me a joke.") + 3, // two messages and the reply's priming
		},
		{
			name: "responses items",
			ep:   EndpointResponses,
			body: `{"input":[{"role":"user","content":[{"type":"input_text","text":"Hello"},{"type":"input_image","image_url":"https://x/y.png"}]},` +
				`{"type":"function_call","name":"lookup","arguments":"{\"q\":1}","call_id":"c"},{"type":"function_call_output","call_id":"c","output":"42"},` +
				`{"type":"reasoning","summary":[{"type":"summary_text","text":"thought"}]}],"tools":[{"type":"function","name":"lookup"}]}`,
			want: 3 + n("user") + n("Hello") + MediaPartTokens +
				3 + n("lookup") + n(`{"q":1}`) +
				3 + n("42") +
				3 + n("thought") + 3 + n(`[{"type":"function","name":"lookup"}]`),
		},
		{
			// vLLM makes a chat of it: system as a system message, a tool
			// result as a tool message, tool use a call with json.dumps of
			// its input, tools chat tools.
			name: "messages: system blocks, content blocks, tools",
			ep:   EndpointMessages,
			body: `{"system":[{"type":"text","text":"Be brief."}],"tools":[{"name":"get_weather","description":"Weather now.","input_schema":{"type": "object"}}],"messages":[` +
				`{"role":"user","content":"What is the weather?"},` +
				`{"role":"assistant","content":[{"type":"thinking","thinking":"look it up","signature":"x"},{"type":"tool_use","id":"t1","name":"get_weather","input":{"city": "Paris"}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"sunny"},{"type":"image","source":{"type":"base64","data":"AAAA"}},{"type":"text","text":"And?"}]}]}`,
			want: 3 + n("system") + n("Be brief.") +
				3 + n("user") + n("What is the weather?") +
				3 + n("assistant") + n("look it up") + n("get_weather") + n(`{"city": "Paris"}`) +
				3 + n("user") + 3 + n("sunny") + MediaPartTokens + n("And?") + 3 +
				n(`[{"type":"function","function":{"name":"get_weather","description":"Weather now.","parameters":{"type":"object"}}}]`),
		},
		{
			name: "messages: tool input as json.dumps writes it, strings left alone",
			ep:   EndpointMessages,
			body: `{"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{"q":"a,b:\"c\"","n":[1,2]}}]}]}`,
			want: 3 + n("assistant") + n("f") + n(`{"q": "a,b:\"c\"", "n": [1, 2]}`) + 3,
		},
		{
			// A cross-encoder reads the query with each document.
			name: "rerank: the query with each document",
			ep:   EndpointRerank,
			body: `{"model":"r","query":"What is the capital of France?","documents":["Paris is the capital.","Berlin is in Germany."],"top_n":1}`,
			want: 2*n("What is the capital of France?") + n("Paris is the capital.") + n("Berlin is in Germany.") + 2*3,
		},
		{
			name: "score: one text_1 against a list",
			ep:   EndpointScore,
			body: `{"text_1":"a query","text_2":["one doc","two doc","red doc"]}`,
			want: 3*n("a query") + n("one doc") + n("two doc") + n("red doc") + 3*3,
		},
		{
			name: "score: lists one to one",
			ep:   EndpointScore,
			body: `{"text_1":["q1","q2"],"text_2":["d1","d2"]}`,
			want: n("q1") + n("d1") + n("q2") + n("d2") + 2*3,
		},
		{
			name: "rerank: multimodal documents, each part a document",
			ep:   EndpointRerank,
			body: `{"query":"cats","documents":{"content":[{"type":"image_url","image_url":{"url":"data:x"}},{"type":"text","text":"a cat"}]}}`,
			want: 2*n("cats") + MediaPartTokens + n("a cat") + 2*3,
		},
		{
			name: "score: queries and documents, as vLLM also names them",
			ep:   EndpointScore,
			body: `{"queries":"a query","documents":["one doc","two doc"]}`,
			want: 2*n("a query") + n("one doc") + n("two doc") + 2*3,
		},
		{
			name: "score: queries and items",
			ep:   EndpointScore,
			body: `{"queries":["q1"],"items":["d1"]}`,
			want: n("q1") + n("d1") + 3,
		},
		{
			// vLLM runs the first complete pair (queries with documents):
			// a decoy pair of other names does not hide it.
			name: "score: the largest of the pairs given",
			ep:   EndpointScore,
			body: `{"queries":"q","documents":["` + long + `","` + long + `"],"text_1":"q","text_2":"x"}`,
			want: 2 * (n("q") + n(long) + 3),
		},
		{
			name: "score: only one side",
			ep:   EndpointScore,
			body: `{"text_1":"alone"}`,
			want: n("alone"),
		},
		{
			name: "chat batch: each conversation as a chat",
			ep:   EndpointChatBatch,
			body: `{"messages":[[{"role":"user","content":"Hi"}],[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}]]}`,
			want: 3 + n("user") + n("Hi") + 3 + 3 + n("system") + n("Be brief.") + 3 + n("user") + n("Hello") + 3,
		},
		{
			name: "messages: system string",
			ep:   EndpointMessages,
			body: `{"system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}`,
			want: 3 + n("system") + n("Be brief.") + 3 + n("user") + n("Hi") + 3,
		},
		{
			name: "other endpoint counts what it finds",
			ep:   EndpointOther,
			body: `{"prompt":"abc def","messages":[{"role":"user","content":"x"}]}`,
			want: n("abc def") + 3 + n("user") + n("x") + 3,
		},
		{
			name: "empty",
			ep:   EndpointChat,
			body: `{}`,
			want: 0,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseRequest(c.ep, []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.EstimatePrompt(tk); got != c.want {
				t.Fatalf("EstimatePrompt = %d, want %d", got, c.want)
			}
		})
	}
	// Without a counter: four bytes per token.
	r, _ := ParseRequest(EndpointCompletions, []byte(`{"prompt":"12345678"}`))
	if got := r.EstimatePrompt(nil); got != 2 {
		t.Fatalf("EstimatePrompt(nil) = %d, want 2", got)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRewrite(t *testing.T) {
	for _, c := range []struct {
		name string
		ep   Endpoint
		body string
		opt  RewriteOptions
		want string // "" means: the same slice comes back
	}{
		{
			name: "model named for a request without one",
			ep:   EndpointChat,
			body: `{"messages":[]}`,
			opt:  RewriteOptions{Model: "org/m\"1"},
			want: `{"messages":[],"model":"org/m\"1"}`,
		},
		{
			name: "model null and empty replaced, each occurrence, with a cap",
			ep:   EndpointChat,
			body: `{"model":null,"messages":[],"model":""}`,
			opt:  RewriteOptions{Model: "m", MaxTokens: 5},
			want: `{"model":"m","messages":[],"model":"m","max_tokens":5}`,
		},
		{
			name: "model into an empty object",
			ep:   EndpointEmbeddings,
			body: `{ }`,
			opt:  RewriteOptions{Model: "m"},
			want: `{ "model":"m"}`,
		},
		{
			name: "inject without stream_options",
			ep:   EndpointChat,
			body: `{"model":"m","stream":true,"messages":[]}`,
			opt:  RewriteOptions{InjectUsage: true},
			want: `{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`,
		},
		{
			name: "inject keeps other stream_options fields",
			ep:   EndpointChat,
			body: `{"stream":true,"stream_options":{"continuous_usage_stats":true},"model":"m"}`,
			opt:  RewriteOptions{InjectUsage: true},
			want: `{"stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":true},"model":"m"}`,
		},
		{
			name: "include_usage false turns true and continuous is switched off",
			ep:   EndpointChat,
			body: `{"stream":true,"stream_options":{ "include_usage" : false, "continuous_usage_stats": true }}`,
			opt:  RewriteOptions{InjectUsage: true},
			want: `{"stream":true,"stream_options":{ "include_usage" : true, "continuous_usage_stats": false }}`,
		},
		{
			name: "stream_options null",
			ep:   EndpointCompletions,
			body: `{"stream":true,"stream_options":null,"prompt":"x"}`,
			opt:  RewriteOptions{InjectUsage: true},
			want: `{"stream":true,"stream_options":{"include_usage":true},"prompt":"x"}`,
		},
		{
			name: "empty stream_options",
			ep:   EndpointChat,
			body: `{"stream":true,"stream_options":{ }}`,
			opt:  RewriteOptions{InjectUsage: true},
			want: `{"stream":true,"stream_options":{ "include_usage":true}}`,
		},
		{
			name: "already asked: unchanged",
			ep:   EndpointChat,
			body: `{"stream":true,"stream_options":{"include_usage":true}}`,
			opt:  RewriteOptions{InjectUsage: true},
		},
		{
			name: "never into a non-stream request",
			ep:   EndpointChat,
			body: `{"stream":false,"messages":[]}`,
			opt:  RewriteOptions{InjectUsage: true},
		},
		{
			name: "not for responses",
			ep:   EndpointResponses,
			body: `{"stream":true,"input":"x"}`,
			opt:  RewriteOptions{InjectUsage: true},
		},
		{
			name: "max_tokens added",
			ep:   EndpointChat,
			body: "{\n  \"model\": \"m\",\n  \"messages\": []\n}\n",
			opt:  RewriteOptions{MaxTokens: 4096},
			want: "{\n  \"model\": \"m\",\n  \"messages\": [],\"max_tokens\":4096\n}\n",
		},
		{
			name: "max_tokens replaced",
			ep:   EndpointChat,
			body: `{"max_tokens":100000,"model":"m"}`,
			opt:  RewriteOptions{MaxTokens: 512},
			want: `{"max_tokens":512,"model":"m"}`,
		},
		{
			name: "max_tokens already the cap",
			ep:   EndpointChat,
			body: `{"max_tokens":512}`,
			opt:  RewriteOptions{MaxTokens: 512},
		},
		{
			name: "max_completion_tokens used: set it, lower max_tokens too",
			ep:   EndpointChat,
			body: `{"max_completion_tokens":9000,"max_tokens":20000}`,
			opt:  RewriteOptions{MaxTokens: 300},
			want: `{"max_completion_tokens":300,"max_tokens":300}`,
		},
		{
			name: "a lower secondary cap is kept",
			ep:   EndpointChat,
			body: `{"max_completion_tokens":9000,"max_tokens":20}`,
			opt:  RewriteOptions{MaxTokens: 300},
			want: `{"max_completion_tokens":300,"max_tokens":20}`,
		},
		{
			name: "completions: max_tokens, and a stray max_completion_tokens",
			ep:   EndpointCompletions,
			body: `{"prompt":"x","max_completion_tokens":null}`,
			opt:  RewriteOptions{MaxTokens: 64},
			want: `{"prompt":"x","max_completion_tokens":64,"max_tokens":64}`,
		},
		{
			name: "chat batch: the cap the client used",
			ep:   EndpointChatBatch,
			body: `{"messages":[[]],"max_completion_tokens":9000,"max_tokens":3}`,
			opt:  RewriteOptions{MaxTokens: 1000},
			want: `{"messages":[[]],"max_completion_tokens":1000,"max_tokens":3}`,
		},
		{
			name: "responses: max_output_tokens",
			ep:   EndpointResponses,
			body: `{"input":"x","max_output_tokens":100000,"max_tokens":3}`,
			opt:  RewriteOptions{MaxTokens: 1000},
			want: `{"input":"x","max_output_tokens":1000,"max_tokens":3}`,
		},
		{
			name: "messages: max_tokens only",
			ep:   EndpointMessages,
			body: `{"stream":true,"max_tokens":100000,"max_completion_tokens":7,"messages":[]}`,
			opt:  RewriteOptions{MaxTokens: 1000},
			want: `{"stream":true,"max_tokens":1000,"max_completion_tokens":7,"messages":[]}`,
		},
		{
			name: "embeddings: nothing to cap",
			ep:   EndpointEmbeddings,
			body: `{"input":"x"}`,
			opt:  RewriteOptions{MaxTokens: 1000},
		},
		{
			name: "both at once, repeated and escaped keys",
			ep:   EndpointChat,
			body: `{"max_tokens":1,"stream":true,"max\u005ftokens":99999,"messages":[{"role":"user","content":"max_tokens"}]}`,
			opt:  RewriteOptions{InjectUsage: true, MaxTokens: 50},
			want: `{"max_tokens":50,"stream":true,"max\u005ftokens":50,"messages":[{"role":"user","content":"max_tokens"}],"stream_options":{"include_usage":true}}`,
		},
		{
			name: "empty object",
			ep:   EndpointChat,
			body: `{}`,
			opt:  RewriteOptions{MaxTokens: 5},
			want: `{"max_tokens":5}`,
		},
		{
			name: "nothing asked",
			ep:   EndpointChat,
			body: `{"stream":true}`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			r, err := ParseRequest(c.ep, body)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Rewrite(body, r, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if &out[0] != &body[0] || len(out) != len(body) {
					t.Fatalf("got %s, want the body back unchanged", out)
				}
				return
			}
			if string(out) != c.want {
				t.Fatalf("got  %s\nwant %s", out, c.want)
			}
			if string(body) != c.body {
				t.Fatal("Rewrite modified its input")
			}
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			// The result parses to what was asked, and every other member
			// is unchanged.
			r2, err := ParseRequest(c.ep, out)
			if err != nil {
				t.Fatal(err)
			}
			if c.opt.InjectUsage && !r2.IncludeUsage {
				t.Fatal("usage not asked for after Rewrite")
			}
			if c.opt.MaxTokens > 0 && (r2.MaxTokens != c.opt.MaxTokens) {
				t.Fatalf("cap %d after Rewrite, want %d", r2.MaxTokens, c.opt.MaxTokens)
			}
			if c.opt.Model != "" && r2.Model != c.opt.Model {
				t.Fatalf("model %q after Rewrite, want %q", r2.Model, c.opt.Model)
			}
			var before, after map[string]json.RawMessage
			_ = json.Unmarshal(body, &before)
			_ = json.Unmarshal(out, &after)
			for k, v := range before {
				switch k {
				case "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens":
					continue
				case "model":
					if c.opt.Model != "" {
						continue
					}
				}
				if !bytes.Equal(after[k], v) {
					t.Fatalf("member %q changed: %s -> %s", k, v, after[k])
				}
			}
		})
	}
}

func TestRewriteErrors(t *testing.T) {
	r := &Request{Endpoint: EndpointChat, Stream: true}
	for _, body := range []string{`[1]`, `{"a":1`, `{"stream_options":[1]}`, `{"stream_options":{"a"}}`} {
		if _, err := Rewrite([]byte(body), r, RewriteOptions{InjectUsage: true, MaxTokens: 1}); err == nil {
			t.Errorf("Rewrite(%s): no error", body)
		}
	}
}

// FuzzRewrite checks that rewriting any request that parses gives valid JSON
// that parses to the requested settings.
func FuzzRewrite(f *testing.F) {
	f.Add([]byte(`{"stream":true,"stream_options":{"include_usage":false}}`), uint8(1), int64(5), true)
	f.Add([]byte(`{"max_completion_tokens":9,"max_tokens":1}`), uint8(1), int64(5), false)
	f.Add([]byte(` { } `), uint8(3), int64(1), true)
	f.Fuzz(func(t *testing.T, body []byte, ep uint8, capTokens int64, inject bool) {
		e := Endpoint(ep % 5)
		r, err := ParseRequest(e, body)
		if err != nil {
			return
		}
		capTokens = max(capTokens, 0)
		out, err := Rewrite(body, r, RewriteOptions{InjectUsage: inject, MaxTokens: capTokens})
		if err != nil {
			t.Fatalf("Rewrite(%s): %v", body, err)
		}
		if !json.Valid(out) {
			t.Fatalf("Rewrite(%s) = invalid %s", body, out)
		}
		r2, err := ParseRequest(e, out)
		if err != nil {
			t.Fatalf("rewritten %s: %v", out, err)
		}
		if inject && r.Stream && (e == EndpointChat || e == EndpointCompletions) && (!r2.IncludeUsage || r2.ContinuousUsage && !r.IncludeUsage) {
			t.Fatalf("usage not injected right: %s", out)
		}
		if capTokens > 0 && e != EndpointEmbeddings && r2.MaxTokens != capTokens {
			t.Fatalf("cap %d, want %d: %s", r2.MaxTokens, capTokens, out)
		}
	})
}

// TestDecoded: a string without escapes comes back as itself, with no copy;
// escapes and invalid UTF-8 are decoded as encoding/json does.
func TestDecoded(t *testing.T) {
	plain := []byte("héllo world")
	if got := decoded(nil, plain); &got[0] != &plain[0] || string(got) != "héllo world" {
		t.Fatalf("plain string copied or changed: %q", got)
	}
	for raw, want := range map[string]string{
		`a\nb\u00e9\"`: "a\nbé\"",
		"bad\xffutf8":  "bad\uFFFDutf8",
		`\ud83d\ude00`: "😀",
	} {
		buf := make([]byte, 0, 4)
		if got := decoded(buf, []byte(raw)); string(got) != want {
			t.Errorf("decoded(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestLongestPrompt: the longest of a request's prompts, which a cap for
// all of them must leave room for.
func TestLongestPrompt(t *testing.T) {
	tk := cl100k(t)
	n := func(s string) int64 { return int64(tk.Count(s)) }
	long := strings.Repeat("the sea is wide ", 40)
	for _, c := range []struct {
		ep   Endpoint
		body string
		want int64
	}{
		{EndpointCompletions, `{"prompt":["a","` + long + `",[1,2,3]]}`, n(long)},
		{EndpointChatBatch, `{"messages":[[{"role":"user","content":"hi"}],[{"role":"user","content":"` + long + `"}]]}`, 3 + n("user") + n(long) + 3},
		{EndpointChat, `{"messages":[{"role":"user","content":"hi"}]}`, 3 + n("user") + n("hi") + 3},
		{EndpointCompletions, `{"prompt":"one"}`, n("one")},
	} {
		r, err := ParseRequest(c.ep, []byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.LongestPrompt(tk); got != c.want {
			t.Errorf("%s: LongestPrompt = %d, want %d", c.body, got, c.want)
		}
	}
}

func TestPromptIsTokens(t *testing.T) {
	for body, want := range map[string]bool{
		`{"prompt":[1,2,3]}`:                            true,
		`{"prompt":[[1,2],[3]]}`:                        true,
		`{"prompt":"1 2 3"}`:                            false,
		`{"prompt":["a",[1,2]]}`:                        false,
		`{"prompt":[]}`:                                 false,
		`{"messages":[{"role":"user","content":"hi"}]}`: false,
	} {
		ep := EndpointCompletions
		if strings.Contains(body, "messages") {
			ep = EndpointChat
		}
		r, err := ParseRequest(ep, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.PromptIsTokens(); got != want {
			t.Errorf("%s: PromptIsTokens = %v, want %v", body, got, want)
		}
	}
}

var (
	sinkModel string
	// viaForm is never set: the compiler cannot tell, so a branch on it
	// stays in the code that escape analysis sees.
	viaForm bool
)

// A caller's Request stays on its stack whichever parser it may call, as
// the handler's does: ParseForm once took its receiver to the heap (a table
// of its fields' addresses, kept by the error it could return), one more
// allocation on every request of every endpoint.
func TestRequestStaysOnTheStack(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	parseOnly := testing.AllocsPerRun(100, func() {
		var req Request
		_ = req.Parse(EndpointChat, body)
		sinkModel = req.Model
	})
	either := testing.AllocsPerRun(100, func() {
		var req Request
		if viaForm {
			_ = req.ParseForm(EndpointTranscriptions, body, "multipart/form-data; boundary=x")
		} else {
			_ = req.Parse(EndpointChat, body)
		}
		sinkModel = req.Model
	})
	if either != parseOnly {
		t.Errorf("a Request that may go to ParseForm: %v allocations a parse, %v with Parse alone", either, parseOnly)
	}
}
