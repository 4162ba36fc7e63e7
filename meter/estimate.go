package meter

import (
	"bytes"
	"encoding/json"
	"unsafe"
)

// Counter counts the tokens of a text; *tokenizer.Tokenizer is one. Count
// must not keep the string (or any part of it) after it returns: the meter
// lends it the request body's bytes.
type Counter interface{ Count(string) int }

// OnceCounter is a Counter that can also count a text it will not see again
// (generated text) without remembering it; *tokenizer.Tokenizer is one.
type OnceCounter interface {
	Counter
	CountOnce(string) int
}

// countText counts s with c. Without a counter it falls back to the usual
// rule of thumb of four bytes per token.
func countText(c Counter, s string) int64 {
	if s == "" {
		return 0
	}
	if c == nil {
		return int64(len(s)+3) / 4
	}
	return int64(c.Count(s))
}

// countGenerated counts generated text, which no later request repeats, with
// c's CountOnce when it has one.
func countGenerated(c Counter, s string) int64 {
	if oc, ok := c.(OnceCounter); ok && s != "" {
		return int64(oc.CountOnce(s))
	}
	return countText(c, s)
}

// The chat framing overhead, as in OpenAI's cookbook token counting: each
// message costs its role and content plus about three tokens of template,
// a name one more, and the reply is primed with three.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	replyPriming     = 3
)

// MediaPartTokens is the estimate for one image, audio, video or file part of
// a message. vLLM counts the model's placeholder tokens for these, which
// depend on the model and the media (a few hundred to a few thousand); the
// local estimate cannot know them, and the usage vLLM reports settles the
// difference.
const MediaPartTokens = 512

// PromptBound returns, for a chat or completions request, a number of
// tokens EstimatePrompt never exceeds, read from the body it was parsed
// from without counting anything: what the estimate counts of a string is
// at most its bytes (a token is at least a byte, a JSON escape longer than
// what it stands for), of a token id one, of a message or array element its
// template's three tokens (at least two bytes with its comma), and of an
// object part MediaPartTokens at most. So twice the body's bytes, plus
// MediaPartTokens for each '{' in it, plus the reply's priming, bound it.
// ok is false for the other endpoints, whose estimates may count a text
// more than once (rerank, score) or read audio.
func (r *Request) PromptBound(body []byte) (n int64, ok bool) {
	if r.Endpoint != EndpointChat && r.Endpoint != EndpointCompletions {
		return 0, false
	}
	return 2*int64(len(body)) + MediaPartTokens*int64(bytes.Count(body, openBrace)) + replyPriming, true
}

var openBrace = []byte{'{'}

