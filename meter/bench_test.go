package meter

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// chatStreamEvents is a realistic chat stream, one event per write as vLLM
// sends them: a role chunk, n content chunks (newer-vLLM shape with
// token_ids, some text escaped), the finishing chunk, the usage chunk and
// [DONE].
func chatStreamEvents(n int, continuous bool) [][]byte {
	words := []string{"The", " model", " answers", ",", " \"quoted\"", "\\n", " café", " 数据", " and", " more", "."}
	usage := func(c int) string {
		if !continuous {
			return ""
		}
		return `,"usage":{"prompt_tokens":312,"total_tokens":` + strconv.Itoa(312+c) + `,"completion_tokens":` + strconv.Itoa(c) + `}`
	}
	var evs [][]byte
	add := func(e ev) { evs = append(evs, []byte(e.raw)) }
	add(chat(0, `{"role":"assistant","content":""}`, "", usage(0)))
	for i := range n {
		add(data(`{` + chatHdr + `,"choices":[{"index":0,"delta":{"content":"` + words[i%len(words)] +
			`"},"logprobs":null,"finish_reason":null,"token_ids":null}]` + usage(i+1) + `}`))
	}
	add(chat(0, `{"content":""}`, "stop", usage(n)))
	add(usageEv(`{` + chatHdr + `,"choices":[],"usage":{"prompt_tokens":312,"total_tokens":` + strconv.Itoa(312+n) + `,"completion_tokens":` + strconv.Itoa(n) + `}}`))
	evs = append(evs, []byte(done))
	return evs
}

// responsesStreamEvents is a Responses API stream with n text deltas.
func responsesStreamEvents(n int) [][]byte {
	var evs [][]byte
	add := func(e ev) { evs = append(evs, []byte(e.raw)) }
	add(respEv("response.created", `{"response":{"id":"resp_1","object":"response","status":"in_progress","usage":null},"sequence_number":0,"type":"response.created"}`))
	for i := range n {
		add(respEv("response.output_text.delta", `{"content_index":0,"delta":" word","item_id":"msg_1","logprobs":[],"output_index":0,"sequence_number":`+strconv.Itoa(i+1)+`,"type":"response.output_text.delta"}`))
	}
	add(respEv("response.completed", `{"response":{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":3},"output_tokens":6,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":17}},"sequence_number":99,"type":"response.completed"}`))
	return evs
}

// splitEvents cuts every event in two, so that each is held across writes.
func splitEvents(evs [][]byte) [][]byte {
	var out [][]byte
	for _, e := range evs {
		h := len(e) / 2
		out = append(out, e[:h], e[h:])
	}
	return out
}

var sink int

func discard(p []byte) error {
	sink += len(p)
	return nil
}

func TestStreamMeterNoAllocs(t *testing.T) {
	for _, c := range []struct {
		name   string
		ep     Endpoint
		hide   bool
		writes [][]byte
	}{
		// 1500 deltas: over 4 KiB of text, so the spill path runs too.
		{"chat hide", EndpointChat, true, chatStreamEvents(1500, false)},
		{"chat forward", EndpointChat, false, chatStreamEvents(1500, false)},
		{"chat hide split", EndpointChat, true, splitEvents(chatStreamEvents(1500, false))},
		{"continuous usage", EndpointChat, true, chatStreamEvents(200, true)},
		{"responses", EndpointResponses, false, responsesStreamEvents(200)},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := NewStreamMeter(c.ep, c.hide, nil)
			run := func() {
				m.Reset(c.ep, c.hide, nil)
				for _, w := range c.writes {
					_ = m.Write(w, discard)
				}
				_ = m.Finish(discard)
			}
			run() // grow the buffers once
			if _, ok := m.Usage(); !ok {
				t.Fatal("no usage found")
			}
			if a := testing.AllocsPerRun(5, run); a != 0 {
				t.Fatalf("%v allocations per stream of %d writes, want 0", a, len(c.writes))
			}
		})
	}
}

// BenchmarkStreamMeter measures one SSE event per op (ns/op and allocs/op
// are per event; MB/s is the relayed stream).
func BenchmarkStreamMeter(b *testing.B) {
	for _, c := range []struct {
		name   string
		ep     Endpoint
		hide   bool
		writes [][]byte
	}{
		{"hide", EndpointChat, true, chatStreamEvents(500, false)},
		{"forward", EndpointChat, false, chatStreamEvents(500, false)},
		{"hide-split-events", EndpointChat, true, splitEvents(chatStreamEvents(500, false))},
		{"continuous-usage", EndpointChat, true, chatStreamEvents(500, true)},
		{"responses", EndpointResponses, false, responsesStreamEvents(500)},
	} {
		b.Run(c.name, func(b *testing.B) {
			total := 0
			for _, w := range c.writes {
				total += len(w)
			}
			b.SetBytes(int64(total / len(c.writes)))
			b.ReportAllocs()
			m := NewStreamMeter(c.ep, c.hide, nil)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(c.writes)
				if k == 0 {
					_ = m.Finish(discard)
					m.Reset(c.ep, c.hide, nil)
				}
				_ = m.Write(c.writes[k], discard)
			}
		})
	}
	// Whole streams in 32 KiB reads, with the real tokenizer counting the
	// text: the throughput of a fast upstream.
	b.Run("hide-32KiB-writes-tokenizer", func(b *testing.B) {
		var stream []byte
		for _, w := range chatStreamEvents(2000, false) {
			stream = append(stream, w...)
		}
		tk := cl100k(b)
		b.SetBytes(int64(len(stream)))
		b.ReportAllocs()
		m := NewStreamMeter(EndpointChat, true, tk)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m.Reset(EndpointChat, true, tk)
			for k := 0; k < len(stream); k += 32 << 10 {
				_ = m.Write(stream[k:min(k+32<<10, len(stream))], discard)
			}
			_ = m.Finish(discard)
		}
	})
}

