package meter

import (
	"bytes"
	"unicode/utf8"
)

// Bounds on what a StreamMeter holds, so that an odd upstream cannot make it
// grow without limit.
const (
	// maxHold is the largest event a hiding meter holds back until its end.
	// A larger event is relayed as it arrives and never dropped (a usage
	// chunk is a few hundred bytes).
	maxHold = 64 << 10
	// maxData is the largest data payload of one event that is parsed in
	// full; a larger one (vLLM's beam search answers a stream with the
	// whole response in one event) is relayed as it comes and scanned on
	// the way for its top-level usage and error only.
	maxData = 1 << 20
	// maxLine bounds the part of one line kept across writes.
	maxLine = maxData + 64
	// textKeep is how much relayed text is kept before it is counted and
	// dropped.
	textKeep = 4 << 10
	// maxChoiceIndex bounds the per-choice running usage table.
	maxChoiceIndex = 1 << 16
	// maxEventType bounds the kept value of an event: line.
	maxEventType = 64
	// maxPooledBuf is the largest buffer Reset keeps for reuse.
	maxPooledBuf = 64 << 10
)

// How the last write ended, when it ended in a CR: the LF that may follow at
// the start of the next write belongs to the same line terminator.
const (
	crNone    uint8 = iota
	crLine          // the CR ended a field line of the current event
	crKept          // the CR ended an event that was relayed
	crDropped       // the CR ended an event that was dropped
)

// choiceUsage is the latest running usage of one choice index.
type choiceUsage struct {
	prompt, completion int64
	seen               bool
}

// StreamMeter reads an SSE response (text/event-stream) as it is relayed to
// the client: it finds the usage vLLM reports, upstream errors, the end of the
// stream, and the text generated (to estimate the completion when no usage
// arrives), and can remove the usage-only chunk the gate asked for.
//
// It handles events split or merged across writes, LF, CRLF and CR line
// endings, multi-line data, comments, event: lines and data: [DONE]. It works
// in place on the bytes it is given and keeps only what it must: a partial
// line or (when hiding usage) a partial event, and up to ~4 KiB of text. In
// the steady state it does not allocate.
//
// A StreamMeter is not safe for concurrent use. Reuse one with Reset.
type StreamMeter struct {
	ep      Endpoint
	hide    bool
	counter Counter

	// The current line's bytes from earlier writes, capped at maxLine, and
	// its full length.
	line    []byte
	lineLen int
	cr      uint8

	// The current event.
	evType   []byte
	data     []byte
	hasData  bool
	dataOver bool // data exceeded maxData: not parsed in full
	evSize   int  // raw bytes of the event so far
	// An event whose data exceeded maxData goes through big, which keeps
	// only its top-level usage and error: bigLine while the current line
	// streams into it, bigEvent once the event's data does.
	big      *JSONMeter
	bigLine  bool
	bigEvent bool
	held     []byte // hiding: the event's bytes from earlier writes
	relayed  bool   // hiding: the event outgrew maxHold and is being relayed

	// What was found.
	final     Usage
	finalOK   bool
	bigUsage  Usage // of an event too large to parse in full
	bigOK     bool
	choices   []choiceUsage
	contOK    bool
	perPrompt int
	err       *UpstreamError
	// The prompt's count a Messages stream gave in message_start.
	msgPrompt   int64
	msgPromptOK bool
	done        bool
	first       bool
	finished    bool

	typ []byte // scratch: an event's unescaped "type"

	// The shape of the last chunk whose only effect was one text value
	// (see learn): the bytes before the value, then those after it, split
	// at tmplPre (0: none yet; a chunk is an object, so its value never
	// starts it). adds and added count and keep the string
	// values the current event hands to addText.
	tmpl    []byte
	tmplPre int
	adds    int
	added   []byte
	// noTemplate turns the shortcut off, and templated counts the chunks it
	// read (tests compare both ways and check it was taken).
	noTemplate bool
	templated  int

	// Relayed text not yet counted, and the count of what was dropped.
	text    []byte
	counted int64
}

// NewStreamMeter returns a meter for a stream from endpoint ep. With
// hideUsage it removes the usage-only chunk ("choices":[] with "usage") from
// what it relays; c counts relayed text for EstimateCompletion (nil: four
// bytes per token).
func NewStreamMeter(ep Endpoint, hideUsage bool, c Counter) *StreamMeter {
	m := &StreamMeter{}
	m.Reset(ep, hideUsage, c)
	return m
}

