package meter

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llmgate/llmgate/tokenizer"
)

// ev is one SSE event of a test stream, with its terminating blank line.
type ev struct {
	raw   string
	usage bool // the usage-only chunk a hiding meter drops
}

// data makes a vLLM-style event: "data: <payload>\n\n".
func data(payload string) ev { return ev{raw: "data: " + payload + "\n\n"} }

// usageEv makes the usage-only chunk.
func usageEv(payload string) ev { return ev{raw: "data: " + payload + "\n\n", usage: true} }

// respEv makes a Responses API event: "event: <type>\ndata: <payload>\n\n".
func respEv(typ, payload string) ev {
	return ev{raw: "event: " + typ + "\ndata: " + payload + "\n\n"}
}

const (
	chatHdr = `"id":"chatcmpl-8f2d1c","object":"chat.completion.chunk","created":1749994809,"model":"m"`
	cmplHdr = `"id":"cmpl-77aa","object":"text_completion","created":1749994810,"model":"m"`
	done    = "data: [DONE]\n\n"
)

// chat builds a chat chunk with one choice.
func chat(index int, delta, finish string, extra string) ev {
	fin := "null"
	stop := ""
	if finish != "" {
		fin = `"` + finish + `"`
		stop = `,"stop_reason":null`
	}
	return data(`{` + chatHdr + `,"choices":[{"index":` + itoa(index) + `,"delta":` + delta +
		`,"logprobs":null,"finish_reason":` + fin + stop + `}]` + extra + `}`)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// streamCase is a stream and what a meter must find in it.
type streamCase struct {
	name      string
	ep        Endpoint
	events    []ev
	usage     Usage
	usageOK   bool
	final     bool
	running   bool // UsageRunning
	err       *UpstreamError
	done      bool
	first     bool
	text      string
	perPrompt int
}

var streamCases = []streamCase{
	{
		name: "chat with usage chunk",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", ""),
			chat(0, `{"content":"Hel"}`, "", ""),
			chat(0, `{"content":"lo, \"wörld\"!\n"}`, "", ""),
			chat(0, `{"content":""}`, "stop", ""),
			usageEv(`{` + chatHdr + `,"choices":[],"usage":{"prompt_tokens":16,"total_tokens":21,"completion_tokens":5}}`),
			{raw: done},
		},
		usage: Usage{16, 5, 21, 0}, usageOK: true, final: true, done: true, first: true,
		text: "Hello, \"wörld\"!\n",
	},
	{
		name: "chat without usage (client did not ask)",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", ""),
			chat(0, `{"content":"Hi"}`, "", ""),
			chat(0, `{"content":""}`, "stop", ""),
			{raw: done},
		},
		done: true, first: true, text: "Hi",
	},
	{
		name: "role chunk only, then cut",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", ""),
		},
	},
	{
		name: "cached tokens and newer nulls",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", `,"prompt_token_ids":null`),
			chat(0, `{"content":"ok"}`, "", ""),
			chat(0, `{"content":""}`, "length", ""),
			usageEv(`{` + chatHdr + `,"choices":[],"usage":{"prompt_tokens":1200,"total_tokens":1202,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1024}},"system_fingerprint":"fp-1"}`),
			{raw: done},
		},
		usage: Usage{1200, 2, 1202, 1024}, usageOK: true, final: true, done: true, first: true, text: "ok",
	},
	{
		name: "continuous usage stats with final chunk",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", `,"usage":{"prompt_tokens":9,"total_tokens":9,"completion_tokens":0}`),
			chat(0, `{"content":"A"}`, "", `,"usage":{"prompt_tokens":9,"total_tokens":10,"completion_tokens":1}`),
			chat(0, `{"content":" B"}`, "", `,"usage":{"prompt_tokens":9,"total_tokens":11,"completion_tokens":2}`),
			chat(0, `{"content":""}`, "stop", `,"usage":{"prompt_tokens":9,"total_tokens":12,"completion_tokens":3}`),
			usageEv(`{` + chatHdr + `,"choices":[],"usage":{"prompt_tokens":9,"total_tokens":12,"completion_tokens":3}}`),
			{raw: done},
		},
		usage: Usage{9, 3, 12, 0}, usageOK: true, final: true, done: true, first: true, text: "A B",
	},
	{
		name: "continuous usage, n=2, client gone before the end",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", `,"usage":{"prompt_tokens":7,"total_tokens":7,"completion_tokens":0}`),
			chat(1, `{"role":"assistant","content":""}`, "", `,"usage":{"prompt_tokens":7,"total_tokens":7,"completion_tokens":0}`),
			chat(0, `{"content":"x"}`, "", `,"usage":{"prompt_tokens":7,"total_tokens":8,"completion_tokens":1}`),
			chat(1, `{"content":"y"}`, "", `,"usage":{"prompt_tokens":7,"total_tokens":8,"completion_tokens":1}`),
			chat(1, `{"content":"z"}`, "", `,"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}`),
			chat(0, `{"content":"w"}`, "", `,"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}`),
			chat(1, `{"content":"v"}`, "", `,"usage":{"prompt_tokens":7,"total_tokens":10,"completion_tokens":3}`),
		},
		usage: Usage{7, 5, 12, 0}, usageOK: true, running: true, first: true, text: "xyzwv",
	},
	{
		name: "n=2 with final usage",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", ""),
			chat(1, `{"role":"assistant","content":""}`, "", ""),
			chat(0, `{"content":"a"}`, "", ""),
			chat(1, `{"content":"b"}`, "", ""),
			chat(0, `{"content":""}`, "stop", ""),
			chat(1, `{"content":""}`, "stop", ""),
			usageEv(`{` + chatHdr + `,"choices":[],"usage":{"prompt_tokens":5,"total_tokens":11,"completion_tokens":6}}`),
			{raw: done},
		},
		usage: Usage{5, 6, 11, 0}, usageOK: true, final: true, done: true, first: true, text: "ab",
	},
	{
		name: "completions, two prompts, usage null on chunks",
		ep:   EndpointCompletions,
		events: []ev{
			data(`{` + cmplHdr + `,"choices":[{"index":0,"text":" one","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}`),
			data(`{` + cmplHdr + `,"choices":[{"index":1,"text":" two","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}`),
			data(`{` + cmplHdr + `,"choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":null}`),
			data(`{` + cmplHdr + `,"choices":[{"index":1,"text":"","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":null}`),
			usageEv(`{` + cmplHdr + `,"choices":[],"usage":{"prompt_tokens":10,"total_tokens":42,"completion_tokens":32}}`),
			{raw: done},
		},
		usage: Usage{10, 32, 42, 0}, usageOK: true, final: true, done: true, first: true, text: " one two",
	},
	{
		name: "completions, two prompts, n=2, continuous usage only",
		ep:   EndpointCompletions,
		events: []ev{
			data(`{` + cmplHdr + `,"choices":[{"index":0,"text":"a","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1}}`),
			data(`{` + cmplHdr + `,"choices":[{"index":1,"text":"b","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1}}`),
			data(`{` + cmplHdr + `,"choices":[{"index":2,"text":"c","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":5,"total_tokens":6,"completion_tokens":1}}`),
			data(`{` + cmplHdr + `,"choices":[{"index":3,"text":"d","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2}}`),
		},
		perPrompt: 2,
		usage:     Usage{8, 5, 13, 0}, usageOK: true, running: true, first: true, text: "abcd",
	},
	{
		name: "tool calls",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", ""),
			chat(0, `{"tool_calls":[{"id":"chatcmpl-tool-1","type":"function","index":0,"function":{"name":"get_weather"}}]}`, "", ""),
			chat(0, `{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]}`, "", ""),
			chat(0, `{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`, "", ""),
			chat(0, `{"content":""}`, "tool_calls", ""),
			usageEv(`{` + chatHdr + `,"choices":[],"usage":{"prompt_tokens":120,"total_tokens":135,"completion_tokens":15}}`),
			{raw: done},
		},
		usage: Usage{120, 15, 135, 0}, usageOK: true, final: true, done: true, first: true,
		text: `get_weather{"city": "Paris"}`,
	},
	{
		name: "reasoning_content then content, empty tool_calls list",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", ""),
			chat(0, `{"reasoning_content":"Think."}`, "", ""),
			chat(0, `{"reasoning":" More.","reasoning_content":" More."}`, "", ""),
			chat(0, `{"content":"Answer","tool_calls":[]}`, "", ""),
			chat(0, `{"content":""}`, "stop", ""),
			{raw: done},
		},
		done: true, first: true, text: "Think. More.Answer",
	},
	{
		name: "mid-stream error, nested envelope",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"role":"assistant","content":""}`, "", ""),
			chat(0, `{"content":"par"}`, "", ""),
			data(`{"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}`),
			{raw: done},
		},
		err:  &UpstreamError{Message: "Internal server error", Type: "InternalServerError", Code: "500", Status: 500},
		done: true, first: true, text: "par",
	},
	{
		name: "mid-stream error, old flat envelope with unicode escapes",
		ep:   EndpointCompletions,
		events: []ev{
			data(`{` + cmplHdr + `,"choices":[{"index":0,"text":"x","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}`),
			data(`{"error": {"object": "error", "message": "caf\u00e9 \ud83d\ude00 abort", "type": "BadRequestError", "param": null, "code": 400}}`),
			{raw: done},
		},
		err:  &UpstreamError{Message: "café 😀 abort", Type: "BadRequestError", Code: "400", Status: 400},
		done: true, first: true, text: "x",
	},
	{
		name: "beam search answered as one event",
		ep:   EndpointCompletions,
		events: []ev{
			data(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"best","logprobs":null,"finish_reason":"length","stop_reason":null},{"index":1,"text":"next","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":4,"total_tokens":12,"completion_tokens":8}}`),
			{raw: done},
		},
		usage: Usage{4, 8, 12, 0}, usageOK: true, final: true, done: true, first: true, text: "bestnext",
	},
	{
		name: "continuous usage, then an error event",
		ep:   EndpointCompletions,
		events: []ev{
			data(`{` + cmplHdr + `,"choices":[{"index":0,"text":"x","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1}}`),
			data(`{"error": {"object": "error", "message": "engine died", "type": "InternalServerError", "param": null, "code": 500}}`),
			{raw: done},
		},
		usage: Usage{3, 1, 4, 0}, usageOK: true, running: true,
		err:  &UpstreamError{Message: "engine died", Type: "InternalServerError", Code: "500", Status: 500},
		done: true, first: true, text: "x",
	},
	{
		// One beam: its choice's usage reads like continuous usage, and is
		// vLLM's final count all the same, the stream having ended.
		name: "beam search with one beam answered as one event",
		ep:   EndpointCompletions,
		events: []ev{
			data(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"best","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":4,"total_tokens":8,"completion_tokens":4}}`),
			{raw: done},
		},
		usage: Usage{4, 4, 8, 0}, usageOK: true, done: true, first: true, text: "best",
	},
	{
		name: "responses API",
		ep:   EndpointResponses,
		events: []ev{
			respEv("response.created", `{"response":{"id":"resp_1","object":"response","status":"in_progress","usage":null},"sequence_number":0,"type":"response.created"}`),
			respEv("response.in_progress", `{"response":{"id":"resp_1","object":"response","status":"in_progress","usage":null},"sequence_number":1,"type":"response.in_progress"}`),
			respEv("response.output_item.added", `{"item":{"id":"msg_1","content":[],"role":"assistant","status":"in_progress","type":"message"},"output_index":0,"sequence_number":2,"type":"response.output_item.added"}`),
			respEv("response.reasoning_text.delta", `{"content_index":0,"delta":"hmm ","item_id":"rs_1","output_index":0,"sequence_number":3,"type":"response.reasoning_text.delta"}`),
			respEv("response.output_text.delta", `{"content_index":0,"delta":"Hello","item_id":"msg_1","logprobs":[],"output_index":0,"sequence_number":4,"type":"response.output_text.delta"}`),
			respEv("response.output_text.delta", `{"content_index":0,"delta":" there","item_id":"msg_1","logprobs":[],"output_index":0,"sequence_number":5,"type":"response.output_text.delta"}`),
			respEv("response.output_text.done", `{"content_index":0,"item_id":"msg_1","logprobs":[],"output_index":0,"sequence_number":6,"text":"Hello there","type":"response.output_text.done"}`),
			respEv("response.completed", `{"response":{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hello there"}]}],"usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":3},"output_tokens":6,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":17}},"sequence_number":7,"type":"response.completed"}`),
		},
		usage: Usage{11, 6, 17, 3}, usageOK: true, final: true, done: true, first: true, text: "hmm Hello there",
	},
	{
		name: "responses API error event",
		ep:   EndpointResponses,
		events: []ev{
			respEv("response.created", `{"response":{"id":"resp_2","status":"in_progress","usage":null},"sequence_number":0,"type":"response.created"}`),
			respEv("response.output_text.delta", `{"delta":"Hi","sequence_number":1,"type":"response.output_text.delta"}`),
			respEv("error", `{"type":"error","code":"server_error","message":"generation failed","param":null,"sequence_number":2}`),
		},
		err:   &UpstreamError{Message: "generation failed", Type: "error", Code: "server_error"},
		first: true, text: "Hi",
	},
	{
		name: "responses API failed response, type only in the JSON",
		ep:   EndpointResponses,
		events: []ev{
			data(`{"type":"response.output_text.delta","delta":"x"}`),
			data(`{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"boom"},"usage":{"input_tokens":2,"output_tokens":1,"total_tokens":3}}}`),
		},
		err:   &UpstreamError{Message: "boom", Code: "server_error"},
		usage: Usage{2, 1, 3, 0}, usageOK: true, final: true, first: true, text: "x",
	},
	{
		name: "messages API (vLLM: usage in message_start's message, then in message_delta)",
		ep:   EndpointMessages,
		events: []ev{
			respEv("message_start", `{"type":"message_start","message":{"id":"chatcmpl-1","content":[],"model":"m","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":0}}}`),
			respEv("content_block_start", `{"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}`),
			respEv("content_block_delta", `{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hel"},"index":0}`),
			respEv("content_block_delta", `{"type":"content_block_delta","delta":{"type":"text_delta","text":"lo \"you\""},"index":0}`),
			respEv("content_block_delta", `{"type":"content_block_delta","delta":{"type":"text_delta","text":"!"},"index":0}`),
			respEv("content_block_stop", `{"type":"content_block_stop","index":0}`),
			respEv("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"output_tokens":4}}`),
			respEv("message_stop", `{"type":"message_stop"}`),
			{raw: done},
		},
		usage: Usage{12, 4, 16, 0}, usageOK: true, final: true, done: true, first: true, text: `Hello "you"!`,
	},
	{
		name: "messages API (Anthropic's shape: the prompt only in message_start, cache counts, thinking and a tool)",
		ep:   EndpointMessages,
		events: []ev{
			respEv("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","usage":{"input_tokens":20,"cache_read_input_tokens":100,"output_tokens":1}}}`),
			respEv("ping", `{"type":"ping"}`),
			respEv("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}`),
			respEv("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm "}}`),
			respEv("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2lnbmF0dXJl"}}`),
			respEv("content_block_stop", `{"type":"content_block_stop","index":0}`),
			respEv("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}`),
			respEv("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}`),
			respEv("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"Paris\"}"}}`),
			respEv("content_block_stop", `{"type":"content_block_stop","index":1}`),
			respEv("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"cache_read_input_tokens":100,"output_tokens":15}}`),
			respEv("message_stop", `{"type":"message_stop"}`),
		},
		usage: Usage{120, 15, 135, 100}, usageOK: true, final: true, done: true, first: true, text: `hmm get_weather{"city": "Paris"}`,
	},
	{
		name: "messages API, later vLLM (usage beside message_start's message), cut before the totals",
		ep:   EndpointMessages,
		events: []ev{
			respEv("message_start", `{"type":"message_start","message":{"id":"chatcmpl-2","content":[],"model":"m"},"usage":{"input_tokens":9,"output_tokens":0}}`),
			respEv("content_block_start", `{"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}`),
			respEv("content_block_delta", `{"type":"content_block_delta","delta":{"type":"text_delta","text":"par"},"index":0}`),
			respEv("content_block_delta", `{"type":"content_block_delta","delta":{"type":"text_delta","text":"tial"},"index":0}`),
		},
		first: true, text: "partial",
	},
	{
		name: "messages API error event, type only in the JSON",
		ep:   EndpointMessages,
		events: []ev{
			data(`{"type":"message_start","message":{"id":"chatcmpl-3","content":[],"model":"m","usage":{"input_tokens":5,"output_tokens":0}}}`),
			data(`{"type":"content_block_delta","delta":{"type":"text_delta","text":"x"},"index":0}`),
			respEv("error", `{"type":"error","error":{"type":"internal_error","message":"Invalid data format received"}}`),
			{raw: done},
		},
		err:  &UpstreamError{Message: "Invalid data format received", Type: "internal_error"},
		done: true, first: true, text: "x",
	},
	{
		name: "comments, ids, multi-line data, blank runs",
		ep:   EndpointChat,
		events: []ev{
			{raw: ": ping\n\n"},
			{raw: "\n"},
			{raw: "id: 1\nretry: 100\ndata: {" + chatHdr + ",\ndata: \"choices\":[{\"index\":0,\"delta\":{\"content\":\"multi\"}}]}\n\n"},
			{raw: ": keep-alive\ndata:{" + chatHdr + ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"-line\"}}]}\n\n"},
			{raw: "data: {" + chatHdr + ",\ndata: \"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":2,\"total_tokens\":4,\"completion_tokens\":2}}\n\n", usage: true},
			{raw: done},
		},
		usage: Usage{2, 2, 4, 0}, usageOK: true, final: true, done: true, first: true, text: "multi-line",
	},
	{
		name: "truncated trailing event is forwarded",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"content":"a"}`, "", ""),
			{raw: `data: {"id":"x","choices":[],"usage":{"prompt_tok`},
		},
		first: true, text: "a",
	},
	{
		name: "usage chunk without its blank line at EOF is forwarded but read",
		ep:   EndpointChat,
		events: []ev{
			chat(0, `{"content":"a"}`, "", ""),
			{raw: `data: {"id":"x","choices":[],"usage":{"prompt_tokens":1,"total_tokens":2,"completion_tokens":1}}`},
		},
		usage: Usage{1, 1, 2, 0}, usageOK: true, final: true, first: true, text: "a",
	},
	{
		name: "bare string error and escaped keys",
		ep:   EndpointChat,
		events: []ev{
			data(`{"choices":[{"index":0,"d\u0065lta":{"content":"q"}}]}`),
			data(`{"\u0065rror":"Unauthorized"}`),
		},
		err:   &UpstreamError{Message: "Unauthorized"},
		first: true, text: "q",
	},
}

