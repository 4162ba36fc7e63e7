package vllmsim

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// The chat template must count like OpenAI's cookbook estimate: 3 per
// message plus role (and 1 + name), plus 3 for the generation prompt.
func TestRenderChatMatchesCookbook(t *testing.T) {
	tok := cl100k(t)
	type msg struct{ role, name, content string }
	for _, msgs := range [][]msg{
		{{role: "user", content: "Hello"}},
		{{role: "system", content: "You are terse."}, {role: "user", content: "Count to three, please: 1 2 3 …"}},
		{{role: "user", name: "bob", content: "hi"}, {role: "assistant", content: ""}, {role: "tool", content: "{\"ok\":true}"}},
		{},
	} {
		var in []chatMessage
		want := 3
		for _, m := range msgs {
			c, _ := json.Marshal(m.content)
			in = append(in, chatMessage{Role: m.role, Name: m.name, Content: c})
			want += 3 + tok.Count(m.role) + tok.Count(m.content)
			if m.name != "" {
				want += 1 + tok.Count(m.name)
			}
		}
		for _, wantIDs := range []bool{false, true} {
			pb := promptBuilder{tok: tok, wantIDs: wantIDs}
			if err := renderChat(&pb, in, nil, true, false, "assistant"); err != nil {
				t.Fatal(err)
			}
			if pb.n != want {
				t.Errorf("%v: count %d, want %d", msgs, pb.n, want)
			}
			if wantIDs && len(pb.ids) != pb.n {
				t.Errorf("%d ids for count %d", len(pb.ids), pb.n)
			}
		}
	}
}

func TestRenderChatVariants(t *testing.T) {
	tok := cl100k(t)
	base := func(content string) []chatMessage {
		return []chatMessage{{Role: "user", Content: json.RawMessage(content)}}
	}
	count := func(msgs []chatMessage, tools string, addGen, cont bool) int {
		pb := promptBuilder{tok: tok}
		if err := renderChat(&pb, msgs, json.RawMessage(tools), addGen, cont, "assistant"); err != nil {
			t.Fatal(err)
		}
		return pb.n
	}
	plain := count(base(`"Hello world"`), "", true, false)
	if got := count(base(`[{"type":"text","text":"Hello world"},{"type":"image_url","image_url":{"url":"x"}}]`), "", true, false); got != plain {
		t.Errorf("content parts: %d, want %d", got, plain)
	}
	if got := count(base(`null`), "", true, false); got != plain-tok.Count("Hello world") {
		t.Errorf("null content: %d", got)
	}
	if got := count(base(`"Hello world"`), "", false, false); got != plain-3 {
		t.Errorf("no generation prompt: %d, want %d", got, plain-3)
	}
	if got := count(base(`"Hello world"`), "", false, true); got != plain-4 {
		t.Errorf("continue_final_message: %d, want %d", got, plain-4)
	}
	tools := `[ {"type": "function", "function": {"name": "f"}} ]`
	if got, want := count(base(`"Hello world"`), tools, true, false), plain+4+tok.Count(`[{"type":"function","function":{"name":"f"}}]`); got != want {
		t.Errorf("tools: %d, want %d", got, want)
	}
	calls := []chatMessage{{Role: "assistant"}}
	calls[0].ToolCalls = append(calls[0].ToolCalls, calls[0].ToolCalls...)
	_ = json.Unmarshal([]byte(`{"role":"assistant","tool_calls":[{"function":{"name":"get","arguments":"{\"a\":1}"}}]}`), &calls[0])
	if got, want := count(calls, "", true, false), 3+1+tok.Count("get")+tok.Count(`{"a":1}`)+3; got != want {
		t.Errorf("tool calls: %d, want %d", got, want)
	}
	pb := promptBuilder{tok: tok}
	if err := renderChat(&pb, base(`42`), nil, true, false, "assistant"); err == nil {
		t.Error("numeric content accepted")
	}
	if err := renderChat(&pb, nil, json.RawMessage(`[oops`), true, false, "assistant"); err == nil {
		t.Error("bad tools accepted")
	}
}

