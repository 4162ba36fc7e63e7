package quota

import (
	"testing"
	"time"
)

// The minute window's give-back after an admin reset: A checkpointed 4000
// tokens, the admin reset the user (the minute is zeroed), B then used 3000
// in the minute; A's cancel must not take B's 3000 out of the minute window
// (it did, while the hour and day windows were spared).
func TestMinuteGiveBackSparesUsageAfterReset(t *testing.T) {
	var l Limits
	l.Tokens[Minute] = 5000
	e, clk := newTestEngine(t0)
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 4000, Output: 100, Choices: 1})
	p := a.Track()
	p.Report(4000)
	e.Checkpoint(p)
	if err := e.Reset("u"); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Second)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 3000, Output: 0, Choices: 1, PromptOnly: true}).Settle(3000, 0)
	clk.Add(time.Second)
	a.Cancel()
	tok, _ := usage(t, e, "u")
	if tok[Minute] != 3000 {
		if c, err := e.Admit(Request{User: "u", Limits: l, Prompt: 4000, Output: 0, Choices: 1, PromptOnly: true}); err == nil {
			c.Settle(4000, 0)
			t.Logf("C (4000) admitted: %d tokens spent in a 5000/minute window", 3000+4000)
		}
		t.Fatalf("minute used %d after A's cancel; want 3000 (B's usage after the reset): A's pre-reset checkpoint was taken from B", tok[Minute])
	}
}

// The give-back takes from the seconds the checkpoints charged: taken from
// the newest seconds (other requests' buckets), the request's own older
// bucket stayed and aged out earlier, and the minute window then lost the
// other request's tokens, which still count.
func TestMinuteGiveBackFromItsOwnSeconds(t *testing.T) {
	var l Limits
	l.Tokens[Minute] = 5000
	e, clk := newTestEngine(t0)
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 1000, Output: 100, Choices: 1})
	p := a.Track()
	p.Report(1000)
	e.Checkpoint(p) // second 0: A's 1000
	clk.Add(30 * time.Second)
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 3000, Output: 0, Choices: 1, PromptOnly: true}).Settle(3000, 0) // second 30: B's 3000
	a.Cancel()                                                                                                            // A charged nothing: its 1000 of second 0 should leave
	clk.Add(35 * time.Second)                                                                                             // second 65: second 0 has aged out, second 30 has not
	tok, _ := usage(t, e, "u")
	if tok[Minute] != 3000 {
		t.Fatalf("at second 65 the minute shows %d; want 3000 (B's tokens of second 30 are still inside the window)", tok[Minute])
	}
}