// join concatenates a case's events.
func (c *streamCase) join(hidden bool) []byte {
	var b []byte
	for _, e := range c.events {
		if hidden && e.usage {
			continue
		}
		b = append(b, e.raw...)
	}
	return b
}

// feedChunks runs a meter over chunks and returns what it emitted.
func feedChunks(t testing.TB, m *StreamMeter, chunks [][]byte) []byte {
	t.Helper()
	var out []byte
	emit := func(b []byte) error {
		out = append(out, b...)
		return nil
	}
	// Each chunk is written from one reused buffer, scribbled over once
	// Write returns, as Caddy's copy buffer is: the meter must keep nothing
	// of it.
	var buf []byte
	for _, c := range chunks {
		buf = append(buf[:0], c...)
		if err := m.Write(buf, emit); err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = '#'
		}
	}
	if err := m.Finish(emit); err != nil {
		t.Fatal(err)
	}
	return out
}

// byteCounter counts bytes: EstimateCompletion then sums the relayed text's
// length exactly, whatever the meter dropped along the way.
type byteCounter struct{}

func (byteCounter) Count(s string) int { return len(s) }

func checkMeter(t *testing.T, c *streamCase, m *StreamMeter) {
	t.Helper()
	u, ok := m.Usage()
	if ok != c.usageOK || u != c.usage {
		t.Errorf("Usage() = %+v, %v; want %+v, %v", u, ok, c.usage, c.usageOK)
	}
	if m.UsageFinal() != c.final {
		t.Errorf("UsageFinal() = %v, want %v", m.UsageFinal(), c.final)
	}
	if m.UsageRunning() != c.running {
		t.Errorf("UsageRunning() = %v, want %v", m.UsageRunning(), c.running)
	}
	if got := m.Err(); (got == nil) != (c.err == nil) || got != nil && *got != *c.err {
		t.Errorf("Err() = %+v, want %+v", got, c.err)
	}
	if m.Done() != c.done {
		t.Errorf("Done() = %v, want %v", m.Done(), c.done)
	}
	if m.FirstToken() != c.first {
		t.Errorf("FirstToken() = %v, want %v", m.FirstToken(), c.first)
	}
	if string(m.text) != c.text {
		t.Errorf("relayed text %q, want %q", m.text, c.text)
	}
	if got := m.EstimateCompletion(); got != int64(len(c.text)) {
		t.Errorf("EstimateCompletion() = %d, want %d", got, len(c.text))
	}
}