func chatCompletionBody() []byte {
	return []byte(jsonBodies[0].body)
}

func embeddingsBody(dims int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString(`{"id":"embd-1","object":"list","created":1,"model":"e","data":[{"index":0,"object":"embedding","embedding":[`)
	for i := range dims {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(rng.NormFloat64()/10, 'g', -1, 64))
	}
	b.WriteString(`]}],"usage":{"prompt_tokens":8,"total_tokens":8,"completion_tokens":0,"prompt_tokens_details":null}}`)
	return []byte(b.String())
}

func BenchmarkJSONMeter(b *testing.B) {
	for _, c := range []struct {
		name  string
		body  []byte
		whole bool // one WriteWhole, as for a body of announced length
	}{
		{"chat", chatCompletionBody(), false},
		{"chat-whole", chatCompletionBody(), true},
		{"embeddings-4096", embeddingsBody(4096), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			m := NewJSONMeter()
			for i := 0; i < b.N; i++ {
				m.Reset()
				if c.whole {
					m.WriteWhole(c.body)
				}
				for k := 0; k < len(c.body) && !c.whole; k += 4096 {
					m.Write(c.body[k:min(k+4096, len(c.body))])
				}
				if _, ok := m.Usage(); !ok {
					b.Fatal("no usage")
				}
			}
		})
	}
}

// promptText is deterministic English-like text of about the given number of
// cl100k tokens.
func promptText(tokens int) string {
	words := strings.Fields(`the of and to in is was for on that with as by at from his her
		it an were are which this be or had not but first one their its new after who they
		have has been also other time many year two some would into more these school
		world state city most called used during over three only such world between
		because through where while before under around both well however since known`)
	rng := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	for i := 0; b.Len() < tokens*9/2; i++ {
		if i%17 == 16 {
			b.WriteString(".\n")
		}
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}

func chatRequest(prompt string) []byte {
	req := map[string]any{
		"model":  "llama-3",
		"stream": true,
		"messages": []map[string]any{
			{"role": "system", "content": "You are a helpful assistant."},
			{"role": "user", "content": prompt},
		},
		"tools": []map[string]any{{"type": "function", "function": map[string]any{
			"name": "get_weather", "parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]string{"type": "string"}}},
		}}},
		"max_tokens": 512,
	}
	b, _ := json.Marshal(req)
	return b
}

// conversationRequest is a chat request resending a conversation of the
// given number of turns: many short messages, as a chat client sends.
func conversationRequest(turns int) []byte {
	msgs := []map[string]string{{"role": "system", "content": "You are the support assistant of a bank. Answer briefly and cite the relevant policy section."}}
	for i := range turns {
		msgs = append(msgs,
			map[string]string{"role": "user", "content": "Turn " + strconv.Itoa(i) + ": how do I raise the daily limit of my card when I travel abroad next month?"},
			map[string]string{"role": "assistant", "content": "In the app, open Cards, choose the card, then Limits; travel limits apply for up to 90 days (policy 4.2)."})
	}
	msgs = append(msgs, map[string]string{"role": "user", "content": "And what about cash withdrawals?"})
	b, _ := json.Marshal(map[string]any{"model": "llama-3", "max_tokens": 16, "messages": msgs})
	return b
}

func BenchmarkParseRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"chat-2KiB", chatRequest(promptText(400))},
		{"chat-400KiB", chatRequest(promptText(90000))},
		{"conversation-3KiB", conversationRequest(10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := ParseRequest(EndpointChat, c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRewrite(b *testing.B) {
	body := chatRequest(promptText(400))
	r, err := ParseRequest(EndpointChat, body)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Rewrite(body, r, RewriteOptions{InjectUsage: true, MaxTokens: 1000}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEstimatePrompt100k parses and estimates a chat request with a
// ~100,000-token prompt that has line breaks (escapes to decode). After the
// first op the tokenizer's text cache knows the prompt, so "parse+estimate"
// is the cost of parsing, decoding and hashing it; "tokenizer-only" counts
// the text afresh every time (CountOnce), the cost of a new prompt.
func BenchmarkEstimatePrompt100k(b *testing.B) {
	tk := cl100k(b)
	text := promptText(100000)
	body := chatRequest(text)
	b.Run("parse+estimate", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var n int64
		for i := 0; i < b.N; i++ {
			r, err := ParseRequest(EndpointChat, body)
			if err != nil {
				b.Fatal(err)
			}
			n = r.EstimatePrompt(tk)
		}
		b.ReportMetric(float64(n), "tokens")
	})
	b.Run("tokenizer-only", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var n int
		for i := 0; i < b.N; i++ {
			n = tk.CountOnce(text)
		}
		b.ReportMetric(float64(n), "tokens")
	})
}

// BenchmarkParseUsage reads the usage object of a response: vLLM's shape
// (integers and nulls) and one with prompt details (a nested
// object).
func BenchmarkParseUsage(b *testing.B) {
	for _, c := range []struct{ name, v string }{
		{"vllm", `{"prompt_tokens":27,"total_tokens":43,"completion_tokens":16,"prompt_tokens_details":null,"completion_tokens_details":null}`},
		{"details", `{"prompt_tokens":27,"total_tokens":43,"completion_tokens":16,"prompt_tokens_details":{"cached_tokens":16}}`},
	} {
		v := []byte(c.v)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := parseUsage(v); !ok {
					b.Fatal("not read")
				}
			}
		})
	}
}