// EstimatePrompt estimates the request's prompt tokens with c (nil: four
// bytes per token):
//   - chat (and each conversation of a batched chat): each message's
//     role, text content (string or text parts; media parts at
//     MediaPartTokens), name and tool calls, plus the per-message
//     overhead and the reply priming; tools and functions as compact JSON;
//   - completions: the prompt (a string, a list of strings, or token arrays,
//     which count their length);
//   - embeddings: the input, in the same forms (or chat messages);
//   - responses: instructions and a string input as the system and user
//     messages vLLM makes of them, or the input's items, and tools;
//   - rerank and score: each query (text_1) with each document (text_2)
//     it is paired with, as a cross-encoder reads them, and the pair's
//     special tokens;
//   - messages (Anthropic): system, the messages' content blocks (text,
//     thinking, tool use and results; media at MediaPartTokens), and tools.
//
// Each string is decoded once and counted as it is met.
func (r *Request) EstimatePrompt(c Counter) int64 {
	if r.Endpoint.Audio() {
		return r.estimateAudio(c)
	}
	e := estimator{c: c}
	switch r.Endpoint {
	case EndpointChat:
		e.messages(r.messages)
		e.json(r.tools)
		e.json(r.functions)
	case EndpointCompletions:
		e.inputs(r.prompt)
	case EndpointEmbeddings:
		e.inputs(r.input)
		e.messages(r.messages)
	case EndpointResponses:
		// vLLM renders instructions as a system message and a string
		// input as a user message, through the chat template.
		if isString(r.instructions) {
			e.n += tokensPerMessage + countText(e.c, "system")
			e.str(r.instructions)
		}
		if isString(r.input) {
			e.n += tokensPerMessage + countText(e.c, "user") + replyPriming
		}
		e.inputs(r.input)
		e.json(r.tools)
	case EndpointRerank:
		e.pairs(r.query, r.documents)
	case EndpointScore:
		// vLLM takes the first complete pair of queries+documents,
		// queries+items, data_1+data_2, text_1+text_2: the largest is
		// counted, so that a decoy pair cannot hide the one vLLM runs.
		var most int64
		for _, p := range [...][2][]byte{{r.queries, r.documents}, {r.queries, r.items}, {r.data1, r.data2}, {r.text1, r.text2}} {
			if p[0] != nil || p[1] != nil {
				pe := estimator{c: e.c}
				pe.pairs(p[0], p[1])
				most = max(most, pe.n)
			}
		}
		e.n += most
	case EndpointChatBatch:
		for conv := range elements(r.messages) {
			e.messages(conv)
		}
	case EndpointMessages:
		// vLLM renders an Anthropic request as the chat it converts it to:
		// system as a system message, tool results as tool messages.
		if r.system != nil {
			e.n += tokensPerMessage
			e.role(systemRole)
			e.blocks(r.system)
		}
		e.anthropicMessages(r.messages)
		e.json(chatTools(r.tools)) // the chat tools vLLM makes of them
	default:
		e.messages(r.messages)
		e.inputs(r.prompt)
		e.str(r.instructions)
		e.inputs(r.input)
		e.json(r.tools)
		e.json(r.functions)
	}
	return e.n
}

// estimator accumulates a prompt estimate.
type estimator struct {
	c   Counter
	buf []byte
	n   int64
	// The roles met so far (their raw JSON, in the body) and their counts:
	// a conversation repeats two or three roles in every message.
	roles  [4]roleCount
	nroles int
}

type roleCount struct {
	raw []byte
	n   int64
}

// EchoEstimate estimates the text a request with echo has vLLM repeat at
// the start of each choice, which a stream meter reads as generated:
// completions repeat the choice's prompt; chat, the last message's content
// when it is the assistant's (vLLM's response role). 0 without echo.
func (r *Request) EchoEstimate(c Counter) int64 {
	if !r.Echo {
		return 0
	}
	e := estimator{c: c}
	switch r.Endpoint {
	case EndpointCompletions:
		e.inputs(r.prompt) // each prompt's choices repeat it: the sum, times n
	case EndpointChat:
		var last []byte
		for m := range elements(r.messages) {
			last = m
		}
		if last == nil || !stringEq(member(last, "role"), "assistant") {
			return 0
		}
		e.content(member(last, "content"))
	}
	return e.n * int64(r.N)
}

// str counts a string value; other values count nothing.
func (e *estimator) str(v []byte) {
	body, ok := stringBody(v)
	if !ok {
		return
	}
	text := decoded(e.buf, body)
	if len(text) > 0 && &text[0] != &body[0] {
		e.buf = text // keep the buffer decoding grew
	}
	// The counter keeps nothing of the string (Counter), and text is not
	// written to while it counts: no copy.
	e.n += countText(e.c, unsafe.String(unsafe.SliceData(text), len(text)))
}

// json counts a value's compact JSON text (tool definitions).
func (e *estimator) json(v []byte) {
	if len(v) == 0 {
		return
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return
	}
	e.n += countText(e.c, b.String())
}

// messages counts a chat messages array, reading each message where it
// stands (one pass over it, not found first and walked again).
func (e *estimator) messages(v []byte) {
	it, ok := newArrIter(v)
	if !ok {
		return
	}
	for {
		vs, more := it.head()
		if !more {
			break
		}
		e.n += tokensPerMessage
		var ve int
		if v[vs] == '{' {
			ve = e.message(v, vs)
		} else {
			ve = skipValue(v, vs)
		}
		if !it.done(vs, ve) {
			break
		}
	}
	if it.n > 0 {
		e.n += replyPriming
	}
}