// lineEndings rewrites a stream's LFs as CRLF or CR.
func lineEndings(s, eol string) string { return strings.ReplaceAll(s, "\n", eol) }

func TestStreamMeterCases(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n", "\r"} {
		for i := range streamCases {
			c := streamCases[i]
			if eol != "\n" {
				c.events = append([]ev(nil), c.events...)
				for j := range c.events {
					c.events[j].raw = lineEndings(c.events[j].raw, eol)
				}
			}
			name := c.name + map[string]string{"\n": "", "\r\n": " (CRLF)", "\r": " (CR)"}[eol]
			t.Run(name, func(t *testing.T) {
				in := c.join(false)
				for _, hide := range []bool{false, true} {
					want := in
					if hide {
						want = c.join(true)
					}
					// One write, every two-way split, and random splits.
					splits := [][][]byte{{in}}
					for k := 1; k < len(in); k++ {
						splits = append(splits, [][]byte{in[:k], in[k:]})
					}
					rng := rand.New(rand.NewPCG(uint64(len(in)), 7))
					for range 20 {
						splits = append(splits, randomSplit(in, rng))
					}
					for _, chunks := range splits {
						m := NewStreamMeter(c.ep, hide, byteCounter{})
						m.SetChoicesPerPrompt(c.perPrompt)
						out := feedChunks(t, m, chunks)
						if !bytes.Equal(out, want) {
							t.Fatalf("hide=%v, %d chunks: emitted\n%q\nwant\n%q", hide, len(chunks), out, want)
						}
						checkMeter(t, &c, m)
						if t.Failed() {
							t.Fatalf("hide=%v, chunks %q", hide, chunks)
						}
					}
				}
			})
		}
	}
}

