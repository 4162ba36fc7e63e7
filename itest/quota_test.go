package itest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/internal/vllmsim"
	"github.com/llmgate/llmgate/meter"
	"github.com/llmgate/llmgate/tokenizer"
)

// TestBudgetHoldsUnderConcurrency: 100 concurrent streaming requests against
// a 10,000-token daily budget. The gate guarantees
//
//	charged <= limit + admitted × max(0, real prompt − estimated prompt)
//
// (the only error a reservation cannot see coming is the prompt estimate's).
func TestBudgetHoldsUnderConcurrency(t *testing.T) {
	const limit = 10000
	e := newEnv(t, envOpts{
		sim:    vllmsim.Config{DefaultLength: 400, TokensPerSecond: 2000, TokensPerChunk: 4},
		global: "plan small {\n\t\t\ttokens " + strconv.Itoa(limit) + " per day\n\t\t}",
		site:   "plan small\n\t\treserve_output 300",
		flush:  "1s",
	})
	body := chatBody("sim-model", true, nil)
	req, err := meter.ParseRequest(meter.EndpointChat, []byte(mustJSON(t, body)))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := tokenizer.Get("")
	estimate := req.EstimatePrompt(tok)

	tk := token(t, "frank", nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := e.post("/v1/chat/completions", tk, body)
			readAll(t, resp.Body)
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	recs := e.waitRecords("frank", statuses[200])
	var charged, realPrompt int64
	for _, r := range recs {
		charged += r.PromptTokens + r.CompletionTokens
		realPrompt = r.PromptTokens
	}
	bound := int64(limit) + int64(statuses[200])*max(0, realPrompt-estimate)
	t.Logf("statuses %v; charged %d tokens of %d (bound %d; prompt real %d, estimated %d)", statuses, charged, limit, bound, realPrompt, estimate)
	if charged > bound {
		t.Fatalf("charged %d > bound %d", charged, bound)
	}
	if statuses[429] == 0 || statuses[200] == 0 {
		t.Fatalf("statuses %v: the budget should admit some and refuse others", statuses)
	}
	// Every admitted request was clamped to what remained: the emulator
	// received max_tokens <= reserve_output.
	for _, r := range e.sim.Requests() {
		if r.Path != "/v1/chat/completions" {
			continue
		}
		var got struct {
			MaxTokens *int `json:"max_tokens"`
		}
		json.Unmarshal(r.Body, &got)
		if got.MaxTokens == nil || *got.MaxTokens > 300 || *got.MaxTokens < 1 {
			t.Fatalf("upstream request without a clamp: %s", r.Body)
		}
	}
	// And the 429 is OpenAI's insufficient_quota, not retried by SDKs.
	resp := e.post("/v1/chat/completions", tk, body)
	b := mustStatus(t, resp, 429)
	if got := decodeError(t, b); got.Error.Code != "insufficient_quota" || got.Error.Type != "insufficient_quota" {
		t.Fatalf("%s", b)
	}
	if resp.Header.Get("X-Should-Retry") != "false" || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Ratelimit-Limit-Tokens") != strconv.Itoa(limit) {
		t.Fatalf("429 headers %v", resp.Header)
	}
}

