package itest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/vllmsim"
	"github.com/llmgate/llmgate/meter"
	"github.com/llmgate/llmgate/tokenizer"
)

// TestResetThenGiveBackKeepsOtherUsage: a stream checkpointed before
// an admin reset ends below its last checkpoint (the running estimate counts
// the last KiB at 4 bytes a token; the emulator's words average ~4.9). The
// difference must not be taken from the usage counted after the reset (it
// was, which then showed less than a request made after the reset used).
func TestResetThenGiveBackKeepsOtherUsage(t *testing.T) {
	e := newEnv(t, envOpts{
		sim:    vllmsim.Config{TokensPerSecond: 200, DefaultLength: 8000},
		flush:  "1h", // checkpoints only when something commits: here the admin's reset
		global: "plan p {\n\t\t\ttokens 1000000 per day\n\t\t}",
		site:   "plan p",
	})
	tk := token(t, "rr", nil)
	a := e.post("/v1/chat/completions", tk, chatBody("sim-model", true, nil))
	if a.StatusCode != 200 {
		t.Fatalf("status %d", a.StatusCode)
	}
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(3500 * time.Millisecond); time.Now().Before(deadline); {
		if _, err := a.Body.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	// Two resets: the first one's commit checkpoints the stream (after
	// zeroing), the second zeroes that checkpoint.
	for range 2 {
		if st := e.admin("POST", "/llm_gate/users/rr/reset", nil, nil); st != 200 {
			t.Fatalf("reset: %d", st)
		}
	}
	var b struct {
		Usage struct {
			Total int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := jsonDecode(e.post("/v1/chat/completions", tk, chatBody("sim-model", false, map[string]any{"max_tokens": 20})), &b); err != nil || b.Usage.Total == 0 {
		t.Fatal(b, err)
	}
	a.Body.Close() // the client leaves: A settles at prompt + its text counted
	time.Sleep(500 * time.Millisecond)
	used := e.usedInTheWindow(tk)
	recs := e.records("rr")
	t.Logf("after the reset: B used %d; the day shows %d used; records: %+v", b.Usage.Total, used, recs)
	if used < b.Usage.Total {
		t.Fatalf("the day shows %d used after the reset, less than B's %d alone: A's give-back was taken from B", used, b.Usage.Total)
	}
}

// TestStreamOnABound: a stream with its own cap, from a user far from every
// limit, is admitted on a bound of its prompt (the rate-limit headers show
// the bound held) and has its prompt counted once its first chunk has gone:
// the checkpoints while it runs charge the counted prompt and the text so
// far, and its record is vLLM's usage.
func TestStreamOnABound(t *testing.T) {
	const limit = 1000000
	e := newEnv(t, envOpts{
		sim:    vllmsim.Config{TokensPerSecond: 25, DefaultLength: 1000},
		flush:  "1s",
		global: fmt.Sprintf("plan p {\n\t\t\ttokens %d per day\n\t\t}", limit),
		site:   "plan p",
	})
	// A prompt of some 2,000 tokens, so that the checkpoints' charge tells
	// a counted prompt from none.
	body := []byte(mustJSON(t, map[string]any{
		"model": "sim-model", "stream": true, "max_tokens": 100,
		"messages": []map[string]any{{"role": "user", "content": strings.Repeat("word ", 2000)}},
	}))
	bound, estimate := boundAndEstimate(t, body)
	if bound+100 > limit/32 {
		t.Fatalf("bound %d: no room for 32 reservations", bound)
	}
	tk := token(t, "sb", nil)
	resp := e.post("/v1/chat/completions", tk, body)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	remaining, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if held := limit - remaining; held != bound+100 {
		t.Errorf("%d tokens held while the stream runs, want its bound %d and 100", held, bound)
	}
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(2500 * time.Millisecond); time.Now().Before(deadline); {
		if _, err := resp.Body.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	used := e.usedInTheWindow(tk)
	// Checkpointed a second ago or less: the prompt and some text.
	if used <= estimate || used > estimate+100 {
		t.Errorf("%d used while the stream runs; want its prompt (%d) and part of its 100 tokens", used, estimate)
	}
	readAll(t, resp.Body)
	if r := e.waitRecords("sb", 1)[0]; r.Estimated || r.CompletionTokens != 100 || r.PromptTokens < estimate/2 {
		t.Errorf("record %+v, want vLLM's usage", r)
	}
}

// usedInTheWindow returns what /llm_gate/me shows used in the caller's one
// window.
func (e *env) usedInTheWindow(cred string) int64 {
	e.t.Helper()
	var me struct {
		Windows []struct {
			Used int64 `json:"used"`
		} `json:"windows"`
	}
	if err := jsonDecode(e.get("/llm_gate/me", cred), &me); err != nil || len(me.Windows) != 1 {
		e.t.Fatal(me, err)
	}
	return me.Windows[0].Used
}

// boundAndEstimate returns the bound of a chat body's prompt the gate admits
// on (meter.Request.PromptBound) and its estimate by the gate's default
// tokenizer.
func boundAndEstimate(t *testing.T, body []byte) (bound, estimate int64) {
	t.Helper()
	req, err := meter.ParseRequest(meter.EndpointChat, body)
	if err != nil {
		t.Fatal(err)
	}
	bound, _ = req.PromptBound(body)
	tok, err := tokenizer.Get("")
	if err != nil {
		t.Fatal(err)
	}
	return bound, req.EstimatePrompt(tok)
}