// randomSplit cuts b into pieces of random sizes (some empty).
func randomSplit(b []byte, rng *rand.Rand) [][]byte {
	var chunks [][]byte
	for len(b) > 0 {
		n := rng.IntN(min(len(b), 40) + 1)
		chunks = append(chunks, b[:n])
		b = b[n:]
	}
	return chunks
}

func TestStreamMeterPassThroughIsImmediate(t *testing.T) {
	in := streamCases[0].join(false)
	m := NewStreamMeter(EndpointChat, false, nil)
	for k := 0; k < len(in); k += 7 {
		p := in[k:min(k+7, len(in))]
		calls := 0
		err := m.Write(p, func(b []byte) error {
			calls++
			if &b[0] != &p[0] || len(b) != len(p) {
				t.Fatalf("emit got a different slice")
			}
			return nil
		})
		if err != nil || calls != 1 {
			t.Fatalf("Write: err %v, %d emits; want 1", err, calls)
		}
	}
}

func TestStreamMeterHoldsOnlyPartialEvents(t *testing.T) {
	e1 := chat(0, `{"content":"a"}`, "", "").raw
	e2 := chat(0, `{"content":"b"}`, "", "").raw
	m := NewStreamMeter(EndpointChat, true, nil)
	var out []byte
	emit := func(b []byte) error { out = append(out, b...); return nil }
	// A whole event and half of the next: the first goes out at once.
	must(t, m.Write([]byte(e1+e2[:10]), emit))
	if string(out) != e1 {
		t.Fatalf("after 1.5 events emitted %q, want %q", out, e1)
	}
	// The rest of the line, but not the blank line: still held.
	must(t, m.Write([]byte(e2[10:len(e2)-1]), emit))
	if string(out) != e1 {
		t.Fatalf("emitted %q before the event ended", out)
	}
	must(t, m.Write([]byte("\n"), emit))
	if string(out) != e1+e2 {
		t.Fatalf("emitted %q, want both events", out)
	}
	if len(m.held) != 0 {
		t.Fatalf("still holding %d bytes", len(m.held))
	}
}