func TestParsePrompts(t *testing.T) {
	for _, tc := range []struct {
		in    string
		n     int
		isIDs bool
		ok    bool
	}{
		{`"hello"`, 1, false, true},
		{`["a","b"]`, 2, false, true},
		{`[1,2,3]`, 1, true, true},
		{`[[1,2],[3]]`, 2, true, true},
		{`[]`, 0, false, false},
		{`[[]]`, 0, false, false},
		{`null`, 0, false, false},
		{`42`, 0, false, false},
		{`[1,"a"]`, 0, false, false},
		{`["a",1]`, 0, false, false},
		{`[{"a":1}]`, 0, false, false},
	} {
		got, err := parsePrompts(json.RawMessage(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.in, err)
			continue
		}
		if tc.ok && (len(got) != tc.n || got[0].isIDs != tc.isIDs) {
			t.Errorf("%s: %+v", tc.in, got)
		}
	}
}

func FuzzParsePrompts(f *testing.F) {
	for _, s := range []string{`"x"`, `["a","b"]`, `[1,2]`, `[[1],[2,3]]`, `[`, `[[1],"a"]`, `{}`} {
		f.Add([]byte(s))
	}
	tok := cl100k(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		prompts, err := parsePrompts(b)
		if err != nil {
			return
		}
		if len(prompts) == 0 {
			t.Fatal("no prompts and no error")
		}
		for _, p := range prompts {
			if p.count(tok) < 0 {
				t.Fatal("negative count")
			}
		}
	})
}

func TestResponsesMessages(t *testing.T) {
	instr := "Be brief."
	msgs, err := responsesMessages(&instr, json.RawMessage(`"hi"`))
	if err != nil || len(msgs) != 2 || msgs[0].Role != "system" || msgs[1].Role != "user" {
		t.Fatalf("%+v %v", msgs, err)
	}
	msgs, err = responsesMessages(nil, json.RawMessage(`[
		{"role":"user","content":[{"type":"input_text","text":"q"}]},
		{"type":"function_call","name":"f","arguments":"{}"},
		{"type":"function_call_output","output":"42"},
		{"type":"reasoning"}]`))
	if err != nil || len(msgs) != 3 || msgs[1].Role != "assistant" || msgs[2].Role != "tool" {
		t.Fatalf("%+v %v", msgs, err)
	}
	for _, bad := range []string{``, `null`, `{}`} {
		if _, err := responsesMessages(nil, json.RawMessage(bad)); err == nil {
			t.Errorf("input %q accepted", bad)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	h := http.Header{}
	h.Set("X-Sim-Length", "7")
	h.Set("X-Sim-Error-After", "0")
	h.Set("X-Sim-Crash-After", "3")
	h.Set("X-Sim-Status", "503")
	h.Set("X-Sim-TTFT", "1.5s")
	h.Set("X-Sim-TPS", "12.5")
	h.Set("X-Sim-Chunk", "4")
	ov, err := parseOverrides(h)
	if err != nil {
		t.Fatal(err)
	}
	want := simOverrides{length: 7, errorAfter: 0, crashAfter: 3, status: 503, ttft: 1500 * time.Millisecond, hasTTFT: true, tps: 12.5, hasTPS: true, chunk: 4}
	if ov != want {
		t.Fatalf("%+v, want %+v", ov, want)
	}
	if ov, _ := parseOverrides(http.Header{"X-Sim-Ttft": {"250"}}); ov.ttft != 250*time.Millisecond {
		t.Errorf("ms TTFT = %v", ov.ttft)
	}
	for name, v := range map[string]string{
		"X-Sim-Length": "0", "X-Sim-Error-After": "-1", "X-Sim-Status": "200", "X-Sim-Chunk": "x",
		"X-Sim-TTFT": "-5ms", "X-Sim-TPS": "-1",
	} {
		if _, err := parseOverrides(http.Header{http.CanonicalHeaderKey(name): {v}}); err == nil {
			t.Errorf("%s: %s accepted", name, v)
		}
	}
	for _, v := range []string{"600", "abc"} {
		if _, err := parseOverrides(http.Header{"X-Sim-Status": {v}}); err == nil {
			t.Errorf("status %s accepted", v)
		}
	}
	for _, v := range []string{"soon", "-1"} {
		if _, err := parseOverrides(http.Header{"X-Sim-Ttft": {v}}); err == nil {
			t.Errorf("ttft %s accepted", v)
		}
	}
}

func TestBuckets125(t *testing.T) {
	got := buckets125(120)
	want := []int64{1, 2, 5, 10, 20, 50, 100}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v", got)
		}
	}
}
