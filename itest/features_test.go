package itest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/vllmsim"
	"github.com/llmgate/llmgate/meter"
)

func (e *env) get(path, cred string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// TestPromptCountTokenize: with prompt_count tokenize the reservation uses
// the upstream's exact count, asked through /tokenize.
func TestPromptCountTokenize(t *testing.T) {
	e := newEnv(t, envOpts{
		global: "plan p {\n\t\t\ttokens 100000 per day\n\t\t}",
		site:   "plan p\n\t\tprompt_count tokenize",
	})
	resp := e.post("/v1/chat/completions", token(t, "kim", nil), chatBody("sim-model", false, map[string]any{"max_tokens": 10}))
	b := mustStatus(t, resp, 200)
	var out struct {
		Usage struct {
			PromptTokens int64 `json:"prompt_tokens"`
		} `json:"usage"`
	}
	json.Unmarshal(b, &out)
	remaining, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if want := 100000 - out.Usage.PromptTokens - 10; remaining != want {
		t.Fatalf("remaining after admission %d, want %d (exact prompt %d + 10 reserved)", remaining, want, out.Usage.PromptTokens)
	}
	var sawTokenize bool
	for _, r := range e.sim.Requests() {
		sawTokenize = sawTokenize || r.Path == "/tokenize"
	}
	if !sawTokenize {
		t.Fatal("the emulator never saw /tokenize")
	}

	// A Messages request is counted as the chat vLLM converts it to:
	// system, text, thinking, a tool call and its result, tools.
	tools := []map[string]any{{"name": "get_weather", "description": "The weather now.",
		"input_schema": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}
	msgs := []map[string]any{
		{"role": "user", "content": "What is the weather in Paris?"},
		{"role": "assistant", "content": []map[string]any{{"type": "thinking", "thinking": "Look it up.", "signature": "s"},
			{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "t1", "name": "get_weather", "input": map[string]any{"city": "Paris"}}}},
		{"role": "user", "content": []map[string]any{{"type": "tool_result", "id": "t1", "content": []map[string]any{{"type": "text", "text": "sunny"}}},
			{"type": "text", "text": "And tomorrow?"}}},
	}
	resp = e.post("/v1/messages", token(t, "kim", nil), map[string]any{"model": "sim-model", "max_tokens": 10,
		"system": []map[string]any{{"type": "text", "text": "Be brief."}}, "tools": tools, "messages": msgs})
	b = mustStatus(t, resp, 200)
	var msgOut struct {
		Usage struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	json.Unmarshal(b, &msgOut)
	remaining, _ = strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	// The first request settled with its real usage; this one holds its
	// exact prompt and its 10.
	if held := 100000 - remaining - firstCharge(e, "kim"); held != msgOut.Usage.InputTokens+10 {
		t.Fatalf("a Messages request held %d tokens; its exact prompt is %d, and 10 reserved", held, msgOut.Usage.InputTokens)
	}
}

// firstCharge is what user's first recorded request was charged.
func firstCharge(e *env, user string) int64 {
	recs := e.waitRecords(user, 1)
	r := recs[len(recs)-1]
	return r.PromptTokens + r.CompletionTokens
}

// TestModelsAndSelfService: /v1/models lists only the plan's models, a
// disallowed model is refused with 403, and the self-service path shows
// the caller's windows.
func TestModelsAndSelfService(t *testing.T) {
	e := newEnv(t, envOpts{
		sim:    vllmsim.Config{ModelNames: []string{"llama-3", "qwen-2", "mistral-7b", "meta-llama/Llama-3.1-8B"}},
		global: "plan p {\n\t\t\ttokens 5000 per day\n\t\t\trequests 10 per minute\n\t\t\tmodels llama-* qwen-*\n\t\t}",
		site:   "plan p",
	})
	tk := token(t, "lee", nil)
	b := mustStatus(t, e.get("/v1/models", tk), 200)
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "llama-3,qwen-2" {
		t.Fatalf("models %v", ids)
	}
	b = mustStatus(t, e.post("/v1/chat/completions", tk, chatBody("mistral-7b", false, nil)), 403)
	if decodeError(t, b).Error.Code != "model_not_allowed" {
		t.Fatalf("%s", b)
	}
	mustStatus(t, e.post("/v1/chat/completions", tk, chatBody("llama-3", false, map[string]any{"max_tokens": 5})), 200)
	modelIDs := func(cred string) string {
		var list struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(mustStatus(t, e.get("/v1/models", cred), 200), &list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		return strings.Join(ids, ",")
	}
	// A user's own globs: "*" allows every model, Hugging Face ids (vLLM's
	// default served names, with a '/') too, and "meta-llama/*" that org's.
	for _, c := range []struct{ globs, want string }{
		{`["*"]`, "llama-3,qwen-2,mistral-7b,meta-llama/Llama-3.1-8B"},
		{`["meta-llama/*"]`, "meta-llama/Llama-3.1-8B"},
		{`["*llama*"]`, "llama-3,meta-llama/Llama-3.1-8B"},
	} {
		if st := e.admin("PATCH", "/llm_gate/users/lee", json.RawMessage(`{"models":`+c.globs+`}`), nil); st != 200 {
			t.Fatalf("PATCH models %s: %d", c.globs, st)
		}
		if got := modelIDs(tk); got != c.want {
			t.Fatalf("models %s: listed %s, want %s", c.globs, got, c.want)
		}
	}
	mustStatus(t, e.post("/v1/chat/completions", tk, chatBody("meta-llama/Llama-3.1-8B", false, map[string]any{"max_tokens": 5})), 200)
	if st := e.admin("PATCH", "/llm_gate/users/lee", json.RawMessage(`{"models":null}`), nil); st != 200 {
		t.Fatalf("PATCH models null: %d", st)
	}
	var me struct {
		User    string `json:"user"`
		Plan    string `json:"plan"`
		Windows []struct {
			Window    string `json:"window"`
			Kind      string `json:"kind"`
			Limit     int64  `json:"limit"`
			Used      int64  `json:"used"`
			Remaining int64  `json:"remaining"`
			ResetsAt  string `json:"resets_at"`
		} `json:"windows"`
	}
	if err := jsonDecode(e.get("/llm_gate/me", tk), &me); err != nil {
		t.Fatal(err)
	}
	recs := e.waitRecords("lee", 2)
	used := recs[0].PromptTokens + recs[0].CompletionTokens + recs[1].PromptTokens + recs[1].CompletionTokens
	if me.User != "lee" || me.Plan != "p" || len(me.Windows) != 2 {
		t.Fatalf("self-service %+v", me)
	}
	for _, w := range me.Windows {
		switch w.Kind {
		case "tokens":
			if w.Window != "day" || w.Limit != 5000 || w.Used != used || w.Remaining != 5000-w.Used || w.ResetsAt == "" {
				t.Fatalf("tokens window %+v, records %+v", w, recs)
			}
		case "requests":
			if w.Window != "minute" || w.Limit != 10 || w.Used != 2 {
				t.Fatalf("requests window %+v", w)
			}
		}
	}
}

// TestNoUpstream: a site whose route has nothing after llm_gate (no
// reverse_proxy) answers admitted requests with the upstream's
// OpenAI-shaped 502, not Caddy's empty 200, charges nothing and keeps the
// request's record with that status.
func TestNoUpstream(t *testing.T) {
	e := upstreamAs(t, "")
	tk := token(t, "nobody-behind", nil)
	for _, stream := range []bool{false, true} {
		resp := e.post("/v1/chat/completions", tk, chatBody("sim-model", stream, nil))
		b := mustStatus(t, resp, 502)
		if got := decodeError(t, b); got.Error.Code != "upstream_error" || got.Error.Type != "server_error" {
			t.Fatalf("stream %v: %s", stream, b)
		}
		if resp.Header.Get("X-Ratelimit-Limit-Tokens") != "5000" || resp.Header.Get("X-Ratelimit-Reset-Tokens") == "" {
			t.Fatalf("stream %v: the gate's 502 lacks the rate headers: %v", stream, resp.Header)
		}
	}
	if b := mustStatus(t, e.get("/v1/models", tk), 502); decodeError(t, b).Error.Code != "upstream_error" {
		t.Fatalf("GET /v1/models: %s", b)
	}
	e.uncharged(tk)
	recs := e.waitRecords("nobody-behind", 2)
	for _, r := range recs {
		if r.Status != 502 || r.PromptTokens != 0 || r.CompletionTokens != 0 {
			t.Fatalf("record %+v", r)
		}
	}
}

// TestUpstreamDown: a dead upstream gives an OpenAI-shaped 502 and charges
// nothing.
func TestUpstreamDown(t *testing.T) {
	e := upstreamAs(t, "reverse_proxy 127.0.0.1:1")
	tk := token(t, "max", nil)
	resp := e.post("/v1/chat/completions", tk, chatBody("sim-model", true, nil))
	b := mustStatus(t, resp, 502)
	if decodeError(t, b).Error.Code != "upstream_error" {
		t.Fatalf("%s", b)
	}
	if resp.Header.Get("X-Ratelimit-Limit-Tokens") != "5000" || resp.Header.Get("X-Ratelimit-Remaining-Tokens") == "" {
		t.Fatalf("the gate's 502 lacks the rate headers: %v", resp.Header)
	}
	// The paths handed on unmetered answer the same way, not an empty 502.
	if b := mustStatus(t, e.get("/v1/models", tk), 502); decodeError(t, b).Error.Code != "upstream_error" {
		t.Fatalf("GET /v1/models: %s", b)
	}
	e.uncharged(tk)
}

// upstreamAs starts the gate with a 5,000-token daily plan, then reloads it
// with proxy (a reverse_proxy line, or nothing) in place of the emulator's.
func upstreamAs(t *testing.T, proxy string) *env {
	t.Helper()
	global := "plan p {\n\t\t\ttokens 5000 per day\n\t\t}"
	e := newEnv(t, envOpts{global: global, site: "plan p"})
	file := strings.Replace(gateCaddyfile, "reverse_proxy {UPSTREAM}", proxy, 1)
	if err := e.caddy.Load(strings.NewReplacer("{GLOBAL}", global, "{SITE}", "plan p").Replace(file)); err != nil {
		t.Fatal(err)
	}
	return e
}

// uncharged checks that the caller of tk has nothing used or reserved in
// its one window.
func (e *env) uncharged(tk string) {
	e.t.Helper()
	var me struct {
		Windows []struct {
			Used     int64 `json:"used"`
			Reserved int64 `json:"reserved"`
		} `json:"windows"`
	}
	jsonDecode(e.get("/llm_gate/me", tk), &me)
	if len(me.Windows) != 1 || me.Windows[0].Used != 0 || me.Windows[0].Reserved != 0 {
		e.t.Fatalf("charged: %+v", me)
	}
}

// TestReserveFollowsModelLength: a request without max_tokens reserves, and
// is capped at, what the model can still produce (max_model_len − prompt)
// when that is less than reserve_output.
//
// The cap is left to vLLM, which stops at the end of the context by itself
// counting the prompt exactly: the emulator's template here starts with a
// BOS the gate's estimate does not count, so a cap of max_model_len −
// estimate would be one token too many and refused with a 400. The
// reservation covers what can be produced all the same; with a budget
// tighter than that, the budget's cap is set.
func TestReserveFollowsModelLength(t *testing.T) {
	e := newEnv(t, envOpts{
		sim:    vllmsim.Config{MaxModelLen: 300, DefaultLength: 1000, ChatBOS: true},
		global: "plan p {\n\t\t\ttokens 100000 per day\n\t\t}\n\t\tplan tight {\n\t\t\ttokens 150 per day\n\t\t}",
		site:   "plan p\n\t\treserve_output 4096",
	})
	resp := e.post("/v1/chat/completions", token(t, "quinn", nil), chatBody("sim-model", false, nil))
	remaining, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	b := mustStatus(t, resp, 200)
	var out struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	reqs := e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens != nil {
		t.Fatalf("upstream max_tokens %d; want none (the model's length binds)", *last.MaxTokens)
	}
	if out.Usage.PromptTokens+out.Usage.CompletionTokens != 300 {
		t.Fatalf("usage %+v; want the whole context used", out.Usage)
	}
	if held := 100000 - remaining; held < 295 || held > 300 {
		t.Fatalf("%d tokens held; want the context, 300, less the estimate's error", held)
	}

	// Several prompts without a cap: one cap serves them all, fitting the
	// longest one's context (vLLM refuses the request otherwise), and the
	// reservation covers it for every choice (the prompts' sum once bounded
	// them without a cap, and two prompts of 1 and ~100 tokens generated
	// ~500 tokens against ~400 reserved).
	long := strings.Repeat("the sea is wide and deep ", 16)
	resp = e.post("/v1/completions", token(t, "sam", nil), map[string]any{"model": "sim-model", "prompt": []string{"a", long}, "max_tokens": nil})
	remaining, _ = strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if err := json.Unmarshal(mustStatus(t, resp, 200), &out); err != nil {
		t.Fatal(err)
	}
	if held, used := 100000-remaining, out.Usage.PromptTokens+out.Usage.CompletionTokens; held < used || out.Usage.CompletionTokens < 300 {
		t.Fatalf("%d tokens held for a request that used %d (%+v)", held, used, out.Usage)
	}
	reqs = e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens == nil || int64(*last.MaxTokens)+out.Usage.PromptTokens > 300 {
		t.Fatalf("upstream max_tokens %v for prompts of %d tokens in a context of 300", last.MaxTokens, out.Usage.PromptTokens)
	}

	resp = e.post("/v1/chat/completions", token(t, "rita", map[string]any{"plan": "tight"}), chatBody("sim-model", false, nil))
	mustStatus(t, resp, 200)
	reqs = e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens == nil || *last.MaxTokens >= 150 {
		t.Fatalf("upstream max_tokens %v; want the budget's cap, under 150", last.MaxTokens)
	}
}

// TestRequestBodies: the body is read whether its length is announced or
// chunked, a body over max_body_size is refused with 413 either way, and a
// body cut short of its Content-Length is a 400, not a truncated request.
func TestRequestBodies(t *testing.T) {
	e := newEnv(t, envOpts{site: "max_body_size 2KiB"})
	tok := token(t, "bodies", nil)
	small, err := json.Marshal(chatBody("sim-model", false, map[string]any{"max_tokens": 5}))
	if err != nil {
		t.Fatal(err)
	}
	large, err := json.Marshal(chatBody("sim-model", false, map[string]any{"max_tokens": 5, "user": strings.Repeat("x", 3000)}))
	if err != nil {
		t.Fatal(err)
	}
	send := func(body []byte, chunked bool) (int, string) {
		t.Helper()
		var rd io.Reader = bytes.NewReader(body)
		if chunked { // hide the length: the client sends it chunked
			rd = io.MultiReader(rd)
		}
		req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/chat/completions", rd)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		if chunked {
			req.ContentLength = -1
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(readAll(t, resp.Body))
	}
	for _, chunked := range []bool{false, true} {
		if code, b := send(small, chunked); code != 200 {
			t.Fatalf("chunked %v: small body: %d %s", chunked, code, b)
		}
		code, b := send(large, chunked)
		if code != 413 || !strings.Contains(b, `"code":"body_too_large"`) {
			t.Fatalf("chunked %v: large body: %d %s", chunked, code, b)
		}
	}
	if recs := e.records("bodies"); len(recs) != 2 {
		t.Fatalf("%d records, want one per accepted request (2)", len(recs))
	}

	// A client that announces more than it sends, then stops writing.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", tok, len(small)+50, small)
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp.Body); resp.StatusCode != 400 || !strings.Contains(string(b), "could not read the request body") {
		t.Fatalf("body cut short: %d %s", resp.StatusCode, b)
	}
	if n := len(e.sim.Requests()); n != 2 {
		t.Fatalf("the emulator saw %d requests, want 2", n)
	}
}

// TestCapsAsTheUpstreamAppliesThem: the gate reserves for, and leaves
// alone, the caps vLLM applies. A completions request without max_tokens
// gets vLLM's 16 tokens, so the gate reserves 16 and adds no max_tokens (it
// used to write in reserve_output, 256 times as much output); an explicit
// max_tokens of 0 reaches vLLM as 0 (it used to be raised to the reserve).
func TestCapsAsTheUpstreamAppliesThem(t *testing.T) {
	e := newEnv(t, envOpts{
		global: "plan p {\n\t\t\ttokens 100000 per day\n\t\t}",
		site:   "plan p\n\t\treserve_output 4096",
	})
	tk := token(t, "capped", nil)
	body := []byte(mustJSON(t, map[string]any{"model": "sim-model", "prompt": "Once upon a time"}))
	// Capped by vLLM's default and far from the budget, it is admitted on
	// a bound of its prompt (TestAdmissionOnABound).
	parsed, err := meter.ParseRequest(meter.EndpointCompletions, body)
	if err != nil {
		t.Fatal(err)
	}
	bound, _ := parsed.PromptBound(body)
	resp := e.post("/v1/completions", tk, body)
	remaining, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	mustStatus(t, resp, 200)
	reqs := e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens != nil {
		t.Fatalf("upstream max_tokens %d; want none (vLLM's default of 16)", *last.MaxTokens)
	}
	if held := 100000 - remaining; held != bound+16 {
		t.Fatalf("x-ratelimit-remaining-tokens %d: %d held; want the prompt's bound (%d) and 16", remaining, held, bound)
	}

	// An explicit null is no cap at all to vLLM: the gate caps it.
	mustStatus(t, e.post("/v1/completions", tk, map[string]any{"model": "sim-model", "prompt": "Once upon a time", "max_tokens": nil}), 200)
	reqs = e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens == nil || *last.MaxTokens != 4096 {
		t.Fatalf("upstream max_tokens %v; want the reserve, 4096", last.MaxTokens)
	}

	// vLLM's get_max_tokens reads `max_completion_tokens or max_tokens`:
	// a 0 in the first leaves the second to bind, so the gate caps it to
	// the budget. (The emulator follows VLLM.md's "the first unless null"
	// and refuses the 0; what matters is what reached it.)
	resp = e.post("/v1/chat/completions", tk, chatBody("sim-model", false, map[string]any{"max_completion_tokens": 0, "max_tokens": 1000000}))
	resp.Body.Close()
	reqs = e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens == nil || *last.MaxTokens >= 100000 {
		t.Fatalf("upstream max_tokens %v; want the budget's cap", last.MaxTokens)
	}
	// A cap member completions do not read is lowered too, in case the
	// upstream does read it.
	mustStatus(t, e.post("/v1/completions", tk, map[string]any{"model": "sim-model", "prompt": "Once", "max_completion_tokens": 1000000}), 200)
	reqs = e.sim.Requests()
	if last := reqs[len(reqs)-1]; !strings.Contains(string(last.Body), `"max_completion_tokens":16`) {
		t.Fatalf("upstream body %s; want max_completion_tokens lowered to 16", last.Body)
	}

	resp = e.post("/v1/chat/completions", tk, chatBody("sim-model", false, map[string]any{"max_tokens": 0}))
	resp.Body.Close()
	reqs = e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens == nil || *last.MaxTokens != 0 {
		t.Fatalf("upstream max_tokens %v; want the client's 0, not raised", last.MaxTokens)
	}
}

// llm_gate twice on a request's way (given twice in a site): the first
// takes the credential and meters the request; the second passes it on
// rather than refusing it for want of the credential the first removed.
func TestGateTwiceInASite(t *testing.T) {
	twice := strings.Replace(gateCaddyfile, "\treverse_proxy {UPSTREAM}", "\tllm_gate {\n\t\tjwt {\n\t\t\tsecret {SECRET}\n\t\t}\n\t}\n\treverse_proxy {UPSTREAM}", 1)
	e := newEnv(t, envOpts{file: twice})
	tk := token(t, "dup", nil)
	mustStatus(t, e.post("/v1/chat/completions", tk, chatBody("sim-model", false, map[string]any{"max_tokens": 3})), 200)
	mustStatus(t, e.post("/v1/chat/completions", tk, chatBody("sim-model", true, map[string]any{"max_tokens": 3})), 200)
	// Without a credential the first gate still refuses.
	b := mustStatus(t, e.post("/v1/chat/completions", "", chatBody("sim-model", false, nil)), 401)
	if decodeError(t, b).Error.Code != "missing_api_key" {
		t.Fatalf("%s", b)
	}
	e.waitRecords("dup", 2)
	time.Sleep(50 * time.Millisecond) // a second record per request would be there by now (flush 0)
	recs := e.records("dup")
	if len(recs) != 2 {
		t.Fatalf("%d records for 2 requests: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Status != 200 || r.PromptTokens == 0 || r.CompletionTokens != 3 {
			t.Fatalf("record %+v", r)
		}
	}
}

// The client's Accept-Encoding does not reach the upstream of a metered
// request: an upstream (or a proxy before it) that compressed the answer
// would leave its usage unread, and the request charged an estimate.
func TestMeteredRequestsAskForNoEncoding(t *testing.T) {
	got := make(chan string, 4)
	sim := vllmsim.New(vllmsim.Config{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Accept-Encoding")
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	e := newEnv(t, envOpts{file: strings.Replace(gateCaddyfile, "reverse_proxy {UPSTREAM}", "reverse_proxy "+up.URL, 1)})
	mustStatus(t, e.post("/v1/chat/completions", token(t, "gz", nil), chatBody("sim-model", false, map[string]any{"max_tokens": 3}), "Accept-Encoding", "gzip, deflate"), 200)
	// Go's transport may ask for gzip of its own: it then hands on the
	// answer decompressed, which the gate reads.
	if ae := <-got; ae != "" && ae != "gzip" {
		t.Fatalf("the upstream was asked for the client's Accept-Encoding %q", ae)
	}
}

// TestRequestWithoutModel: vLLM serves a request that names no model with
// its first served model. The gate checks the plan against that model,
// records it, and names it in the body it forwards; it no longer refuses
// a request without a model nor records an empty model.
func TestRequestWithoutModel(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{ModelNames: []string{"base-model", "sim-model"}}})
	if st := e.admin("PUT", "/llm_gate/users/pat", map[string]any{"models": []string{"sim-*"}}, nil); st != 201 {
		t.Fatalf("PUT user: %d", st)
	}
	body := chatBody("", false, nil)
	delete(body, "model")
	b := mustStatus(t, e.post("/v1/chat/completions", token(t, "pat", nil), body), 403)
	if got := decodeError(t, b); got.Error.Code != "model_not_allowed" || !strings.Contains(got.Error.Message, "`base-model`") {
		t.Fatalf("%s", b)
	}
	if st := e.admin("PATCH", "/llm_gate/users/pat", map[string]any{"models": []string{"base-*"}}, nil); st != 200 {
		t.Fatalf("PATCH: %d", st)
	}
	for _, user := range []string{"pat", "unrestricted"} {
		mustStatus(t, e.post("/v1/chat/completions", token(t, user, nil), body), 200)
		reqs := e.sim.Requests()
		if up := string(reqs[len(reqs)-1].Body); !strings.Contains(up, `"model":"base-model"`) {
			t.Fatalf("%s: upstream body %s", user, up)
		}
		if r := e.waitRecords(user, 1)[0]; r.Model != "base-model" || r.PromptTokens == 0 {
			t.Fatalf("%s: record %+v", user, r)
		}
	}
}

// TestCapNearContextEnd: with the estimated prompt count, a request without
// max_tokens whose prompt is just past max_model_len − reserve_output (and
// whose estimate, short of the template's tool preamble, is just before it)
// is served: the gate leaves the cap to vLLM within the estimate's error of
// the context's end, where max_tokens = reserve_output would be more than
// the real prompt leaves and refused with a 400.
func TestCapNearContextEnd(t *testing.T) {
	e := newEnv(t, envOpts{
		sim:    vllmsim.Config{MaxModelLen: 8192, DefaultLength: 9000},
		global: "plan p {\n\t\t\ttokens 100000 per day\n\t\t}",
		site:   "plan p\n\t\treserve_output 4096",
	})
	tools := []map[string]any{{"type": "function", "function": map[string]any{
		"name": "get_weather", "description": "Weather at a place",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	}}}
	body := func(n int) map[string]any {
		return chatBody("sim-model", false, map[string]any{
			"messages": []map[string]any{{"role": "user", "content": strings.Repeat(" river", n)}},
			"tools":    tools,
		})
	}
	count := func(n int) int64 { // the real prompt, as vLLM renders it
		t.Helper()
		b, _ := json.Marshal(body(n))
		resp, err := http.Post(e.simURL+"/tokenize", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Count int64 `json:"count"`
		}
		if err := json.Unmarshal(mustStatus(t, resp, 200), &out); err != nil {
			t.Fatal(err)
		}
		return out.Count
	}
	n := int(8192-4096+1-count(1)) + 1
	if c := count(n); c != 8192-4096+1 {
		t.Fatalf("prompt of %d tokens; the test wants 4097", c)
	}
	resp := e.post("/v1/chat/completions", token(t, "nell", nil), body(n))
	remaining, _ := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	var out struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(mustStatus(t, resp, 200), &out); err != nil {
		t.Fatal(err)
	}
	reqs := e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.MaxTokens != nil && int64(*last.MaxTokens)+out.Usage.PromptTokens > 8192 {
		t.Fatalf("upstream max_tokens %d past the context", *last.MaxTokens)
	}
	if used, held := out.Usage.PromptTokens+out.Usage.CompletionTokens, 100000-remaining; used != 8192 || held < used {
		t.Fatalf("used %d (%+v), %d held; want the whole context, held", used, out.Usage, held)
	}

}