func TestStreamMeterLargeEvents(t *testing.T) {
	pad := strings.Repeat(" ", maxHold)
	big := usageEv(`{"choices":[],` + pad + `"usage":{"prompt_tokens":1,"total_tokens":3,"completion_tokens":2}}`)
	big.usage = false // too large to be held: relayed, never dropped
	small := usageEv(`{"choices":[],"usage":{"prompt_tokens":1,"total_tokens":3,"completion_tokens":2}}`)
	text := data(`{"choices":[{"index":0,"text":"` + strings.Repeat("x", 2*maxHold) + `"}]}`)
	c := streamCase{events: []ev{text, big, small, {raw: done}}}
	in := c.join(false)
	want := c.join(true)
	for _, size := range []int{len(in), 1000, 4096, 65536} {
		m := NewStreamMeter(EndpointCompletions, true, byteCounter{})
		var chunks [][]byte
		for k := 0; k < len(in); k += size {
			chunks = append(chunks, in[k:min(k+size, len(in))])
		}
		out := feedChunks(t, m, chunks)
		if !bytes.Equal(out, want) {
			t.Fatalf("chunk size %d: output differs (len %d, want %d)", size, len(out), len(want))
		}
		if u, ok := m.Usage(); !ok || u.CompletionTokens != 2 {
			t.Fatalf("usage %+v %v", u, ok)
		}
		if got := m.EstimateCompletion(); got != 2*maxHold {
			t.Fatalf("estimate %d, want %d", got, 2*maxHold)
		}
		if cap(m.held) > 2*maxHold {
			t.Fatalf("held buffer grew to %d", cap(m.held))
		}
	}
	// A partial event beyond maxHold is relayed before its end.
	m := NewStreamMeter(EndpointCompletions, true, nil)
	var out []byte
	must(t, m.Write([]byte(text.raw[:maxHold+100]), func(b []byte) error { out = append(out, b...); return nil }))
	if len(out) != maxHold+100 {
		t.Fatalf("relayed %d bytes of an oversized partial event, want %d", len(out), maxHold+100)
	}
}