// Reset makes m ready for a new stream, keeping its buffers (unless they grew
// large) so that a sync.Pool of meters allocates nothing per request.
func (m *StreamMeter) Reset(ep Endpoint, hideUsage bool, c Counter) {
	*m = StreamMeter{
		ep:      ep,
		hide:    hideUsage,
		counter: c,
		line:    reuse(m.line),
		evType:  reuse(m.evType),
		data:    reuse(m.data),
		held:    reuse(m.held),
		choices: m.choices[:0],
		text:    reuse(m.text),
		typ:     reuse(m.typ),
		tmpl:    reuse(m.tmpl),
		big:     m.big,
	}
	if cap(m.choices) > 1024 {
		m.choices = nil
	}
}

// reuse empties b for reuse, or drops it if it grew past maxPooledBuf.
func reuse(b []byte) []byte {
	if cap(b) > maxPooledBuf {
		return nil
	}
	return b[:0]
}

// SetChoicesPerPrompt tells the meter how many choices each prompt has (the
// request's n). It matters only for completions with several prompts whose
// stream carries continuous usage but no final usage chunk: vLLM reports each
// choice's own prompt there, and choices index as prompt×n+i, so the prompt
// counts are summed per group of n. Without it the prompt is counted once.
func (m *StreamMeter) SetChoicesPerPrompt(n int) { m.perPrompt = n }

// Write consumes p, the next bytes from upstream, and calls emit with the
// bytes the client must get, in order. emit must not retain its argument.
//
// Without hiding, emit gets p at once, unchanged, and p is parsed after. With
// hiding, each complete event is emitted as soon as its terminating blank
// line is seen (consecutive ones in one call), except the usage-only chunk,
// which is dropped; a partial event is held until its end arrives.
//
// An error from emit is returned at once; the meter should then only be
// queried.
func (m *StreamMeter) Write(p []byte, emit func([]byte) error) error {
	if len(p) == 0 {
		return nil
	}
	if !m.hide || m.finished {
		if err := emit(p); err != nil {
			return err
		}
		if !m.finished {
			_ = m.feed(p, nil)
		}
		return nil
	}
	return m.feed(p, emit)
}

// Finish ends the stream: a trailing event without its blank line is read
// (for its usage, if complete) and, when held, emitted as it is.
func (m *StreamMeter) Finish(emit func([]byte) error) error {
	if m.finished {
		return nil
	}
	m.finished = true
	if m.lineLen > 0 {
		m.field(m.line, m.lineLen)
		m.line, m.lineLen = m.line[:0], 0
	}
	m.dispatch()
	m.cr = crNone
	if len(m.held) > 0 {
		h := m.held
		m.held = m.held[:0]
		return emit(h)
	}
	return nil
}

// feed parses p; with a non-nil emit it also relays p without the dropped
// events.
func (m *StreamMeter) feed(p []byte, emit func([]byte) error) error {
	hide := emit != nil
	// runStart..evStart is the part of p that is ready to emit; evStart is
	// where the current event begins in p.
	i, runStart, evStart := 0, 0, 0
	if p[0] == '\n' {
		switch m.cr {
		case crLine:
			i = 1
			m.evSize++
		case crKept:
			i, evStart = 1, 1
		case crDropped:
			i, evStart, runStart = 1, 1, 1
		}
	}
	m.cr = crNone
	for i < len(p) {
		rest := p[i:]
		end := bytes.IndexByte(rest, '\n')
		seg := rest
		if end >= 0 {
			seg = rest[:end]
		}
		isCR := false
		if c := bytes.IndexByte(seg, '\r'); c >= 0 {
			end, isCR = c, true
		}
		if end < 0 {
			m.carry(rest)
			m.evSize += len(rest)
			break
		}
		next := i + end + 1
		pendingCR := false
		if isCR {
			if next < len(p) {
				if p[next] == '\n' {
					next++
				}
			} else {
				pendingCR = true
			}
		}
		content := p[i : i+end]
		full := len(content)
		if m.lineLen > 0 {
			full += m.lineLen
			m.carry(content)
			content = m.line
		}
		if full == 0 {
			// A blank line ends the event.
			size := m.evSize
			drop := m.dispatch() && hide && size <= maxHold && !m.relayed
			if hide {
				if drop {
					if evStart > runStart {
						if err := emit(p[runStart:evStart]); err != nil {
							return err
						}
					}
					m.held = m.held[:0]
					runStart = next
				} else if len(m.held) > 0 {
					m.held = append(m.held, p[runStart:next]...)
					err := emit(m.held)
					m.held = m.held[:0]
					runStart = next
					if err != nil {
						return err
					}
				}
			}
			m.evSize, m.relayed, evStart = 0, false, next
			if pendingCR {
				m.cr = crKept
				if drop {
					m.cr = crDropped
				}
			}
		} else {
			m.evSize += next - i
			m.field(content, full)
			if pendingCR {
				m.cr = crLine
			}
		}
		m.line, m.lineLen = m.line[:0], 0
		i = next
	}
	if !hide {
		return nil
	}
	if evStart > runStart {
		if err := emit(p[runStart:evStart]); err != nil {
			return err
		}
	}
	tail := p[evStart:]
	if len(tail) == 0 {
		return nil
	}
	switch {
	case m.relayed:
		return emit(tail)
	case m.evSize > maxHold:
		// Too large to be a usage chunk: stop holding it.
		m.relayed = true
		if len(m.held) > 0 {
			err := emit(m.held)
			m.held = m.held[:0]
			if err != nil {
				return err
			}
		}
		return emit(tail)
	default:
		m.held = append(m.held, tail...)
		return nil
	}
}