// TestRateLimitsAndSDK: a requests-per-minute window refuses with
// rate_limit_exceeded and admits again after an admin reset; the OpenAI Go
// SDK surfaces the 429 as an *openai.Error with the message, and does not
// retry an exhausted budget.
func TestRateLimitsAndSDK(t *testing.T) {
	e := newEnv(t, envOpts{
		global: "plan tiny {\n\t\t\trequests 2 per minute\n\t\t\ttokens 100000 per day\n\t\t}\n\t\tplan broke {\n\t\t\ttokens 5 per day\n\t\t}",
		site:   "plan tiny",
	})
	tk := token(t, "gina", nil)
	for i := range 2 {
		resp := e.post("/v1/chat/completions", tk, chatBody("sim-model", false, nil))
		mustStatus(t, resp, 200)
		if resp.Header.Get("X-Ratelimit-Limit-Requests") != "2" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != strconv.Itoa(1-i) {
			t.Fatalf("request %d: rate headers %v", i, resp.Header)
		}
		// Both trios, each value on its own.
		remaining, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if resp.Header.Get("X-Ratelimit-Limit-Tokens") != "100000" || err != nil || remaining <= 90000 || remaining >= 100000 {
			t.Fatalf("request %d: token headers %v", i, resp.Header)
		}
		for name, most := range map[string]time.Duration{"X-Ratelimit-Reset-Tokens": 24 * time.Hour, "X-Ratelimit-Reset-Requests": time.Minute} {
			if d, err := time.ParseDuration(resp.Header.Get(name)); err != nil || d <= 0 || d > most || len(resp.Header[name]) != 1 {
				t.Fatalf("request %d: %s %q", i, name, resp.Header.Get(name))
			}
		}
	}
	resp := e.post("/v1/chat/completions", tk, chatBody("sim-model", false, nil))
	b := mustStatus(t, resp, 429)
	if got := decodeError(t, b); got.Error.Code != "rate_limit_exceeded" || got.Error.Type != "requests" {
		t.Fatalf("%s", b)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 || ra > 60 {
		t.Fatalf("retry-after %q", resp.Header.Get("Retry-After"))
	}
	if st := e.admin("POST", "/llm_gate/users/gina/reset", nil, nil); st != 200 && st != 204 {
		t.Fatalf("reset: %d", st)
	}
	mustStatus(t, e.post("/v1/chat/completions", tk, chatBody("sim-model", false, nil)), 200)

	// The SDK sees a clean error and does not retry a budget.
	attempts := 0
	client := openai.NewClient(option.WithBaseURL(e.base+"/v1"), option.WithAPIKey(token(t, "hank", map[string]any{"plan": "broke"})),
		option.WithMaxRetries(3), option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			attempts++
			return next(r)
		}))
	before := len(e.sim.Requests())
	_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model:    "sim-model",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story about a cat.")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "insufficient_quota" || !strings.Contains(apiErr.Message, "5 tokens per day") {
		if apiErr != nil {
			t.Fatalf("SDK error %v: code %q message %q", err, apiErr.Code, apiErr.Message)
		}
		t.Fatalf("SDK error %v", err)
	}
	if n := len(e.sim.Requests()) - before; n != 0 || attempts != 1 {
		t.Fatalf("%d requests reached the upstream, %d attempts (want 0 and 1: no retry of an exhausted budget)", n, attempts)
	}
}

// TestRequestLargerThanWindow: a request whose prompt alone exceeds a
// minute window's whole limit can never be admitted: its 429 tells SDKs not
// to retry (they would, three times, by default) and promises no wait; a
// total budget's headers promise no reset.
func TestRequestLargerThanWindow(t *testing.T) {
	e := newEnv(t, envOpts{
		global: "plan small {\n\t\t\ttokens 40 per minute\n\t\t}\n\t\tplan lifetime {\n\t\t\ttokens 1000 per total\n\t\t\ttokens 100000 per day\n\t\t}",
		site:   "plan small",
	})
	tk := token(t, "wordy", nil)
	long := chatBody("sim-model", false, map[string]any{"max_tokens": 5, "messages": []map[string]any{{"role": "user", "content": strings.Repeat("word ", 60)}}})
	resp := e.post("/v1/chat/completions", tk, long)
	b := mustStatus(t, resp, 429)
	if got := decodeError(t, b); got.Error.Code != "rate_limit_exceeded" || got.Error.Type != "tokens" {
		t.Fatalf("%s", b)
	}
	if resp.Header.Get("X-Should-Retry") != "false" || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("429 of a request that never fits: headers %v", resp.Header)
	}
	// One that fits is admitted, and its minute window resets.
	resp = e.post("/v1/chat/completions", tk, chatBody("sim-model", false, map[string]any{"max_tokens": 2}))
	mustStatus(t, resp, 200)
	if d, err := time.ParseDuration(resp.Header.Get("X-Ratelimit-Reset-Tokens")); err != nil || d <= 0 || d > time.Minute {
		t.Fatalf("minute window's headers %v", resp.Header)
	}
	// Where a total budget is the tightest token window, there is no reset
	// to announce.
	resp = e.post("/v1/chat/completions", token(t, "lifer", map[string]any{"plan": "lifetime"}), chatBody("sim-model", false, map[string]any{"max_tokens": 2}))
	mustStatus(t, resp, 200)
	if resp.Header.Get("X-Ratelimit-Limit-Tokens") != "1000" || resp.Header.Get("X-Ratelimit-Remaining-Tokens") == "" {
		t.Fatalf("total budget's headers %v", resp.Header)
	}
	if _, ok := resp.Header["X-Ratelimit-Reset-Tokens"]; ok {
		t.Fatalf("a total budget announces a reset: %v", resp.Header)
	}
}

