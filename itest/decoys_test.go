package itest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// Decoys: bodies shaped so that the gate's reading of them differs from
// vLLM's, each of which went around a budget or a limit once.

const smallPlan = "plan small {\n\t\t\ttokens 500 per day\n\t\t}"

// longText is ~2,000 cl100k tokens of the emulator's kind of text.
var longText = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 200)

// TestScoreDecoyPair: vLLM scores a body with queries and documents as
// queries × documents (the first shape of its ScoreRequest union; the
// emulator tries them in the same order) whatever other members it carries.
// The gate estimated queries × text_2 when text_2 was present too, so a
// request it refused passed with a one-member decoy, charged far past the
// budget. Now the largest pair is counted, and the decoy is refused too.
func TestScoreDecoyPair(t *testing.T) {
	e := newEnv(t, envOpts{global: smallPlan, site: "plan small"})
	docs := []string{longText, longText}
	honest := map[string]any{"model": "sim-model", "queries": "What is it?", "documents": docs}
	mustStatus(t, e.post("/v1/score", token(t, "sco", nil), honest), 429) // the estimate binds

	disguised := map[string]any{"model": "sim-model", "queries": "What is it?", "documents": docs, "text_2": "x"}
	mustStatus(t, e.post("/v1/score", token(t, "sco", nil), disguised), 429)
}

// TestMessagesThinkingDecoy: a "text" block's prompt is its text (vLLM's
// converter, and the emulator's); a "thinking" member beside it, which
// vLLM ignores, replaced the text in the gate's estimate when it came
// after it, and the request passed a budget it could not fit.
func TestMessagesThinkingDecoy(t *testing.T) {
	e := newEnv(t, envOpts{global: smallPlan, site: "plan small"})
	body := func(block map[string]any) map[string]any {
		return map[string]any{"model": "sim-model", "max_tokens": 5,
			"messages": []map[string]any{{"role": "user", "content": []map[string]any{block}}}}
	}
	mustStatus(t, e.post("/v1/messages", token(t, "thk", nil), body(map[string]any{"type": "text", "text": longText})), 429)
	// encoding/json writes keys sorted: text, then thinking.
	mustStatus(t, e.post("/v1/messages", token(t, "thk", nil), body(map[string]any{"type": "text", "text": longText, "thinking": ""})), 429)
}