// carry keeps the start of a line that continues in the next write. A data
// line longer than maxLine goes on into big.
func (m *StreamMeter) carry(b []byte) {
	m.lineLen += len(b)
	if m.bigLine {
		m.big.Write(b)
		return
	}
	if room := maxLine - len(m.line); room > 0 {
		n := min(len(b), room)
		m.line = append(m.line, b[:n]...)
		b = b[n:]
	}
	if len(b) > 0 {
		if value, ok := bytes.CutPrefix(m.line, []byte("data:")); ok {
			m.startBig(value)
			m.big.Write(b)
			m.bigLine = true
		}
	}
}

// startBig moves the event's data so far, and value (a data line's first
// bytes, after "data:"), into big.
func (m *StreamMeter) startBig(value []byte) {
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	if !m.bigEvent {
		if m.big == nil {
			m.big = NewJSONMeter()
		} else {
			m.big.Reset()
		}
		m.big.Write(m.data)
		m.data = m.data[:0]
		m.bigEvent, m.dataOver = true, true
	} else {
		m.big.Write([]byte{'\n'})
	}
	m.big.Write(value)
}

// field processes one non-blank line l of full length full (l may be cut
// short when the line was longer than maxLine).
func (m *StreamMeter) field(l []byte, full int) {
	if l[0] == ':' {
		return // a comment
	}
	name, value := l, l[len(l):]
	if c := bytes.IndexByte(l, ':'); c >= 0 {
		name, value = l[:c], l[c+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		m.hasData = true
		switch {
		case m.bigLine: // already in big, to its end
			m.bigLine = false
			return
		case m.bigEvent || len(l) == full && len(m.data)+len(value)+1 > maxData:
			m.startBig(value)
			return
		case m.dataOver || full > maxLine:
			m.dataOver = true
			m.data = m.data[:0]
			return
		}
		m.data = append(m.data, value...)
		m.data = append(m.data, '\n')
	case "event":
		m.evType = append(m.evType[:0], value[:min(len(value), maxEventType)]...)
	}
}

// dispatch ends the current event: it reads the event's data, if any, and
// reports whether the event is the usage-only chunk.
func (m *StreamMeter) dispatch() (usageOnly bool) {
	switch {
	case m.bigEvent:
		if u, ok := m.big.Usage(); ok {
			m.bigUsage, m.bigOK = u, true
		}
		if e := m.big.Err(); e != nil {
			m.err = e
		}
	case m.hasData && !m.dataOver:
		d := m.data
		if n := len(d); n > 0 && d[n-1] == '\n' {
			d = d[:n-1]
		}
		usageOnly = m.event(m.evType, d)
		if len(m.text) > textKeep {
			m.spill()
		}
	}
	m.data, m.evType = m.data[:0], m.evType[:0]
	m.hasData, m.dataOver, m.bigLine, m.bigEvent = false, false, false, false
	return usageOnly
}

// event reads one event's data in one pass: the choices are read where they
// stand, not found first and walked again. A chunk shaped like the last one
// learn kept is read through that template instead (fromTemplate).
func (m *StreamMeter) event(typ, data []byte) (usageOnly bool) {
	data = trimSpace(data)
	if string(data) == "[DONE]" {
		m.done = true
		return false
	}
	if m.ep == EndpointMessages {
		m.messagesEvent(typ, data)
		return false
	}
	if len(typ) == 0 && m.tmplPre > 0 {
		if v, ok := m.fromTemplate(data); ok {
			m.templated++
			m.addText(v)
			return false
		}
	}
	m.adds, m.added = 0, nil
	// The text the choices add is taken back if the event turns out not to
	// be a chunk, or malformed, or if a later "choices" replaces them; so is
	// its count for learn.
	mark, first := len(m.text), m.first
	undo := func() { m.text, m.first, m.adds, m.added = m.text[:mark], first, 0, nil }
	var errV, usageV, typeV, deltaV, respV []byte
	n, idx := -1, int64(0)
	it, _ := newObjIter(data) // not an object: it.bad, and the loop reads nothing
	var kb [maxKeyBytes]byte
	for {
		raw, vs, more := it.head()
		if !more {
			break
		}
		key := keyName(raw, &kb)
		if string(key) == "choices" {
			undo()
			n, idx = -1, 0
			if vs < len(data) && data[vs] == '[' {
				var end int
				end, n, idx = m.choicesAt(data, vs)
				if !it.done(vs, end) {
					break
				}
				continue
			}
		}
		if !it.skip(vs) {
			break
		}
		val := data[vs:it.ve]
		switch string(key) {
		case "error":
			errV = val
		case "usage":
			usageV = val
		case "type":
			typeV = val
		case "delta":
			deltaV = val
		case "response":
			respV = val
		}
	}
	if it.bad {
		undo()
		return false // not an object, truncated or malformed: nothing in it is trusted
	}
	if errV != nil {
		if e := parseErrorValue(errV); e != nil {
			undo()
			m.err = e
			return false
		}
	}
	if len(typ) == 0 {
		if body, ok := stringBody(typeV); ok {
			m.typ = appendUnescaped(m.typ[:0], body)
			typ = m.typ
		}
	}
	if string(typ) == "error" || bytes.HasPrefix(typ, []byte("response.")) {
		undo()
		m.responsesEvent(typ, data, deltaV, respV)
		return false
	}
	if isNull(usageV) {
		if len(typ) == 0 {
			m.learn(data)
		}
		return false
	}
	u, ok := parseUsage(usageV)
	if !ok {
		return false
	}
	if n == 1 {
		// Continuous usage: running counts for this chunk's choice.
		if idx >= 0 && idx < maxChoiceIndex {
			for int64(len(m.choices)) <= idx {
				m.choices = append(m.choices, choiceUsage{})
			}
			m.choices[idx] = choiceUsage{prompt: u.PromptTokens, completion: u.CompletionTokens, seen: true}
			m.contOK = true
		}
		return false
	}
	// The final usage chunk ("choices":[]), or a whole response in one
	// event (beam search answered as a stream): authoritative totals.
	m.final, m.finalOK = u, true
	return n == 0
}

// messagesEvent reads an Anthropic Messages API event (vLLM's /v1/messages):
// the prompt's count in message_start (in its message, or beside it in
// later versions), the totals in message_delta, the generated text of
// content_block_start and content_block_delta (text, thinking, a tool's
// name and its input's JSON), message_stop, and error.
func (m *StreamMeter) messagesEvent(typ, data []byte) {
	deltaEvent := len(typ) == 0 || string(typ) == "content_block_delta"
	if deltaEvent && m.tmplPre > 0 {
		if v, ok := m.fromTemplate(data); ok {
			m.templated++
			m.addText(v)
			return
		}
	}
	var typeV, usageV, msgV, deltaV, blockV, errV []byte
	bad := false
	for key, val := range members(data, &bad) {
		switch string(key) {
		case "type":
			typeV = val
		case "usage":
			usageV = val
		case "message":
			msgV = val
		case "delta":
			deltaV = val
		case "content_block":
			blockV = val
		case "error":
			errV = val
		}
	}
	if bad {
		return // not an object, truncated or malformed: nothing in it is trusted
	}
	if len(typ) == 0 {
		if body, ok := stringBody(typeV); ok {
			m.typ = appendUnescaped(m.typ[:0], body)
			typ = m.typ
		}
	}
	switch string(typ) {
	case "message_start":
		if isNull(usageV) {
			usageV = member(msgV, "usage")
		}
		if f, ok := readUsage(usageV); ok && (f.haveIn || f.havePT) {
			m.msgPrompt, m.msgPromptOK = f.usage().PromptTokens, true
		}
	case "message_delta":
		if f, ok := readUsage(usageV); ok {
			u := f.usage()
			if !f.haveIn && !f.havePT {
				// Anthropic's own API gives input_tokens in message_start
				// only; cache counts here repeat that message's.
				u.PromptTokens = max(m.msgPrompt, u.PromptTokens)
				u.TotalTokens = satAdd(u.PromptTokens, u.CompletionTokens)
			}
			m.final, m.finalOK = u, true
		}
	case "content_block_start":
		for key, val := range members(blockV, nil) {
			switch string(key) {
			case "text", "thinking", "name":
				m.addText(val)
			}
		}
	case "content_block_delta":
		m.adds, m.added = 0, nil
		dbad := false
		for key, val := range members(deltaV, &dbad) {
			switch string(key) {
			case "text", "thinking", "partial_json":
				m.addText(val)
			}
		}
		// A chunk that names its own type is learnt: one that matches it
		// then names the same type, whether an event: line does or not.
		if deltaEvent && !dbad && stringEq(typeV, "content_block_delta") {
			m.learn(data)
		}
	case "message_stop":
		m.done = true
	case "error":
		if m.err = parseErrorValue(errV); m.err == nil {
			m.err = &UpstreamError{Message: "error event"}
		}
	}
}

// responsesEvent reads a Responses API event.
func (m *StreamMeter) responsesEvent(typ, data, delta, resp []byte) {
	switch string(typ) {
	case "error":
		m.err = errorFromObject(data)
	case "response.completed", "response.incomplete":
		m.responseUsage(resp)
		m.done = true
	case "response.failed":
		m.responseUsage(resp)
		m.err = responseError(resp)
	default:
		if bytes.HasSuffix(typ, []byte(".delta")) && !bytes.Contains(typ, []byte("audio")) {
			m.addText(delta)
		}
	}
}

// responseUsage takes the usage of a Responses API response object.
func (m *StreamMeter) responseUsage(resp []byte) {
	if v := member(resp, "usage"); !isNull(v) {
		if u, ok := parseUsage(v); ok {
			m.final, m.finalOK = u, true
		}
	}
}

// responseError reads the error of a failed Responses API response.
func responseError(resp []byte) *UpstreamError {
	if e := parseErrorValue(member(resp, "error")); e != nil {
		return e
	}
	return &UpstreamError{Message: "response failed"}
}

// choicesAt reads the array of choices whose '[' is at b[i]: each one's text,
// their number and the index of the first. It returns the offset just past
// the array, or -1 if the array is malformed.
func (m *StreamMeter) choicesAt(b []byte, i int) (end, n int, first int64) {
	it := arrAt(b, i)
	for {
		vs, more := it.head()
		if !more {
			break
		}
		var ve int
		if b[vs] == '{' {
			var index []byte
			ve, index = m.choiceAt(b, vs)
			if it.n == 0 {
				first, _ = parseInt(index)
			}
		} else {
			ve = skipValue(b, vs)
		}
		if !it.done(vs, ve) {
			break
		}
	}
	if it.bad {
		return -1, it.n, first
	}
	return it.end, it.n, first
}

// delta holds the members of a chat delta (or message) that carry generated
// text.
type delta struct {
	content, refusal, reasoning, reasoningContent, calls []byte
}

// choiceAt reads the choice object whose '{' is at b[i] and keeps its text.
// It returns the offset just past the object (-1 if malformed) and the raw
// value of its index. Within each object a repeated key takes its last
// value, as the client's JSON decoder would.
func (m *StreamMeter) choiceAt(b []byte, i int) (end int, index []byte) {
	var text []byte
	var dl, msg delta
	it := objAt(b, i)
	var kb [maxKeyBytes]byte
	for {
		raw, vs, more := it.head()
		if !more {
			break
		}
		key := keyName(raw, &kb)
		var d *delta
		switch string(key) {
		case "delta":
			d = &dl
		case "message":
			d = &msg
		}
		if d != nil {
			*d = delta{}
			if vs < len(b) && b[vs] == '{' {
				if !it.done(vs, d.readAt(b, vs)) {
					break
				}
				continue
			}
		}
		if !it.skip(vs) {
			break
		}
		switch string(key) {
		case "index":
			index = b[vs:it.ve]
		case "text":
			text = b[vs:it.ve]
		}
	}
	if it.bad {
		return -1, nil
	}
	m.addText(text)
	if !m.addDelta(&dl) || !m.addDelta(&msg) {
		return -1, nil
	}
	return it.end, index
}

// readAt reads the delta object whose '{' is at b[i] and returns the offset
// just past it, or -1 if it is malformed.
func (d *delta) readAt(b []byte, i int) int {
	it := objAt(b, i)
	var kb [maxKeyBytes]byte
	for {
		key, val, more := it.next()
		if !more {
			break
		}
		switch string(keyName(key, &kb)) {
		case "content":
			d.content = val
		case "refusal":
			d.refusal = val
		case "reasoning":
			d.reasoning = val
		case "reasoning_content":
			d.reasoningContent = val
		case "tool_calls":
			d.calls = val
		}
	}
	if it.bad {
		return -1
	}
	return it.end
}

// addDelta keeps the generated text of a chat delta (or message): content,
// refusal, reasoning and tool calls. It reports false if the tool calls are
// malformed.
func (m *StreamMeter) addDelta(d *delta) bool {
	// During the rename (late 2025) vLLM sent the same text under both
	// reasoning names: count it once.
	if isString(d.reasoning) {
		m.addText(d.reasoning)
	} else {
		m.addText(d.reasoningContent)
	}
	m.addText(d.content)
	m.addText(d.refusal)
	return m.toolCallText(d.calls)
}

// toolCallText reads the function names and argument fragments of a delta's
// tool calls; false if they are malformed.
func (m *StreamMeter) toolCallText(v []byte) (ok bool) {
	if !isArray(v) {
		return true
	}
	it, _ := newArrIter(v)
	for {
		call, more := it.next()
		if !more {
			break
		}
		if !isObject(call) {
			continue
		}
		bad := false
		var fn []byte
		for key, val := range members(call, &bad) {
			if string(key) == "function" {
				fn = val
			}
		}
		if bad {
			return false
		}
		if !isObject(fn) {
			continue
		}
		var name, args []byte
		for fk, fv := range members(fn, &bad) {
			switch string(fk) {
			case "name":
				name = fv
			case "arguments":
				args = fv
			}
		}
		if bad {
			return false
		}
		m.addText(name)
		m.addText(args)
	}
	return !it.bad
}

// learn remembers the shape of a chunk that event read in full and whose
// only effect was to hand one string value to addText: no usage, no error,
// no event type. Every other chunk of a stream usually has the same bytes
// around a different value (vLLM repeats the id, created, model, index and
// the null members in each), and fromTemplate then reads it without the
// walk.
func (m *StreamMeter) learn(data []byte) {
	if m.noTemplate || m.adds != 1 {
		return
	}
	// added is a slice of data (every value the walk hands on is): its
	// offset is what data's capacity has beyond it, checked by address.
	off := cap(data) - cap(m.added)
	end := off + len(m.added)
	if off <= 0 || end > len(data) || &data[off] != &m.added[0] {
		return
	}
	m.tmpl = append(append(m.tmpl[:0], data[:off]...), data[end:]...)
	m.tmplPre = off
}

// fromTemplate returns the string value of a chunk shaped like the learnt one:
// the same bytes before and after a value that is one JSON string. Reading
// the chunk in full would take the same path through the same members and
// hand that value, and only it, to addText: the walk looks at a string
// value's bytes only to find where it ends, which skipString does here.
func (m *StreamMeter) fromTemplate(data []byte) ([]byte, bool) {
	pre, suf := m.tmpl[:m.tmplPre], m.tmpl[m.tmplPre:]
	if len(data) < len(m.tmpl)+2 || !bytes.HasPrefix(data, pre) || !bytes.HasSuffix(data, suf) {
		return nil, false
	}
	v := data[len(pre) : len(data)-len(suf)]
	if v[0] != '"' || skipString(v, 0) != len(v) {
		return nil, false
	}
	return v, true
}

// addText keeps the text of a string value for estimation.
func (m *StreamMeter) addText(v []byte) {
	body, ok := stringBody(v)
	if !ok {
		return
	}
	m.adds++
	m.added = v
	if len(body) == 0 {
		return
	}
	m.first = true
	m.text = appendUnescaped(m.text, body)
}

// spill counts and drops the kept text up to its last whitespace (or, in text
// without any, a character boundary) until at most textKeep bytes remain.
func (m *StreamMeter) spill() {
	for len(m.text) > textKeep {
		cut := lastSpace(m.text)
		if cut <= 0 || len(m.text)-cut > textKeep {
			cut = textKeep
			for cut > 0 && !utf8.RuneStart(m.text[cut]) {
				cut--
			}
			if cut == 0 {
				cut = textKeep
			}
		}
		if m.counter == nil {
			m.counted += int64(cut+3) / 4 // countText's fallback, without a copy
		} else {
			m.counted += countGenerated(m.counter, string(m.text[:cut]))
		}
		m.text = m.text[:copy(m.text, m.text[cut:])]
	}
}

// lastSpace returns the index of the last whitespace byte of b, or -1.
func lastSpace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case ' ', '\n', '\t', '\r':
			return i
		}
	}
	return -1
}