// TestStreamMeterOversizedData: an event whose data exceeds maxData (vLLM's
// beam search answers a stream with the whole response in one event) is
// relayed unchanged, and its top-level usage and error are still read,
// whatever the split, the line endings and the number of data lines; the
// event after it is read as usual.
func TestStreamMeterOversizedData(t *testing.T) {
	text := strings.Repeat("y", maxData)
	const usageChunk = `data: {"choices":[],"usage":{"prompt_tokens":1,"total_tokens":3,"completion_tokens":2}}` + "\n\n"
	beam := `{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"` + text + `","finish_reason":"length"}],` +
		`"usage":{"prompt_tokens":7,"total_tokens":300007,"completion_tokens":300000}}`
	wantBeam := Usage{PromptTokens: 7, CompletionTokens: 300000, TotalTokens: 300007}
	cases := []struct {
		name   string
		in     string
		usage  Usage
		ok     bool
		errMsg string
	}{
		{"beam search", "data: " + beam + "\n\n" + done, wantBeam, true, ""},
		{"CRLF", "data: " + beam + "\r\n\r\n" + strings.ReplaceAll(done, "\n", "\r\n"), wantBeam, true, ""},
		{"no space after data:", "data:" + beam + "\n\n" + done, wantBeam, true, ""},
		{"over two data lines", "data: " + beam[:200] + "\ndata: " + beam[200:] + "\n\n" + done, wantBeam, true, ""},
		{"over many short data lines", "data: " + strings.Join(strings.SplitAfter(beam, ","), "\ndata: ") + "\n\n" + done, wantBeam, true, ""},
		{"usage inside a string only", "data: " + `{"choices":[{"text":"\"usage\":{\"prompt_tokens\":9}` + text + `"}]}` + "\n\n" + done, Usage{}, false, ""},
		{"error", "data: " + `{"x":"` + text + `","error":{"message":"boom","type":"InternalServerError","code":500}}` + "\n\n", Usage{}, false, "boom"},
		{"then a usage chunk", "data: " + `{"choices":[{"text":"` + text + `"}]}` + "\n\n" + usageChunk + done,
			Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}, true, ""},
		{"a comment line over maxLine", ": " + text + text + "\n\n" + done, Usage{}, false, ""},
	}
	for _, c := range cases {
		in := []byte(c.in)
		for _, size := range []int{len(in), 100000, 4093} {
			for _, hide := range []bool{false, true} {
				m := NewStreamMeter(EndpointCompletions, hide, nil)
				var chunks [][]byte
				for k := 0; k < len(in); k += size {
					chunks = append(chunks, in[k:min(k+size, len(in))])
				}
				out := feedChunks(t, m, chunks)
				must(t, m.Finish(func(b []byte) error { out = append(out, b...); return nil }))
				want := in
				if hide { // the usage-only chunk, and it alone, is dropped
					want = bytes.Replace(in, []byte(usageChunk), nil, 1)
				}
				if !bytes.Equal(out, want) {
					t.Fatalf("%s, writes of %d, hide %v: output differs", c.name, size, hide)
				}
				u, ok := m.Usage()
				if ok != c.ok || u != c.usage {
					t.Fatalf("%s, writes of %d: usage %+v %v, want %+v %v", c.name, size, u, ok, c.usage, c.ok)
				}
				if e := m.Err(); (e == nil) != (c.errMsg == "") || e != nil && e.Message != c.errMsg {
					t.Fatalf("%s, writes of %d: error %+v, want %q", c.name, size, e, c.errMsg)
				}
				if c.errMsg == "" && !m.Done() {
					t.Fatalf("%s, writes of %d: missed [DONE] after an oversized event", c.name, size)
				}
			}
		}
	}
}

// wordCounter counts whitespace-separated words, so that cutting text
// anywhere but at a word boundary would change the total.
type wordCounter struct{}

func (wordCounter) Count(s string) int { return len(strings.Fields(s)) }

func TestStreamMeterTextStaysBounded(t *testing.T) {
	words := strings.Fields(strings.Repeat("alpha beta gamma delta epsilon zeta eta theta ", 2000))
	m := NewStreamMeter(EndpointChat, true, wordCounter{})
	for i, w := range words {
		delta := w
		if i > 0 {
			delta = " " + w
		}
		e := chat(0, `{"content":"`+delta+`"}`, "", "")
		must(t, m.Write([]byte(e.raw), func([]byte) error { return nil }))
		if len(m.text) > textKeep+64 {
			t.Fatalf("kept %d bytes of text", len(m.text))
		}
	}
	if got := m.EstimateCompletion(); got != int64(len(words)) {
		t.Fatalf("estimate %d words, want %d", got, len(words))
	}
	// Text without whitespace is cut at character boundaries.
	m.Reset(EndpointChat, false, byteCounter{})
	long := strings.Repeat("日本語", 3000)
	e := chat(0, `{"content":"`+long+`"}`, "", "")
	must(t, m.Write([]byte(e.raw), func([]byte) error { return nil }))
	if !utf8.Valid(m.text) || len(m.text) > textKeep {
		t.Fatalf("kept %d bytes, valid UTF-8 %v", len(m.text), utf8.Valid(m.text))
	}
	if got := m.EstimateCompletion(); got != int64(len(long)) {
		t.Fatalf("estimate %d, want %d", got, len(long))
	}
}