// TestMessagesToolNameKeepsSlot: vLLM streams a tool call as
// content_block_start {"type":"tool_use","id":…,"name":<the tool's name>}.
// Tool names are the client's; one named message_stop (a valid Anthropic
// tool name) put the quoted marker "message_stop" in the stream at once,
// and the gate gave the request's max_parallel place back while the stream
// went on. Only the event's own line ends it now. The stand-in upstream writes what vLLM's
// message_stream_converter writes for a forced tool call.
func TestMessagesToolNameKeepsSlot(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream bool `json:"stream"`
			Tools  []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &req)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"chatcmpl-2","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],"model":"sim-model","stop_reason":"max_tokens","usage":{"input_tokens":5,"output_tokens":1}}`)
			return
		}
		name, _ := json.Marshal(req.Tools[0].Name)
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		ev := func(typ, data string) {
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
			w.(http.Flusher).Flush()
		}
		ev("message_start", `{"type":"message_start","message":{"id":"chatcmpl-1","type":"message","role":"assistant","content":[],"model":"sim-model","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":40,"output_tokens":0}}}`)
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"chatcmpl-tool-1","name":`+string(name)+`,"input":{}}}`)
		select { // the model is still generating the call's arguments
		case <-release:
		case <-time.After(10 * time.Second):
		}
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}`)
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
		ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"input_tokens":40,"output_tokens":3}}`)
		ev("message_stop", `{"type":"message_stop"}`)
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer up.Close()
	file := strings.Replace(gateCaddyfile, "reverse_proxy {UPSTREAM}", "reverse_proxy "+up.URL, 1)
	e := newEnv(t, envOpts{file: file, global: "plan one {\n\t\t\tmax_parallel 1\n\t\t\ttokens 100000 per day\n\t\t}", site: "plan one"})

	for _, tool := range []string{"get_weather", "message_stop"} {
		t.Run(tool, func(t *testing.T) {
			user := "tool-" + tool
			body := map[string]any{"model": "sim-model", "max_tokens": 64, "stream": true,
				"tools":       []map[string]any{{"name": tool, "input_schema": map[string]any{"type": "object"}}},
				"tool_choice": map[string]any{"type": "tool", "name": tool},
				"messages":    []map[string]any{{"role": "user", "content": "Call the tool."}}}
			resp := e.post("/v1/messages", token(t, user, nil), body)
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			var seen bytes.Buffer
			for !strings.Contains(seen.String(), "content_block_start") {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				seen.WriteString(l)
			}
			// The stream is running: max_parallel 1 must refuse a second request.
			r2 := e.post("/v1/messages", token(t, user, nil), map[string]any{"model": "sim-model", "max_tokens": 1,
				"messages": []map[string]any{{"role": "user", "content": "hi"}}})
			readAll(t, r2.Body)
			release <- struct{}{}
			_, _ = io.Copy(io.Discard, br)
			if r2.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("max_parallel 1 let a second request in (%d) while a stream calling tool %q was running", r2.StatusCode, tool)
			}
		})
	}
}

// postDirect sends body straight to the emulator, as vLLM would get it
// without the gate.
func (e *env) postDirect(path string, body any) *http.Response {
	e.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.Post(e.simURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// TestBatchWithoutCap: a batch that sets no cap runs each conversation
// to the end of its context in vLLM. With a token budget the gate capped
// the batch at reserve_output (4096 here) for every conversation — more
// than a long conversation has left of the model's 8192 — and vLLM refused
// the whole batch with 400, though it accepts the request as the client
// sent it; then at the context less the longest conversation's estimate,
// which vLLM refused behind a chat template that starts with BOS (Llama,
// Mistral: the emulator's ChatBOS, one token more than the estimate). The
// cap now leaves room for the estimate's error.
func TestBatchWithoutCap(t *testing.T) {
	long := []map[string]any{{"role": "user", "content": strings.Repeat("The quick brown fox jumps over the lazy dog. ", 550)}} // ~5,500 tokens
	short := []map[string]any{{"role": "user", "content": "Hi."}}
	batch := map[string]any{"model": "sim-model", "messages": [][]map[string]any{long, short}}
	for _, bos := range []bool{false, true} {
		t.Run(fmt.Sprintf("BOS %v", bos), func(t *testing.T) {
			e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 20, ChatBOS: bos},
				global: "plan big {\n\t\t\ttokens 10000000 per day\n\t\t}", site: "plan big"})
			mustStatus(t, e.postDirect("/v1/chat/completions/batch", batch), 200) // vLLM accepts it as sent
			mustStatus(t, e.post("/v1/chat/completions", token(t, "bat", nil), map[string]any{"model": "sim-model", "messages": long}), 200)
			mustStatus(t, e.post("/v1/chat/completions/batch", token(t, "bat", nil), batch), 200)
		})
	}
}

// TestCompletionsNullCap: the same with completions of several prompts
// and max_tokens null (no cap for vLLM), the other request of several
// prompts.
func TestCompletionsNullCap(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 20},
		global: "plan big {\n\t\t\ttokens 10000000 per day\n\t\t}", site: "plan big"})
	body := map[string]any{"model": "sim-model", "max_tokens": nil,
		"prompt": []string{strings.Repeat("The quick brown fox jumps over the lazy dog. ", 550), "Hi."}}
	mustStatus(t, e.postDirect("/v1/completions", body), 200)
	mustStatus(t, e.post("/v1/completions", token(t, "cmp", nil), body), 200)
}