// PromptReported returns the prompt's count the stream gave before its
// totals (a Messages stream's message_start), when it did.
func (m *StreamMeter) PromptReported() (int64, bool) { return m.msgPrompt, m.msgPromptOK }

// Usage returns the usage vLLM reported: the final usage chunk, the usage of
// response.completed, a Messages stream's message_delta, or else the latest running (continuous) usage, per
// choice index, with the prompt counted once and the completions summed. ok
// is false if vLLM reported none.
func (m *StreamMeter) Usage() (u Usage, ok bool) {
	if m.finalOK {
		return m.final, true
	}
	if !m.contOK {
		// An event too large to read in full (beam search's whole
		// response) still gives its top-level usage.
		return m.bigUsage, m.bigOK
	}
	group, cur := m.perPrompt, -1
	var gmax int64
	for i, c := range m.choices {
		if !c.seen {
			continue
		}
		u.CompletionTokens += c.completion
		g := 0
		if group > 0 {
			g = i / group
		}
		if g != cur {
			u.PromptTokens += gmax
			gmax, cur = 0, g
		}
		gmax = max(gmax, c.prompt)
	}
	u.PromptTokens += gmax
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u, true
}

// AtLineStart reports whether the next byte written starts a line (the
// last write ended with its line).
func (m *StreamMeter) AtLineStart() bool { return m.lineLen == 0 }