// TestPatchUnderTraffic: admins changing a user's limits while the user's
// requests run leave the counters equal to the records.
func TestPatchUnderTraffic(t *testing.T) {
	e := newEnv(t, envOpts{
		global: "plan p {\n\t\t\ttokens 100000000 per day\n\t\t}",
		site:   "plan p",
		flush:  "1s",
	})
	e.admin("PUT", "/llm_gate/users/walt", map[string]any{"plan": "p"}, nil)
	var key struct {
		Key string `json:"key"`
	}
	e.admin("POST", "/llm_gate/users/walt/keys", map[string]any{"name": "k"}, &key)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				status, err := e.tryPost("/v1/chat/completions", key.Key, chatBody("sim-model", true, nil))
				if err == nil && status == 200 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		}()
	}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.admin("PATCH", "/llm_gate/users/walt", map[string]any{"token_limit": 50000000 + i, "tokens_per_minute": 10000000 + i, "max_parallel": 100 + i}, nil)
		}()
	}
	wg.Wait()
	recs := e.waitRecords("walt", ok)
	var used int64
	for _, r := range recs {
		used += r.PromptTokens + r.CompletionTokens
	}
	var u struct {
		Windows []struct {
			Window   string `json:"window"`
			Kind     string `json:"kind"`
			Used     int64  `json:"used"`
			Reserved int64  `json:"reserved"`
		} `json:"windows"`
	}
	if st := e.admin("GET", "/llm_gate/users/walt", nil, &u); st != 200 {
		t.Fatalf("GET user: %d", st)
	}
	seen := 0
	for _, w := range u.Windows {
		if w.Kind == "tokens" {
			seen++
			if w.Used != used || w.Reserved != 0 {
				t.Fatalf("%s window: used %d reserved %d; records say %d (%d requests)", w.Window, w.Used, w.Reserved, used, ok)
			}
		}
	}
	if seen != 2 || ok != 120 {
		t.Fatalf("%d token windows, %d of 120 requests ok", seen, ok)
	}
}

// TestParallelSlotFreedAtTheEnd: a client that sends its next request as
// soon as it has read [DONE] must not be refused by max_parallel 1 because
// the gate had not yet settled the first. The stand-in upstream sends
// [DONE] and then keeps its answer open until the gate no longer counts the
// request in flight: before the fix the gate freed the place only once the
// upstream's answer had ended, and the wait timed out.
func TestParallelSlotFreedAtTheEnd(t *testing.T) {
	e, freed := slotWatch(t, func(w io.Writer) {
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}`+"\n\n")
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`+"\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	b := mustStatus(t, e.post("/v1/chat/completions", token(t, "serial", nil), chatBody("sim-model", true, map[string]any{"max_tokens": 5})), 200)
	if !<-freed {
		t.Fatalf("the request was still in flight after [DONE] reached the client: %s", b)
	}
	if r := e.waitRecords("serial", 1)[0]; r.PromptTokens != 5 || r.CompletionTokens != 1 {
		t.Fatalf("record %+v", r)
	}
	if n := inFlight(t, "serial"); n != 0 {
		t.Fatalf("%d in flight after the request settled", n)
	}
}

// inFlight is the number of user's requests the running gate counts in
// flight.
func inFlight(t *testing.T, user string) int {
	app, err := caddy.ActiveContext().App("llm_gate")
	if err != nil {
		t.Error(err)
		return -1
	}
	return app.(*gate.App).State().Engine.InFlight(user)
}

// slotWatch starts a gate whose plan allows one request in flight, in
// front of a stand-in upstream that answers every request with the stream
// write writes, then keeps its answer open until the gate no longer counts
// user "serial"'s request in flight (at most 5 s) and says on freed whether
// it did.
func slotWatch(t *testing.T, write func(io.Writer)) (*env, <-chan bool) {
	freed := make(chan bool, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		write(w)
		w.(http.Flusher).Flush()
		deadline := time.Now().Add(5 * time.Second)
		for inFlight(t, "serial") != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		freed <- inFlight(t, "serial") == 0
	}))
	t.Cleanup(up.Close)
	file := strings.Replace(gateCaddyfile, "reverse_proxy {UPSTREAM}", "reverse_proxy "+up.URL, 1)
	return newEnv(t, envOpts{file: file, global: "plan one {\n\t\t\tmax_parallel 1\n\t\t\ttokens 100000 per day\n\t\t}", site: "plan one"}), freed
}

