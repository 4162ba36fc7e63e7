package handler

import (
	"net/http"
	"testing"
	"time"

	"github.com/llmgate/llmgate/quota"
)

func TestAppendSeconds(t *testing.T) {
	for _, sec := range []int64{0, 1, 59, 60, 61, 3599, 3600, 3661, 86399, 86400, 7*86400 - 1, 1 << 32} {
		d := time.Duration(sec) * time.Second
		if got, want := string(appendSeconds(nil, d)), d.String(); got != want {
			t.Errorf("%d s: %q, want %q", sec, got, want)
		}
	}
	if got := string(appendSeconds([]byte("x"), -3*time.Second)); got != "x0s" {
		t.Errorf("a reset in the past is written %q", got)
	}
}

// TestWriteRate: each window present writes its three headers (two for
// one that never resets) with its own numbers, whichever of the two is
// there, and nothing else.
func TestWriteRate(t *testing.T) {
	now := time.Now()
	tok := quota.WindowStatus{Limit: 1000000, Remaining: 999123, ResetsAt: now.Add(23*time.Hour + 59*time.Minute + 30*time.Second)}
	req := quota.WindowStatus{Limit: 60, Remaining: -2, ResetsAt: now.Add(42 * time.Second)}
	cases := []struct {
		name string
		rs   quota.RateStatus
		want map[string]string
	}{
		{"both", quota.RateStatus{Tokens: tok, Requests: req, HasTokens: true, HasRequests: true}, map[string]string{
			"X-Ratelimit-Limit-Tokens": "1000000", "X-Ratelimit-Remaining-Tokens": "999123", "X-Ratelimit-Reset-Tokens": "23h59m30s",
			"X-Ratelimit-Limit-Requests": "60", "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "42s",
		}},
		{"tokens", quota.RateStatus{Tokens: tok, HasTokens: true}, map[string]string{
			"X-Ratelimit-Limit-Tokens": "1000000", "X-Ratelimit-Remaining-Tokens": "999123", "X-Ratelimit-Reset-Tokens": "23h59m30s",
		}},
		{"requests", quota.RateStatus{Requests: req, HasRequests: true}, map[string]string{
			"X-Ratelimit-Limit-Requests": "60", "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "42s",
		}},
		// A total budget never resets: "0s" would promise room at once.
		{"total budget, no reset", quota.RateStatus{Tokens: quota.WindowStatus{Limit: 5, Remaining: 5}, HasTokens: true}, map[string]string{
			"X-Ratelimit-Limit-Tokens": "5", "X-Ratelimit-Remaining-Tokens": "5",
		}},
		{"total budget and requests", quota.RateStatus{Tokens: quota.WindowStatus{Limit: 5, Remaining: 5}, Requests: req, HasTokens: true, HasRequests: true}, map[string]string{
			"X-Ratelimit-Limit-Tokens": "5", "X-Ratelimit-Remaining-Tokens": "5",
			"X-Ratelimit-Limit-Requests": "60", "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "42s",
		}},
		{"none", quota.RateStatus{}, map[string]string{}},
	}
	for _, c := range cases {
		hdr := http.Header{}
		writeRate(hdr, c.rs, time.Now())
		if len(hdr) != len(c.want) {
			t.Errorf("%s: %d headers %v, want %d", c.name, len(hdr), hdr, len(c.want))
		}
		for k, v := range c.want {
			got := hdr.Get(k)
			if k == "X-Ratelimit-Reset-Tokens" && v == "23h59m30s" {
				// the clock moved between now and writeRate: a second at most
				if got != v && got != "23h59m29s" {
					t.Errorf("%s: %s = %q, want %q", c.name, k, got, v)
				}
				continue
			}
			if got != v {
				t.Errorf("%s: %s = %q, want %q", c.name, k, got, v)
			}
		}
	}
	// One string for the six values and one slice for them: a header
	// formatted on its own would add an allocation per value.
	both := cases[0].rs
	hdr := make(http.Header, 8)
	if n := testing.AllocsPerRun(100, func() { writeRate(hdr, both, now) }); n > 2 {
		t.Errorf("writeRate allocates %v times, want 2", n)
	}
}
