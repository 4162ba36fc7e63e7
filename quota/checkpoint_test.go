package quota

import (
	"testing"
	"time"
)

// Checkpoints charged, then taken back by a settle below them, a cancel, a
// rollover or a reset: what they took back must be what they charged.

// A stream checkpointed in one day settles below its checkpoints (as it does
// whenever the running estimate was above vLLM's count) after the day
// rolled: the new day gives back nothing it was not charged (it used to
// erase other requests' tokens, and the day's budget was overspent).
func TestGiveBackSparesANewPeriod(t *testing.T) {
	l := tokens(Day, 10000)
	e, clk := newTestEngine(utc(2024, 3, 13, 23, 59, 58))
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 3000, Output: 1000, Choices: 1})
	p := a.Track()
	p.Report(4000) // prompt estimate 3000 + text estimate 1000
	e.Checkpoint(p)

	clk.Set(utc(2024, 3, 14, 0, 0, 5)) // the next day
	b := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 9800, Choices: 1})
	b.Settle(100, 9800) // B really used 9900 tokens today

	a.Settle(2500, 900) // vLLM: 3400 in all, every one of them generated yesterday
	tok, _ := usage(t, e, "u")
	t.Logf("day used after A settled: %d (B alone used 9900 today)", tok[Day])
	if lost := 9900 - tok[Day]; lost > 0 {
		// Now a third request fits where the budget is spent.
		if c, err := e.Admit(Request{User: "u", Limits: l, Prompt: 100, Output: 500, Choices: 1}); err == nil {
			c.Settle(100, 500)
			tok, _ = usage(t, e, "u")
			t.Logf("C admitted and settled 600: day used %d, tokens really spent today %d > limit 10000", tok[Day], 9900+600)
		}
		t.Fatalf("the new day's usage lost %d tokens it never charged", lost)
	}
}

// The same with Cancel (a stream cut before its first token after a
// checkpoint of its prompt): the new hour keeps what it was charged.
func TestCancelSparesANewPeriod(t *testing.T) {
	l := tokens(Hour, 100000)
	e, clk := newTestEngine(utc(2024, 3, 13, 10, 59, 59))
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 50000, Output: 100, Choices: 1})
	p := a.Track()
	p.Report(50000) // the role chunk went by: the prompt is checkpointed
	e.Checkpoint(p)

	clk.Set(utc(2024, 3, 13, 11, 0, 1))
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 40000, Output: 0, Choices: 1, PromptOnly: true}).Settle(40000, 0)
	a.Cancel()
	tok, _ := usage(t, e, "u")
	if tok[Hour] != 40000 || tok[Day] != 40000 {
		t.Fatalf("hour 11 used %d, day used %d; want 40000 each (only B ran in hour 11 and was charged)", tok[Hour], tok[Day])
	}
}

// Admin reset while a checkpointed stream runs: its later give-back takes
// nothing from the usage of requests made after the reset.
func TestGiveBackSparesUsageAfterReset(t *testing.T) {
	l := tokens(Day, 100000)
	e, _ := newTestEngine(t0)
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 3000, Output: 2000, Choices: 1})
	p := a.Track()
	p.Report(4000)
	e.Checkpoint(p)
	if err := e.Reset("u"); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 100, Output: 900, Choices: 1}).Settle(100, 900)
	a.Settle(2500, 900) // 3400 < 4000 checkpointed before the reset
	tok, _ := usage(t, e, "u")
	if tok[Day] < 1000 {
		t.Fatalf("after the reset B used 1000, but the day shows %d: A's give-back of 600 was taken from B", tok[Day])
	}
}

// A cancelled request's checkpoints leave the minute window too.
func TestCancelGivesBackTheMinute(t *testing.T) {
	var l Limits
	l.Tokens[Minute] = 10000
	e, clk := newTestEngine(t0)
	a := mustAdmit(t, e, Request{User: "u", Limits: l, Prompt: 6000, Output: 100, Choices: 1})
	p := a.Track()
	p.Report(6000)
	e.Checkpoint(p)
	clk.Add(time.Second)
	a.Cancel() // charged nothing
	tok, _ := usage(t, e, "u")
	if tok[Minute] != 0 {
		t.Logf("minute used %d after a request charged nothing (documented in release: 'the minute's sum keeps it')", tok[Minute])
		if _, err := e.Admit(Request{User: "u", Limits: l, Prompt: 5000, Output: 100, Choices: 1}); err != nil {
			t.Fatalf("a 5100-token request is refused under a 10000/min limit with nothing charged: %v", err)
		}
	}
}

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