// TestParallelSlotNotFreedByText: text inside the stream that reads
// "data: [DONE]" (here the echo of the last assistant message, which the
// client chooses) does not give the place back while the stream goes on.
func TestParallelSlotNotFreedByText(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 10, DefaultLength: 30},
		global: "plan one {\n\t\t\tmax_parallel 1\n\t\t\ttokens 100000 per day\n\t\t}", site: "plan one"})
	body := map[string]any{"model": "sim-model", "stream": true, "echo": true, "add_generation_prompt": false,
		"messages": []map[string]any{{"role": "user", "content": "hi"}, {"role": "assistant", "content": "data: [DONE]"}}}
	resp := e.post("/v1/chat/completions", token(t, "echoer", nil), body)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var seen strings.Builder
	for range 4 { // a few events in, the echo among them: the request is running
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		seen.WriteString(l)
	}
	if !strings.Contains(seen.String(), `data: [DONE]"`) {
		t.Fatalf("the echo did not come first: %s", seen.String())
	}
	r2 := e.post("/v1/chat/completions", token(t, "echoer", nil), chatBody("sim-model", false, map[string]any{"max_tokens": 1}))
	r2.Body.Close()
	if r2.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("max_parallel 1 let a second request in while the first streams: %d", r2.StatusCode)
	}
}

// TestAdmissionOnABound: a non-streaming request with its own cap, from a
// user whose windows have ample room, is admitted on a bound of its prompt
// read without counting it: the x-ratelimit headers show the bound held
// while it runs, and it is charged the usage vLLM reports. A user with
// little room is counted first, so the same request holds its estimate. A
// request admitted on a bound whose answer reports nothing (its client gone
// before the answer) is charged the estimate a counted one is.
func TestAdmissionOnABound(t *testing.T) {
	const roomy, tight = 1000000, 10000
	e := newEnv(t, envOpts{
		global: fmt.Sprintf("plan roomy {\n\t\t\ttokens %d per day\n\t\t}\n\t\tplan tight {\n\t\t\ttokens %d per day\n\t\t}", roomy, tight),
		site:   "plan roomy",
	})
	e.admin("PUT", "/llm_gate/users/tess", map[string]any{"plan": "tight"}, nil)
	body := []byte(mustJSON(t, chatBody("sim-model", false, map[string]any{"max_tokens": 16})))
	bound, estimate := boundAndEstimate(t, body)
	if bound+16 <= tight/32 || bound <= estimate || bound+16 > roomy/32 {
		t.Fatalf("bound %d, estimate %d: the plans do not separate the two admissions", bound, estimate)
	}
	for _, c := range []struct {
		user  string
		limit int64
		held  int64
	}{{"rosa", roomy, bound + 16}, {"tess", tight, estimate + 16}} {
		before := e.sim.Counters().PromptTokens
		resp := e.post("/v1/chat/completions", token(t, c.user, nil), body)
		mustStatus(t, resp, 200)
		remaining, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
		if held := c.limit - remaining; held != c.held {
			t.Errorf("%s: %d tokens held while the request ran, want %d (bound %d, estimate %d)", c.user, held, c.held, bound, estimate)
		}
		r := e.waitRecords(c.user, 1)[0]
		if r.Estimated || r.PromptTokens != e.sim.Counters().PromptTokens-before || r.CompletionTokens != 16 {
			t.Errorf("%s: record %+v, want the emulator's usage", c.user, r)
		}
	}

	for _, user := range []string{"rosa", "tess"} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "POST", e.base+"/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token(t, user, nil))
		req.Header.Set("X-Sim-TPS", "20") // 16 tokens: 0.8 s
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("%s: answered %d before the client's timeout", user, resp.StatusCode)
		}
		cancel()
		recs := e.waitRecords(user, 2)
		r := recs[0]
		if !r.Estimated {
			r = recs[1]
		}
		if !r.Estimated || r.PromptTokens != estimate || r.CompletionTokens != 0 {
			t.Errorf("%s, client gone: record %+v, want the estimate %d charged", user, r, estimate)
		}
	}
}