func TestStreamMeterEmitErrors(t *testing.T) {
	boom := errors.New("client gone")
	fail := func([]byte) error { return boom }
	in := streamCases[0].join(false)
	for _, hide := range []bool{false, true} {
		m := NewStreamMeter(EndpointChat, hide, nil)
		if err := m.Write(in, fail); !errors.Is(err, boom) {
			t.Fatalf("hide=%v: Write returned %v", hide, err)
		}
	}
	// A held event that fails to go out at Finish.
	m := NewStreamMeter(EndpointChat, true, nil)
	must(t, m.Write([]byte("data: {"), func([]byte) error { return nil }))
	if err := m.Finish(fail); !errors.Is(err, boom) {
		t.Fatalf("Finish returned %v", err)
	}
	if err := m.Finish(fail); err != nil {
		t.Fatalf("second Finish returned %v", err)
	}
	// After Finish, bytes pass through unread.
	var out []byte
	must(t, m.Write([]byte("data: [DONE]\n\n"), func(b []byte) error { out = append(out, b...); return nil }))
	if string(out) != "data: [DONE]\n\n" || m.Done() {
		t.Fatalf("after Finish: out %q, done %v", out, m.Done())
	}
	// Errors on each emit path of a hiding meter.
	u := usageEv(`{"choices":[],"usage":{"prompt_tokens":1}}`).raw
	t1 := chat(0, `{"content":"a"}`, "", "").raw
	for _, tc := range []struct {
		name   string
		first  string
		second string
		failOn int
	}{
		{"run before a dropped event", t1 + u, "", 1},
		{"held event completes", t1[:5], t1[5:], 1},
		{"tail after events", t1 + t1[:5], "", 1},
		{"oversized held", "data: " + strings.Repeat("x", maxHold), strings.Repeat("x", 10), 1},
		{"relayed tail", "data: " + strings.Repeat("x", maxHold+10), "xx", 2},
	} {
		m := NewStreamMeter(EndpointChat, true, nil)
		calls := 0
		emit := func([]byte) error {
			calls++
			if calls >= tc.failOn {
				return boom
			}
			return nil
		}
		err := m.Write([]byte(tc.first), emit)
		if err == nil && tc.second != "" {
			err = m.Write([]byte(tc.second), emit)
		}
		if !errors.Is(err, boom) {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
}

func TestStreamMeterReset(t *testing.T) {
	c := &streamCases[0]
	m := NewStreamMeter(EndpointResponses, false, nil)
	must(t, m.Write([]byte("data: {\"error\":\"x\"}\n\ndata: partial"), func([]byte) error { return nil }))
	m.Reset(c.ep, true, byteCounter{})
	out := feedChunks(t, m, [][]byte{c.join(false)})
	if !bytes.Equal(out, c.join(true)) {
		t.Fatal("reset meter relays differently")
	}
	checkMeter(t, c, m)
	// Oversized buffers are not kept for reuse.
	m.text = make([]byte, 0, 2*maxPooledBuf)
	m.choices = make([]choiceUsage, 0, 2048)
	m.Reset(EndpointChat, false, nil)
	if m.text != nil || m.choices != nil {
		t.Fatal("Reset kept oversized buffers")
	}
}

func TestStreamMeterChoiceIndexBounds(t *testing.T) {
	m := NewStreamMeter(EndpointChat, false, nil)
	in := chat(maxChoiceIndex, `{"content":"a"}`, "", `,"usage":{"prompt_tokens":1,"total_tokens":2,"completion_tokens":1}`).raw
	feedChunks(t, m, [][]byte{[]byte(in)})
	if _, ok := m.Usage(); ok {
		t.Fatal("kept usage for an out-of-range choice index")
	}
}

func TestUpstreamErrorString(t *testing.T) {
	e := &UpstreamError{Message: "no", Type: "BadRequestError", Code: "400", Status: 400}
	if got := e.Error(); got != "upstream error 400 (BadRequestError): no" {
		t.Fatalf("Error() = %q", got)
	}
	if got := (&UpstreamError{}).Error(); got != "upstream error" {
		t.Fatalf("Error() = %q", got)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStreamMeterMalformedChoices: text read from the choices of an event that
// turns out malformed is not kept, and text from earlier events stays.
func TestStreamMeterMalformedChoices(t *testing.T) {
	for _, payload := range []string{
		`{"choices":[{"delta":{"content":"abc"}}],"x":}`,
		`{"choices":[{"delta":{"content":"abc"}} {"delta":{}}]}`,
		`{"choices":[{"delta":{"content":"abc"}},]`,
		`{"choices":[{"delta":{"content":"abc"},"index":}]}`,
		`{"choices":[{"delta":{"content":"abc" "x":1}}]}`,
		`{"choices":[{"delta":{"content":"abc"}}`,
		`{"choices":[{"delta":{"content":"abc",}}]}`,
		`{"choices":[{"delta":{"content":"abc"}},],"id":"x"}`,
		`{"choices":[{"delta":{"tool_calls":[{"function":{"name":"abc"}} {}]}}]}`,
	} {
		in := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: " + payload + "\n\n"
		got := runMeter(t, EndpointChat, true, [][]byte{[]byte(in)})
		if got.estimate != 2 || !got.first || string(got.out) != in {
			t.Errorf("%s: estimate %d, first %v, out %q; want 2, true, the input", payload, got.estimate, got.first, got.out)
		}
	}
}

// onceCounter counts bytes and which of its methods counted them.
type onceCounter struct{ count, once *int }

func (c onceCounter) Count(s string) int     { *c.count++; return len(s) }
func (c onceCounter) CountOnce(s string) int { *c.once++; return len(s) }

var _ OnceCounter = (*tokenizer.Tokenizer)(nil)

// TestStreamMeterCountsGeneratedTextOnce: generated text, spilled or left at
// the end, goes to CountOnce, so it never fills the tokenizer's text cache.
func TestStreamMeterCountsGeneratedTextOnce(t *testing.T) {
	var count, once int
	m := NewStreamMeter(EndpointChat, true, onceCounter{&count, &once})
	long := strings.Repeat("word ", 2000) // spills on the way
	e := chat(0, `{"content":"`+long+`"}`, "", "")
	must(t, m.Write([]byte(e.raw), func([]byte) error { return nil }))
	if got := m.EstimateCompletion(); got != int64(len(long)) {
		t.Fatalf("estimate %d, want %d", got, len(long))
	}
	if count != 0 || once < 2 {
		t.Fatalf("Count called %d times, CountOnce %d; want 0 and at least 2", count, once)
	}
}

// templateShapes are chunks around a value: a vLLM chat chunk, a reasoning
// delta, a completions chunk, a tool-call argument fragment and a chunk with
// a null usage after the choices.
var templateShapes = [][2]string{
	{`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":`, `},"logprobs":null,"finish_reason":null}]}`},
	{`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":`, `},"logprobs":null,"finish_reason":null}]}`},
	{`{"id":"cmpl-3","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":`, `,"logprobs":null,"finish_reason":null,"stop_reason":null}]}`},
	{`{"id":"chatcmpl-4","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`, `}}]},"finish_reason":null}]}`},
	{`{"id":"chatcmpl-5","choices":[{"index":0,"delta":{"content":`, `}}],"usage":null}`},
	// A later "choices" voids the text of the first: the chunk adds nothing.
	{`{"choices":[{"delta":{"content":`, `}}],"choices":null}`},
	// Or replaces it: the chunk adds the second value only.
	{`{"choices":[{"delta":{"content":"x"}}],"choices":[{"delta":{"content":`, `}}]}`},
}

// voidedShape is the index of the templateShapes whose chunks add no text.
const voidedShape = 5

// templateStream is a stream of chunks of one shape around each value, then
// a final usage chunk and [DONE].
func templateStream(shape [2]string, values []string) []byte {
	var b []byte
	for _, v := range values {
		b = append(b, "data: "+shape[0]+v+shape[1]+"\n\n"...)
	}
	b = append(b, "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\ndata: [DONE]\n\n"...)
	return b
}

// TestStreamMeterMessagesPrompt: a Messages stream gives the prompt's
// count at its start, which a stream cut before its totals still has.
func TestStreamMeterMessagesPrompt(t *testing.T) {
	for _, start := range []string{
		`{"type":"message_start","message":{"id":"a","content":[],"model":"m","usage":{"input_tokens":9,"output_tokens":0}}}`,
		`{"type":"message_start","message":{"id":"a","content":[],"model":"m"},"usage":{"input_tokens":9,"output_tokens":0}}`,
		`{"type":"message_start","message":{"usage":{"input_tokens":4,"cache_creation_input_tokens":5}}}`,
	} {
		m := NewStreamMeter(EndpointMessages, false, nil)
		feedChunks(t, m, [][]byte{[]byte("event: message_start\ndata: " + start + "\n\n")})
		if n, ok := m.PromptReported(); n != 9 || !ok {
			t.Errorf("%s: PromptReported() = %d, %v; want 9, true", start, n, ok)
		}
		if _, ok := m.Usage(); ok {
			t.Errorf("%s: the prompt alone was taken as the usage", start)
		}
	}
	// Other endpoints' streams never report a prompt of their own.
	m := NewStreamMeter(EndpointChat, false, nil)
	feedChunks(t, m, [][]byte{[]byte("event: message_start\ndata: " + `{"type":"message_start","usage":{"input_tokens":9}}` + "\n\n")})
	if _, ok := m.PromptReported(); ok {
		t.Error("a chat stream reported a prompt from a message_start event")
	}
}

// TestStreamTemplateMessages: a Messages stream's deltas go through the
// template too, with the walk's result.
func TestStreamTemplateMessages(t *testing.T) {
	var in []byte
	for _, v := range []string{`"Hello"`, `" world"`, `""`, `"a \"quoted\" word"`, `"x","extra":"y"`, `17`, `"two" "strings"`, `"a"`} {
		in = append(in, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":"+v+"},\"index\":0}\n\n"...)
	}
	in = append(in, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}\n\n"...)
	got := runMeter(t, EndpointMessages, false, [][]byte{in})
	want := runMeterWith(t, EndpointMessages, false, [][]byte{in}, true)
	if got.templated == 0 || want.templated != 0 {
		t.Errorf("templated: %d with the template, %d without", got.templated, want.templated)
	}
	if !sameResult(got, want) {
		got.out, want.out = nil, nil
		t.Errorf("template %+v\nwalk     %+v", got, want)
	}
}

// TestStreamTemplate: chunks shaped like the last one read in full go
// through the template, with the result the full walk gives, whatever the
// value between the learnt bytes turns out to be.
func TestStreamTemplate(t *testing.T) {
	values := []string{`"Hello"`, `" world"`, `""`, `"a \"quoted\" word"`, `"ends in a backslash\\"`, `"\u00e9\n\t"`,
		`"x","extra":"y"`, `"unterminated`, `"escaped end\"`, `17`, `null`, `{"a":"b"}`, `"two" "strings"`, `"a"`}
	for i, shape := range templateShapes {
		in := templateStream(shape, values)
		for _, hide := range []bool{false, true} {
			got := runMeter(t, EndpointChat, hide, [][]byte{in})
			// A chunk whose text is voided teaches nothing (its text is not
			// what the chunk adds); every other shape is learnt.
			if learnt := i != voidedShape; (got.templated > 0) != learnt {
				want := map[bool]string{true: "some", false: "none"}[learnt]
				t.Errorf("shape %d: %d chunks went through the template, want %s", i, got.templated, want)
			}
			want := runMeterWith(t, EndpointChat, hide, [][]byte{in}, true)
			if want.templated != 0 {
				t.Errorf("shape %d: the template was used with noTemplate set", i)
			}
			if !sameResult(got, want) {
				got.out, want.out = nil, nil // the same stream, shown once
				t.Errorf("shape %d, hide %v, stream %q:\ntemplate %+v\nwalk     %+v", i, hide, in, got, want)
			}
		}
	}
}

// TestStreamMeterEstimateSoFar: the running estimate is the text counted as
// it went by plus the uncounted tail at four bytes a token, and grows with
// the stream.
func TestStreamMeterEstimateSoFar(t *testing.T) {
	m := NewStreamMeter(EndpointChat, false, byteCounter{})
	var last int64
	word := strings.Repeat("x", 99) + " "
	for i := range 100 {
		ev := chat(0, `{"content":"`+word+`"}`, "", "")
		if err := m.Write([]byte(ev.raw), func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		total := int64(len(word) * (i + 1))
		want := total - int64(len(m.text)) + int64(len(m.text)+3)/4
		if got := m.EstimateSoFar(); got != want || got < last {
			t.Fatalf("after %d bytes: EstimateSoFar() = %d, want %d (last %d)", total, got, want, last)
		}
		last = m.EstimateSoFar()
	}
	if last < 10000-textKeep {
		t.Fatalf("EstimateSoFar() = %d after 10,000 bytes counted as they went", last)
	}
}
