package itest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// TestChatBatch: vLLM's batched chat (/v1/chat/completions/batch) is
// metered: every conversation's output is reserved and capped, so a batch
// cannot go around a budget, and stream (which vLLM answers with each
// conversation's last chunk, counting only those) is refused.
func TestChatBatch(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 400},
		global: "plan small {\n\t\t\ttokens 2000 per day\n\t\t}", site: "plan small\n\t\treserve_output 300"})
	tk := token(t, "bea", nil)
	conv := []map[string]any{{"role": "user", "content": "Tell me a long story."}}
	body := map[string]any{"model": "sim-model", "messages": [][]map[string]any{conv, conv, conv}}
	b := mustStatus(t, e.post("/v1/chat/completions/batch", tk, body), 200)
	var out struct {
		Choices []struct{ Index int } `json:"choices"`
		Usage   struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Choices) != 3 {
		t.Fatalf("%s %v", b, err)
	}
	recs := e.sim.Requests()
	var sent struct {
		MaxTokens *int `json:"max_tokens"`
	}
	if err := json.Unmarshal(recs[len(recs)-1].Body, &sent); err != nil || sent.MaxTokens == nil || *sent.MaxTokens > 300 {
		t.Fatalf("the batch went upstream without a cap: %s", recs[len(recs)-1].Body)
	}
	r := e.waitRecords("bea", 1)[0]
	if r.Endpoint != "chat_batch" || r.PromptTokens != out.Usage.PromptTokens || r.CompletionTokens != out.Usage.CompletionTokens || r.CompletionTokens > 900 {
		t.Fatalf("record %+v, usage %+v", r, out.Usage)
	}
	// Then the budget binds: each batch gets less, until none fits, and
	// the three conversations together never spend more than the budget.
	if used := e.untilRefused("/v1/chat/completions/batch", tk, body, 20, "bea"); used > 2000 || used < 1900 {
		t.Fatalf("%d tokens used of a 2,000-token budget", used)
	}

	body["stream"] = true
	b = mustStatus(t, e.post("/v1/chat/completions/batch", token(t, "sol", nil), body), 400)
	if got := decodeError(t, b); got.Error.Code != "invalid_json" || got.Error.Param != nil {
		t.Fatalf("%s", b)
	}
	// A member of the wrong kind is named as the error's param, as OpenAI does.
	b = mustStatus(t, e.post("/v1/chat/completions", token(t, "sol", nil), map[string]any{
		"model": "sim-model", "messages": []map[string]string{{"role": "user", "content": "hi"}}, "max_tokens": -1}), 400)
	if got := decodeError(t, b); got.Error.Code != "invalid_json" || got.Error.Param == nil || *got.Error.Param != "max_tokens" ||
		!strings.Contains(got.Error.Message, "max_tokens must not be negative") {
		t.Fatalf("%s", b)
	}
}

// TestPoolingMetered: rerank and score read prompts only, like embeddings:
// charged what vLLM counted (its older rerank usage, total_tokens alone,
// too), and refused once the budget cannot hold the pairs' estimate.
func TestPoolingMetered(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{LegacyRerank: true},
		global: "plan small {\n\t\t\ttokens 200 per day\n\t\t}", site: "plan small"})
	tk := token(t, "ray", nil)
	docs := []string{"Paris is the capital of France.", "Berlin is in Germany.", "Madrid is in Spain."}
	body := map[string]any{"model": "sim-model", "query": "What is the capital of France?", "documents": docs}
	b := mustStatus(t, e.post("/v1/rerank", tk, body), 200)
	var out struct {
		Usage map[string]int64 `json:"usage"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Usage) != 1 || out.Usage["total_tokens"] == 0 {
		t.Fatalf("not the legacy usage: %s", b)
	}
	r := e.waitRecords("ray", 1)[0]
	if r.Endpoint != "rerank" || r.PromptTokens != out.Usage["total_tokens"] || r.CompletionTokens != 0 || r.Estimated {
		t.Fatalf("record %+v for usage %v", r, out.Usage)
	}
	score := map[string]any{"model": "sim-model", "text_1": "What is the capital of France?", "text_2": docs}
	if used := e.untilRefused("/v1/score", tk, score, 10, "ray"); used > 200 {
		t.Fatalf("%d tokens used of a 200-token budget", used)
	}
}

// untilRefused sends body with cred until the gate answers 429, failing
// the test on any other status than 200 or after max requests, and returns
// the tokens user was charged in all.
func (e *env) untilRefused(path, cred string, body any, max int, user string) int64 {
	e.t.Helper()
	for i := 0; ; i++ {
		resp := e.post(path, cred, body)
		readAll(e.t, resp.Body)
		if resp.StatusCode == 429 {
			break
		}
		if resp.StatusCode != 200 || i == max {
			e.t.Fatalf("status %d after %d requests", resp.StatusCode, i+1)
		}
	}
	var used int64
	for _, r := range e.records(user) {
		used += r.PromptTokens + r.CompletionTokens
	}
	return used
}