// message counts the message object whose '{' is at b[i] and returns the
// offset just past it, or -1 if it is malformed.
func (e *estimator) message(b []byte, i int) int {
	it := objAt(b, i)
	var kb [maxKeyBytes]byte
	for {
		raw, vs, more := it.head()
		if !more || !it.skip(vs) {
			break
		}
		val := b[vs:it.ve]
		switch string(keyName(raw, &kb)) {
		case "role":
			e.role(val)
		case "name":
			if isString(val) {
				e.str(val)
				e.n += tokensPerName
			}
		case "content":
			e.content(val)
		case "tool_calls":
			e.toolCalls(val)
		case "function_call":
			e.function(val)
		}
	}
	if it.bad {
		return -1
	}
	return it.end
}

// role counts a message's role, each distinct one once per request.
func (e *estimator) role(v []byte) {
	for _, r := range e.roles[:e.nroles] {
		if bytes.Equal(r.raw, v) {
			e.n += r.n
			return
		}
	}
	n := e.n
	e.str(v)
	if e.nroles < len(e.roles) {
		e.roles[e.nroles] = roleCount{raw: v, n: e.n - n}
		e.nroles++
	}
}

// content counts message content: a string, or a list of parts where text
// parts count their text and anything else (image_url, input_audio, …) counts
// MediaPartTokens.
func (e *estimator) content(v []byte) {
	if isString(v) {
		e.str(v)
		return
	}
	if !isArray(v) {
		return
	}
	for part := range elements(v) {
		e.part(part)
	}
}

// part counts one content part: a string, a text part's text, or
// MediaPartTokens for any other part.
func (e *estimator) part(v []byte) {
	if isString(v) {
		e.str(v)
		return
	}
	if !isObject(v) {
		return
	}
	var text []byte
	for key, val := range members(v, nil) {
		switch string(key) {
		case "text", "refusal":
			if isString(val) {
				text = val
			}
		}
	}
	if text != nil {
		e.str(text)
	} else {
		e.n += MediaPartTokens
	}
}

// toolCalls counts the names and arguments of an assistant message's calls.
func (e *estimator) toolCalls(v []byte) {
	if !isArray(v) {
		return
	}
	for call := range elements(v) {
		if !isObject(call) {
			continue
		}
		for key, val := range members(call, nil) {
			if string(key) == "function" {
				e.function(val)
			}
		}
	}
}

// function counts a {"name","arguments"} object.
func (e *estimator) function(v []byte) {
	if !isObject(v) {
		return
	}
	for key, val := range members(v, nil) {
		switch string(key) {
		case "name", "arguments":
			e.str(val)
		}
	}
}

// inputs counts a completions prompt, an embeddings input or a Responses
// input: a string; or a list whose elements are strings, token ids (one
// token each), token arrays (their length) or Responses items (a message
// overhead plus their text).
func (e *estimator) inputs(v []byte) {
	if isString(v) {
		e.str(v)
		return
	}
	if !isArray(v) {
		return
	}
	items := false
	for el := range elements(v) {
		switch el[0] {
		case '"':
			e.str(el)
		case '[':
			e.n += int64(max(arrayLen(el), 0))
		case '{':
			items = true
			e.item(el)
		case 'n', 't', 'f':
			// null and booleans carry no text.
		default:
			e.n++ // one token id
		}
	}
	if items {
		e.n += replyPriming
	}
}

// PromptIsTokens reports that a completions prompt is given as token ids
// (or arrays of them), which EstimatePrompt counts exactly.
func (r *Request) PromptIsTokens() bool {
	if r.Endpoint != EndpointCompletions || !isArray(r.prompt) {
		return false
	}
	ids := false
	for el := range elements(r.prompt) {
		if el[0] == '"' || el[0] == '{' {
			return false
		}
		ids = true
	}
	return ids
}

// item counts one Responses input item: a message ({role, content}), a
// function call ({name, arguments}), a call's output ({output}) or a
// reasoning item ({summary: [{text}]}).
func (e *estimator) item(v []byte) {
	if !isObject(v) {
		return
	}
	e.n += tokensPerMessage
	for key, val := range members(v, nil) {
		switch string(key) {
		case "role", "name", "arguments", "text":
			e.str(val)
		case "content", "output", "summary":
			e.content(val)
		}
	}
}

