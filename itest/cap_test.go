package itest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// TestSinglePromptCapAtEquality: a prompt of 4096 token ids (estimated
// exactly: one token each) on the emulator's 8192-token model leaves
// 8192−4096 = 4096 = reserve_output: the model does not bind, and the gate
// sends max_tokens 4096, as it always did for one prompt.
func TestSinglePromptCapAtEquality(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{DefaultLength: 20},
		global: "plan big {\n\t\t\ttokens 10000000 per day\n\t\t}", site: "plan big"})
	ids := make([]int, 4096)
	for i := range ids {
		ids[i] = 279
	}
	body := map[string]any{"model": "sim-model", "max_tokens": nil, "prompt": ids}
	resp := e.post("/v1/completions", token(t, "eq", nil), body)
	mustStatus(t, resp, 200)
	recs := e.sim.Requests()
	var sent struct {
		MaxTokens *int `json:"max_tokens"`
	}
	if err := json.Unmarshal(recs[len(recs)-1].Body, &sent); err != nil {
		t.Fatal(err)
	}
	got := "none (null)"
	if sent.MaxTokens != nil {
		got = fmt.Sprint(*sent.MaxTokens)
	}
	if sent.MaxTokens == nil || *sent.MaxTokens != 4096 {
		t.Fatalf("upstream max_tokens = %s; before 7570d30 the gate sent 4096 for this single prompt", got)
	}
}
