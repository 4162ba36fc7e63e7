package itest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// TestBatchCapWithBOS: the cap for several prompts fits the longest
// prompt's context with room for the estimate's error: a cap of
// max_model_len − the longest prompt's estimate was refused by vLLM with a
// chat template that starts with BOS (Llama, Mistral: the emulator's
// ChatBOS, one token more than the estimate), though vLLM accepts the
// uncapped batch and the gate passes its long conversation alone.
func TestBatchCapWithBOS(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 20, ChatBOS: true},
		global: "plan big {\n\t\t\ttokens 10000000 per day\n\t\t}", site: "plan big"})
	long := []map[string]any{{"role": "user", "content": strings.Repeat("The quick brown fox jumps over the lazy dog. ", 550)}}
	short := []map[string]any{{"role": "user", "content": "Hi."}}
	batch := map[string]any{"model": "sim-model", "messages": [][]map[string]any{long, short}}
	b, _ := json.Marshal(batch)
	direct, err := http.Post(e.simURL+"/v1/chat/completions/batch", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, direct, 200) // vLLM accepts it as sent
	mustStatus(t, e.post("/v1/chat/completions", token(t, "bos", nil), map[string]any{"model": "sim-model", "messages": long}), 200)
	resp := e.post("/v1/chat/completions/batch", token(t, "bos", nil), batch)
	body := readAll(t, resp.Body)
	if resp.StatusCode != 200 {
		recs := e.sim.Requests()
		var sent struct {
			MaxTokens *int `json:"max_tokens"`
		}
		_ = json.Unmarshal(recs[len(recs)-1].Body, &sent)
		mt := -1
		if sent.MaxTokens != nil {
			mt = *sent.MaxTokens
		}
		t.Fatalf("through the gate the batch got %d (gate sent max_tokens %d): %s", resp.StatusCode, mt, body)
	}
}
