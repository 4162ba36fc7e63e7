package itest

import (
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/vllmsim"
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
	var me struct {
		Windows []struct {
			Used int64 `json:"used"`
		} `json:"windows"`
	}
	if err := jsonDecode(e.get("/llm_gate/me", tk), &me); err != nil || len(me.Windows) != 1 {
		t.Fatal(me, err)
	}
	recs := e.records("rr")
	t.Logf("after the reset: B used %d; the day shows %d used; records: %+v", b.Usage.Total, me.Windows[0].Used, recs)
	if me.Windows[0].Used < b.Usage.Total {
		t.Fatalf("the day shows %d used after the reset, less than B's %d alone: A's give-back was taken from B", me.Windows[0].Used, b.Usage.Total)
	}
}