// UsageFinal reports whether Usage comes from a final total (the usage chunk
// or response.completed) rather than from running counts.
func (m *StreamMeter) UsageFinal() bool { return m.finalOK }

// UsageRunning reports that Usage comes from continuous usage only: the
// running counts of the last chunks, the stream having been cut or ended
// in an error event before its final usage chunk. A stream that ended
// without one (completions' beam search answers with the whole response
// in one event, one beam's usage reading like continuous usage) has its
// final counts there.
func (m *StreamMeter) UsageRunning() bool { return !m.finalOK && m.contOK && (!m.done || m.err != nil) }

// Err returns the error event seen in the stream, nil if none.
func (m *StreamMeter) Err() *UpstreamError { return m.err }

// Done reports whether the stream's end was seen: data: [DONE], a
// response.completed (or response.incomplete) event, or message_stop.
func (m *StreamMeter) Done() bool { return m.done }

// FirstToken reports whether an event with generated text (content,
// reasoning, tool-call or output-text deltas) has been relayed.
func (m *StreamMeter) FirstToken() bool { return m.first }

// EstimateSoFar is EstimateCompletion at no cost, for a stream still
// running: the text counted as it went by, and the last few KiB not yet
// counted at four bytes a token.
func (m *StreamMeter) EstimateSoFar() int64 { return m.counted + int64(len(m.text)+3)/4 }

// EstimateCompletion counts the text relayed so far with the meter's
// Counter: content, reasoning, tool-call names and arguments, completions
// text and Responses text deltas.
func (m *StreamMeter) EstimateCompletion() int64 {
	return m.counted + countGenerated(m.counter, string(m.text))
}
