package meter

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// meterResult is everything a StreamMeter reports.
type meterResult struct {
	out      []byte
	usage    Usage
	usageOK  bool
	final    bool
	err      UpstreamError
	hasErr   bool
	done     bool
	first    bool
	estimate int64
	prompt   int64 // PromptReported, -1 if none
	// templated counts the chunks read through the template; sameResult
	// leaves it out, since the point is that it changes nothing else.
	templated int
}

func runMeter(t testing.TB, ep Endpoint, hide bool, chunks [][]byte) meterResult {
	return runMeterWith(t, ep, hide, chunks, false)
}

// runMeterWith runs a meter with its chunk template on or off.
func runMeterWith(t testing.TB, ep Endpoint, hide bool, chunks [][]byte, noTemplate bool) meterResult {
	m := NewStreamMeter(ep, hide, byteCounter{})
	m.noTemplate = noTemplate
	var r meterResult
	r.out = feedChunks(t, m, chunks)
	r.usage, r.usageOK = m.Usage()
	r.final = m.UsageFinal()
	if e := m.Err(); e != nil {
		r.err, r.hasErr = *e, true
	}
	r.done, r.first, r.estimate = m.Done(), m.FirstToken(), m.EstimateCompletion()
	r.templated = m.templated
	r.prompt = -1
	if n, ok := m.PromptReported(); ok {
		r.prompt = n
	}
	return r
}

func sameResult(a, b meterResult) bool {
	return bytes.Equal(a.out, b.out) && a.usage == b.usage && a.usageOK == b.usageOK &&
		a.final == b.final && a.err == b.err && a.hasErr == b.hasErr && a.done == b.done &&
		a.first == b.first && a.estimate == b.estimate && a.prompt == b.prompt
}