var systemRole = []byte(`"system"`)

// anthropicMessages counts an Anthropic messages array: each message's role
// and content, a tool result as the tool message vLLM makes of it.
func (e *estimator) anthropicMessages(v []byte) {
	n := 0
	for msg := range elements(v) {
		if !isObject(msg) {
			continue
		}
		n++
		e.n += tokensPerMessage
		for key, val := range members(msg, nil) {
			switch string(key) {
			case "role":
				e.role(val)
			case "content":
				e.blocks(val)
			}
		}
	}
	if n > 0 {
		e.n += replyPriming
	}
}

// blocks counts Anthropic content: a string, or a list of blocks.
func (e *estimator) blocks(v []byte) {
	if isString(v) {
		e.str(v)
		return
	}
	for b := range elements(v) {
		if !isObject(b) {
			continue
		}
		var typ, text, thinking, name, input, content []byte
		for key, val := range members(b, nil) {
			switch string(key) {
			case "type":
				typ = val
			case "text":
				text = val
			case "thinking":
				thinking = val
			case "name":
				name = val
			case "input":
				input = val
			case "content":
				content = val
			}
		}
		switch {
		case stringEq(typ, "tool_use"):
			e.str(name)
			e.n += countText(e.c, pyDumps(input)) // the call's arguments: json.dumps(input)
		case stringEq(typ, "tool_result"):
			e.n += tokensPerMessage // a message of its own
			if isString(content) {
				e.str(content)
			} else {
				e.json(content)
			}
		case stringEq(typ, "image"):
			e.n += MediaPartTokens
		default:
			// vLLM renders a text block's text and a thinking block's
			// thinking; a block may carry both, and both are counted, so
			// that neither can hide the other.
			e.str(text)
			e.str(thinking)
		}
	}
}

// pairTokens is the estimate of the special tokens a cross-encoder puts
// around a pair (CLS, SEP, SEP).
const pairTokens = 3

// pairs counts rerank's and score's inputs as vLLM runs them: one input
// per pair of a query and a document, the one query paired with each
// document, or a list of queries with the list of documents one to one.
func (e *estimator) pairs(queries, docs []byte) {
	qs := e.poolingItems(queries, true)
	ds := e.poolingItems(docs, false)
	if len(qs) == 0 || len(ds) == 0 {
		for _, n := range append(qs, ds...) {
			e.n += n
		}
		return
	}
	for i, d := range ds {
		q := qs[0]
		if len(qs) > 1 {
			q = qs[min(i, len(qs)-1)]
		}
		e.n += q + d + pairTokens
	}
}

// poolingItems counts each item of a rerank or score input: a string, a
// list of strings, or a multimodal {"content": [parts]} (each part an item,
// or, for a single query, one item of them all).
func (e *estimator) poolingItems(v []byte, single bool) []int64 {
	count := func(item []byte) int64 {
		m := e.n
		e.part(item)
		n := e.n - m
		e.n = m
		return n
	}
	switch {
	case isString(v):
		return []int64{count(v)}
	case isArray(v):
		var out []int64
		for el := range elements(v) {
			out = append(out, count(el))
		}
		return out
	case isObject(v):
		var out []int64
		for part := range elements(member(v, "content")) {
			out = append(out, count(part))
		}
		if single && len(out) > 1 {
			var sum int64
			for _, n := range out {
				sum += n
			}
			out = []int64{sum}
		}
		return out
	}
	return nil
}

// LongestPrompt estimates the longest of a request's prompts (completions'
// prompts, a batch's conversations), which a cap for all of them must
// leave room for; with one prompt, EstimatePrompt.
func (r *Request) LongestPrompt(c Counter) int64 {
	src, batch := r.prompt, r.Endpoint == EndpointChatBatch
	if batch {
		src = r.messages
	}
	if r.Prompts <= 1 || !batch && r.Endpoint != EndpointCompletions {
		return r.EstimatePrompt(c)
	}
	var longest int64
	for el := range elements(src) {
		e := estimator{c: c}
		if batch {
			e.messages(el)
		} else {
			e.inputs(el)
		}
		longest = max(longest, e.n)
	}
	return longest
}