// FuzzStreamMeter feeds any stream in one write and in a random split of it:
// both must emit the same bytes and find the same usage, error, end and text.
// Without hiding, the output must be the input.
func FuzzStreamMeter(f *testing.F) {
	for i, c := range streamCases {
		in := c.join(false)
		f.Add(in, uint64(i), true, uint8(c.ep))
		f.Add(bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n")), uint64(i)*7, false, uint8(c.ep))
		f.Add(bytes.ReplaceAll(in, []byte("\n"), []byte("\r")), uint64(i)*13, true, uint8(c.ep))
	}
	f.Add([]byte("data: x\r"), uint64(1), true, uint8(0))
	f.Add([]byte("event: content_block_delta\ndata: {\"delta\":{\"text\":\"x\"}}\n\ndata: {\"delta\":{\"text\":\"y\"}}\n\n"), uint64(3), false, uint8(EndpointMessages))
	f.Add([]byte("\r\n\r\n:\r\r\ndata"), uint64(2), true, uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64, hide bool, ep uint8) {
		e := Endpoint(ep % (uint8(EndpointMessages) + 1))
		whole := runMeter(t, e, hide, [][]byte{in})
		if walked := runMeterWith(t, e, hide, [][]byte{in}, true); !sameResult(whole, walked) {
			t.Fatalf("the chunk template changed the result:\ntemplate %+v\nwalk     %+v", whole, walked)
		}
		if !hide && !bytes.Equal(whole.out, in) {
			t.Fatalf("pass-through changed the stream:\n%q\n%q", in, whole.out)
		}
		if len(whole.out) > len(in) {
			t.Fatalf("emitted %d bytes of %d", len(whole.out), len(in))
		}
		rng := rand.New(rand.NewPCG(seed, seed>>32))
		var chunks [][]byte
		for rest := in; len(rest) > 0; {
			n := rng.IntN(len(rest) + 1)
			if rng.IntN(4) == 0 {
				n = min(n, 3) // many tiny pieces: splits inside CRLF and keys
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		split := runMeter(t, e, hide, chunks)
		if !sameResult(whole, split) {
			t.Fatalf("split %q:\nwhole %+v\nsplit %+v", chunks, whole, split)
		}
	})
}

// FuzzStreamTemplate puts each NUL-separated piece of values between the
// same bytes (pre and suf: a chunk shape, any bytes the fuzzer makes of one),
// one chunk per piece: reading through the template must give what the full
// walk of every chunk gives.
func FuzzStreamTemplate(f *testing.F) {
	for _, sh := range templateShapes {
		f.Add(sh[0], sh[1], []byte("\"a\"\x00\" b\"\x00\"\\\"\"\x00\"c\",\"d\":1\x00\"\\\\\""), true)
		f.Add(sh[0], sh[1], []byte("\"x\"\x00null\x00\"y\"\x00\"\n\"\x00\"\u00e9\""), false)
	}
	f.Add(`{"choices":[{"delta":{"content":`, `}}],"error":{"message":"boom"}}`, []byte("\"a\"\x00\"b\""), true)
	f.Add(`{"type":"x","choices":[{"text":`, `}]}`, []byte("\"a\"\x00\"b\""), false)
	f.Add(`{"choices":[{"text":`, `}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`, []byte("\"a\"\x00\"b\""), true)
	f.Fuzz(func(t *testing.T, pre, suf string, values []byte, hide bool) {
		if strings.ContainsAny(pre+suf, "\r\n") {
			return // a shape is one data line
		}
		in := templateStream([2]string{pre, suf}, strings.Split(string(values), "\x00"))
		got := runMeter(t, EndpointChat, hide, [][]byte{in})
		want := runMeterWith(t, EndpointChat, hide, [][]byte{in}, true)
		if !sameResult(got, want) {
			got.out, want.out = nil, nil
			t.Fatalf("stream %q:\ntemplate %+v\nwalk     %+v", in, got, want)
		}
	})
}

var lineBreak = regexp.MustCompile(`\r\n|\r|\n`)

// FuzzStreamEvent checks what the meter reads from one event's JSON against
// the same rules applied with encoding/json.
func FuzzStreamEvent(f *testing.F) {
	for _, c := range streamCases {
		for _, e := range c.events {
			for _, line := range bytes.Split([]byte(e.raw), []byte("\n")) {
				if p, ok := bytes.CutPrefix(line, []byte("data: ")); ok && json.Valid(p) {
					f.Add(p)
				}
			}
		}
	}
	f.Add([]byte(`{"choices":[{"index":1,"delta":{"content":"a","content":"b"}}],"usage":{"prompt_tokens":1.0e1,"prompt_tokens":2,"completion_tokens":-3}}`))
	f.Add([]byte(`{"choices":[{"index":"1","text":"\ud800\u0041\udc00 \xff"}],"usage":{}}`))
	f.Add([]byte(`{"type":"response\u002ecompleted","response":{"usage":{"input_tokens":3},"usage":null}}`))
	f.Add([]byte(`{"error":null,"choices":null,"usage":[1]}`))
	f.Add([]byte(`{"id":"x","usage":{"prompt_tokens":1,"completion_tokens":2}}`))
	f.Add([]byte(`{"choices":{},"usage":{"prompt_tokens":1}}`))
	f.Add([]byte(` { "choices" : [ ] , "usage" : { "total_tokens" : 9 } } `))
	// The choices are read in place: what a later member replaces or voids
	// must be taken back.
	f.Add([]byte(`{"choices":[{"delta":{"content":"abc"}}],"choices":[{"delta":{"content":"de"}}]}`))
	f.Add([]byte(`{"choices":[{"delta":{"content":"abc"}}],"choices":null}`))
	f.Add([]byte(`{"choices":[{"delta":{"content":"abc"}}],"error":{"message":"boom"}}`))
	f.Add([]byte(`{"choices":[{"text":"abc"}],"type":"response.created"}`))
	f.Add([]byte(`{"choices":[{"delta":{"content":"abc"},"delta":{"content":"z"}},{"message":{"content":"q"},"message":7}]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if !json.Valid(payload) {
			return
		}
		var ev []byte
		for _, line := range lineBreak.Split(string(payload), -1) {
			ev = append(ev, "data: "+line+"\n"...)
		}
		ev = append(ev, '\n')
		got := runMeter(t, EndpointChat, true, [][]byte{ev})
		want := refEvent(payload)
		wantOut := ev
		if want.usageOnly {
			wantOut = nil
		}
		var wantErr UpstreamError
		if want.err != nil {
			wantErr = *want.err
		}
		if !bytes.Equal(got.out, wantOut) || got.usage != want.usage || got.usageOK != want.usageOK ||
			got.final != want.final || got.hasErr != (want.err != nil) || got.err != wantErr ||
			got.done != want.done || got.estimate != int64(len(want.text)) || got.first != (want.text != "") {
			t.Fatalf("payload %s\ngot  %+v\nwant %+v", payload, got, want)
		}
	})
}

// FuzzJSONMeter checks a JSONMeter against encoding/json on whole bodies,
// and that any split of a body gives the same result as one write.
func FuzzJSONMeter(f *testing.F) {
	for _, b := range jsonBodies {
		f.Add([]byte(b.body), uint64(len(b.body)))
	}
	f.Add([]byte(`{"usage":{"prompt_tokens":1},"usage":null}`), uint64(3))
	f.Add([]byte(`{"\u0075sage":{"prompt_tokens":1}, "x":"\"}", "error":{"code":"c"}}`), uint64(5))
	f.Add([]byte(`{"object":"error","message":{"a":[1,2]},"code":"400"}`), uint64(9))
	f.Add([]byte(`{"usage":{"prompt_tokens":1}, "s":"\\\"]", "o":{"k":["}",{"\\\\":"["}]}, "n":-1e3}`), uint64(4))
	f.Fuzz(func(t *testing.T, body []byte, seed uint64) {
		whole := NewJSONMeter()
		whole.Write(body)
		split := NewJSONMeter()
		rng := rand.New(rand.NewPCG(seed, 1))
		for rest := body; len(rest) > 0; {
			n := rng.IntN(min(len(rest), 16) + 1)
			split.Write(rest[:n])
			rest = rest[n:]
		}
		u1, ok1 := whole.Usage()
		u2, ok2 := split.Usage()
		e1, e2 := whole.Err(), split.Err()
		if u1 != u2 || ok1 != ok2 || (e1 == nil) != (e2 == nil) || e1 != nil && *e1 != *e2 {
			t.Fatalf("split differs: %+v %v %+v / %+v %v %+v", u1, ok1, e1, u2, ok2, e2)
		}
		if !json.Valid(body) {
			return
		}
		ru, rok, re := refBody(body)
		if u1 != ru || ok1 != rok || (e1 == nil) != (re == nil) || e1 != nil && *e1 != *re {
			t.Fatalf("body %s\ngot  %+v %v %+v\nwant %+v %v %+v", body, u1, ok1, e1, ru, rok, re)
		}
		tail := NewJSONMeter()
		tail.WriteWhole(body)
		u3, ok3 := tail.Usage()
		if e3 := tail.Err(); u3 != ru || ok3 != rok || (e3 == nil) != (re == nil) || e3 != nil && *e3 != *re {
			t.Fatalf("WriteWhole, body %s\ngot  %+v %v %+v\nwant %+v %v %+v", body, u3, ok3, e3, ru, rok, re)
		}
	})
}

// FuzzScanner walks any valid JSON value with the scanner and compares every
// object, array and string with what encoding/json decodes.
func FuzzScanner(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":[true,null,"x\"y"],"a":{"c":"\u00e9\ud83d\ude00"}}`))
	f.Add([]byte(`[ 1 , -2.5e3 , "\\" , {} , [] ]`))
	f.Add([]byte(`"\/\b\f\n\r\t"`))
	f.Add([]byte(`{"k\u0065y" : "v"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			// Malformed input must not crash the scanner.
			if it, ok := newObjIter(in); ok {
				for {
					if _, _, more := it.next(); !more {
						break
					}
				}
			}
			arrayLen(in)
			return
		}
		compareValue(t, trimSpace(in))
	})
}

func compareValue(t *testing.T, v []byte) {
	t.Helper()
	if end := skipValue(v, 0); end != len(v) {
		t.Fatalf("skipValue(%s) = %d, want %d", v, end, len(v))
	}
	switch v[0] {
	case '"':
		var want string
		if err := json.Unmarshal(v, &want); err != nil {
			t.Fatal(err)
		}
		body, _ := stringBody(v)
		if got := string(appendUnescaped(nil, body)); got != want {
			t.Fatalf("unescape %s = %q, want %q", v, got, want)
		}
	case '{':
		var want map[string]json.RawMessage
		if err := json.Unmarshal(v, &want); err != nil {
			t.Fatal(err)
		}
		got := map[string][]byte{}
		it, _ := newObjIter(v)
		for {
			key, val, more := it.next()
			if !more {
				break
			}
			if !bytes.Equal(v[it.vs:it.ve], val) {
				t.Fatal("value offsets do not match the value")
			}
			got[string(appendUnescaped(nil, key))] = val
			compareValue(t, val)
		}
		if it.bad || len(got) != len(want) {
			t.Fatalf("object %s: %d members, want %d (bad %v)", v, len(got), len(want), it.bad)
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || !bytes.Equal(g, bytes.TrimSpace(w)) {
				t.Fatalf("object %s: member %q = %s, want %s", v, k, g, w)
			}
			// member matches keys as written (after unescaping); a key with
			// invalid UTF-8, which encoding/json replaces, is not one it is
			// asked for.
			if !strings.ContainsRune(k, utf8.RuneError) && string(member(v, k)) != string(bytes.TrimSpace(w)) {
				t.Fatalf("member(%q) differs", k)
			}
		}
	case '[':
		var want []json.RawMessage
		if err := json.Unmarshal(v, &want); err != nil {
			t.Fatal(err)
		}
		if n := arrayLen(v); n != len(want) {
			t.Fatalf("arrayLen(%s) = %d, want %d", v, n, len(want))
		}
		it, _ := newArrIter(v)
		for {
			el, more := it.next()
			if !more {
				break
			}
			compareValue(t, el)
		}
	default:
		var f float64
		if json.Unmarshal(v, &f) == nil {
			n, ok := parseInt(v)
			wn, wok := refInt(v)
			if n != wn || ok != wok {
				t.Fatalf("parseInt(%s) = %d %v, want %d %v", v, n, ok, wn, wok)
			}
		}
	}
}

// FuzzValid: valid agrees with encoding/json.Valid on every input.
// valid is validMembers without the members.
func valid(b []byte) bool {
	_, ok := validMembers(b, nil)
	return ok
}

func FuzzValid(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, ` {"a" : [1, -2.5e+3, true, false, null, "x\u00e9\n"]} `, `{"a":{}}`, `[[[]]]`,
		`01`, `-`, `1.`, `.5`, `1e`, `+1`, `"\x"`, `"\u12"`, "\"a\x01\"", `{"a"}`, `{"a":}`, `[1,]`, `{,}`,
		`truex`, `nul`, `"unterminated`, `{"a":1}x`, "\"\xff\xfe\"", `[1 2]`, `{"a":1 "b":2}`, ``, ` `,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("valid(%q) = %v, json.Valid says %v", b, got, want)
		}
		checkTopMembers(t, b)
	})
}

// checkTopMembers compares the top-level members validMembers records with
// those the lenient scanner walks (members), for every valid object.
func checkTopMembers(t *testing.T, b []byte) {
	t.Helper()
	got, ok := validMembers(b, []topMember{})
	if ok != json.Valid(b) {
		t.Fatalf("validMembers(%q) = %v, json.Valid says %v", b, ok, !ok)
	}
	if !ok || !isObject(b) {
		if len(got) != 0 && !isObject(b) {
			t.Fatalf("validMembers(%q) recorded members of a non-object", b)
		}
		return
	}
	var kb [maxKeyBytes]byte
	k := 0
	for key, val := range members(b, nil) {
		if k >= len(got) {
			t.Fatalf("validMembers(%q) recorded %d members, members() walks more", b, len(got))
		}
		m := got[k]
		if gk := keyName(b[m.ks:m.ke], &kb); string(gk) != string(key) || string(b[m.vs:m.ve]) != string(val) {
			t.Fatalf("member %d of %q: recorded %q: %q, members() %q: %q", k, b, gk, b[m.vs:m.ve], key, val)
		}
		k++
	}
	if k != len(got) {
		t.Fatalf("validMembers(%q) recorded %d members, members() walks %d", b, len(got), k)
	}
}

// TestValidMembers: the members recorded while validating are those the
// lenient scanner finds, nested containers, escapes, spaces and duplicate
// keys included.
func TestValidMembers(t *testing.T) {
	for _, s := range []string{
		`{}`, ` { } `, `{"a":1}`, ` {"a" : 1 , "b":[1,{"c":2}] ,"d":{} , "e":"x\"}" } `, `{"a":{"b":{"c":[]}},"a":null}`,
		`{"k\u00e9y":"v","":true,"n":-1.5e3}`, `[{"a":1}]`, `"s"`, `{"a":1,}`, `{"a":[1,2}`,
	} {
		checkTopMembers(t, []byte(s))
	}
	ms, ok := validMembers([]byte(`{"model":"m","messages":[{"role":"user"}]}`), []topMember{})
	if !ok || len(ms) != 2 {
		t.Fatalf("members %v", ms)
	}
}

// TestValidStringRuns puts each byte that ends a plain run (and some that do
// not) at every offset of strings up to 40 bytes long, so that the
// eight-at-a-time scan meets it in every lane, and checks valid against
// encoding/json.Valid.
func TestValidStringRuns(t *testing.T) {
	for _, c := range []string{`"`, `\`, `\"`, `\\`, `\n`, `\u00e9`, "\x00", "\x01", "\x1f", " ", "\x7f", "é", "\xff", "\x80"} {
		for n := 0; n <= 40; n++ {
			for at := 0; at <= n; at++ {
				s := `"` + strings.Repeat("a", at) + c + strings.Repeat("b", n-at) + `"`
				for _, b := range []string{s, `{"k":` + s + `}`, `[` + s + `,1]`} {
					if got, want := valid([]byte(b)), json.Valid([]byte(b)); got != want {
						t.Fatalf("valid(%q) = %v, json.Valid says %v", b, got, want)
					}
				}
			}
		}
	}
}

// FuzzParseUsage checks that the one-loop reading of a usage object, wherever
// it answers, answers as the general walk does.
func FuzzParseUsage(f *testing.F) {
	for _, s := range []string{
		`{"prompt_tokens":27,"total_tokens":43,"completion_tokens":16,"prompt_tokens_details":null,"completion_tokens_details":null}`,
		`{"input_tokens":5,"output_tokens":7}`,
		`{"input_tokens":5,"cache_read_input_tokens":9223372036854775807,"cache_creation_input_tokens":3,"output_tokens":7}`,
		` { "prompt_tokens" : 1 , "prompt_tokens" : 2 } `,
		`{}`, `{"prompt_tokens":null}`, `{"prompt_tokens":012}`, `{"prompt_tokens":-1}`,
		`{"prompt_tokens":1.5}`, `{"prompt\u005ftokens":3}`, `{"prompt_tokens_details":{"cached_tokens":4}}`,
		`{"total_tokens":99999999999999999999}`, `{"a":1,}`, `{"a":1} x`, `{"a"1}`, `{"a":nul}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		var fl usageFields
		if !fl.readFast(v) {
			return
		}
		got := fl.usage()
		wf, ok := walkUsage(v)
		if want := wf.usage(); !ok || got != want {
			t.Fatalf("usage %q: fast %+v, walk %+v %v", v, got, wf.usage(), ok)
		}
	})
}

// promptBoundSeeds are chat and completions bodies where the estimate comes
// closest to the body's size: one-byte strings, empty and non-object
// elements, object parts with nothing in them, token ids, escapes that
// decode to more tokens than characters, and tools.
var promptBoundSeeds = []struct {
	ep   Endpoint
	body string
}{
	{EndpointChat, `{"messages":[{"role":"user","content":"Hello there"}]}`},
	{EndpointChat, `{"messages":[{}]}`},
	{EndpointChat, `{"messages":[{},{},{}]}`},
	{EndpointChat, `{"messages":[1,2,3,4,5,6,7,8,9]}`},
	{EndpointChat, `{"messages":["a","b",null,[],[1]]}`},
	{EndpointChat, `{"messages":[{"role":"a","name":"b","content":[{},{},"c",{"text":"d"},{"type":"image_url"}]}]}`},
	{EndpointChat, `{"messages":[{"role":"user","content":"\u00e9\ud83d\ude00\n\t\"x\" \u4e2d\u6587 \u0000\u0001"}]}`},
	{EndpointChat, `{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{}"}}],"function_call":{"name":"g","arguments":"1"}}],"tools":[{"type":"function","function":{"name":"f"}}],"functions":[{"name":"g"}]}`},
	{EndpointCompletions, `{"prompt":[1,2,3,4,5,6,7,8,9,0]}`},
	{EndpointCompletions, `{"prompt":[[1],[2,3],[],[4,5,6]]}`},
	{EndpointCompletions, `{"prompt":["a","b","","c"]}`},
	{EndpointCompletions, `{"prompt":"` + strings.Repeat(`\u00e9`, 50) + `"}`},
	{EndpointCompletions, `{"prompt":[{"content":"x"},{}]}`},
}

// FuzzPromptBound: for any body the gate admits on a chat or completions
// path, PromptBound is at least the estimate, by the tokenizer and by the
// rule of thumb (the admission of a request whose prompt is not counted
// rests on it).
func FuzzPromptBound(f *testing.F) {
	for _, s := range promptBoundSeeds {
		f.Add(uint8(s.ep), []byte(s.body))
	}
	tk := cl100k(f)
	f.Fuzz(func(t *testing.T, ep uint8, body []byte) {
		e := EndpointChat
		if ep%2 == 1 {
			e = EndpointCompletions
		}
		r, err := ParseRequest(e, body)
		if err != nil {
			return
		}
		bound, ok := r.PromptBound(body)
		if !ok {
			t.Fatalf("no bound for %v", e)
		}
		for _, c := range []Counter{tk, nil} {
			if est := r.EstimatePrompt(c); est > bound {
				t.Fatalf("%v %q: estimate %d > bound %d (counter %T)", e, body, est, bound, c)
			}
		}
	})
}

// TestPromptBound: the bound is reached within a few times by dense bodies
// (so it is not so loose that admission by it would rarely apply) and is
// refused for the endpoints whose estimate it does not bound.
func TestPromptBound(t *testing.T) {
	tk := cl100k(t)
	for _, s := range promptBoundSeeds {
		r, err := ParseRequest(s.ep, []byte(s.body))
		if err != nil {
			continue // a seed the parser refuses is the fuzzer's
		}
		bound, ok := r.PromptBound([]byte(s.body))
		if est := r.EstimatePrompt(tk); !ok || est > bound {
			t.Errorf("%q: estimate %d, bound %d, %v", s.body, est, bound, ok)
		}
	}
	body := []byte(`{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"Write one short sentence about the sea, please."}]}`)
	r, err := ParseRequest(EndpointChat, body)
	if err != nil {
		t.Fatal(err)
	}
	if bound, _ := r.PromptBound(body); bound != 2*int64(len(body))+2*MediaPartTokens+3 {
		t.Fatalf("bound %d for %d bytes with two braces", bound, len(body))
	}
	for _, ep := range []Endpoint{EndpointEmbeddings, EndpointRerank, EndpointScore, EndpointResponses, EndpointMessages, EndpointChatBatch} {
		r := &Request{Endpoint: ep}
		if _, ok := r.PromptBound([]byte(`{}`)); ok {
			t.Errorf("%v: a bound", ep)
		}
	}
}
