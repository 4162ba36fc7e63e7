package meter

import "bytes"

// maxCapture bounds the bytes a JSONMeter keeps of one member's value. A
// value longer than this is treated as absent.
const maxCapture = 64 << 10

// The top-level members a JSONMeter keeps.
const (
	capUsage = iota
	capError
	capObject // "object":"error" marks the flat (≤ v0.10.0) error envelope
	capMessage
	capType
	capCode
	numCaptures
)

// captureIndex maps a top-level key to the capture that keeps its value.
func captureIndex(key []byte) int {
	var kb [maxKeyBytes]byte
	switch string(keyName(key, &kb)) {
	case "usage":
		return capUsage
	case "error":
		return capError
	case "object":
		return capObject
	case "message":
		return capMessage
	case "type":
		return capType
	case "code":
		return capCode
	}
	return -1
}

// structural marks the bytes that matter inside a member's value.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true, ',': true}

// Scanner states of a JSONMeter.
const (
	jsStart   uint8 = iota // before the top-level value
	jsKey                  // in the top-level object, expecting a key or '}'
	jsInKey                // inside a top-level key
	jsColon                // after a key, expecting ':'
	jsValue                // after ':', expecting the value
	jsInValue              // inside a top-level member's value
	jsEnd                  // after the top-level object, or not an object
)

// JSONMeter scans a non-streaming JSON response as it is relayed, for the
// top-level "usage" and "error" members (and the flat error envelope's
// members), without buffering the body: it tracks nesting and strings and
// copies only those members' values, each up to 64 KiB. A key that repeats
// takes its last value, as JSON decoders do.
type JSONMeter struct {
	state uint8
	depth int  // nesting inside the current member's value
	inStr bool // inside a string
	esc   bool // after a backslash inside a string

	key     []byte
	capture int // the capture receiving the current value, or -1
	raw     [numCaptures][]byte
	set     [numCaptures]bool
}

// NewJSONMeter returns a meter for one response body.
func NewJSONMeter() *JSONMeter { return &JSONMeter{capture: -1} }

// Reset makes m ready for a new body, keeping its buffers.
func (m *JSONMeter) Reset() {
	m.state, m.depth, m.inStr, m.esc = jsStart, 0, false, false
	m.key, m.capture = m.key[:0], -1
	for i := range m.raw {
		m.raw[i], m.set[i] = reuse(m.raw[i]), false
	}
}

// Write scans the next bytes of the body.
func (m *JSONMeter) Write(p []byte) {
	i := 0
	// capStart is where the current value's bytes in p begin when they are
	// being captured.
	capStart := -1
	if m.state == jsInValue && m.capture >= 0 {
		capStart = 0
	}
	for i < len(p) && m.state != jsEnd {
		c := p[i]
		switch m.state {
		case jsStart:
			switch {
			case isSpace(c):
			case c == '{':
				m.state = jsKey
			default:
				m.state = jsEnd
			}
		case jsKey:
			switch {
			case isSpace(c), c == ',':
			case c == '"':
				m.state, m.key, m.esc = jsInKey, m.key[:0], false
			default: // '}' or malformed
				m.state = jsEnd
			}
		case jsInKey:
			// Keys the meter wants are short; longer ones are kept only in
			// part, which is enough to see they match nothing.
			j, esc := strEnd(p, i, m.esc)
			m.esc = esc
			if j < 0 {
				j = len(p)
			}
			if room := maxKeyBytes + 1 - len(m.key); room > 0 {
				m.key = append(m.key, p[i:i+min(j-i, room)]...)
			}
			if j == len(p) {
				i = j
				continue
			}
			m.state = jsColon
			i = j
		case jsColon:
			switch {
			case isSpace(c):
			case c == ':':
				m.state, m.capture = jsValue, -1
				if len(m.key) <= maxKeyBytes {
					m.capture = captureIndex(m.key)
				}
			default:
				m.state = jsEnd
			}
		case jsValue:
			if isSpace(c) {
				break
			}
			m.state, m.depth, m.inStr, m.esc = jsInValue, 0, false, false
			if m.capture >= 0 {
				m.raw[m.capture], m.set[m.capture] = m.raw[m.capture][:0], true
				capStart = i
			}
			continue // read c as part of the value
		case jsInValue:
			// Run through the value in this loop, not byte by byte through
			// the state switch: strings jump to their closing quote, and
			// only brackets and commas matter outside them.
			if m.inStr {
				j, esc := strEnd(p, i, m.esc)
				m.esc = esc
				if j < 0 { // the string goes on in the next write
					i = len(p)
					continue
				}
				m.inStr = false
				i = j + 1
			}
		value:
			for i < len(p) {
				for i < len(p) && !structural[p[i]] {
					i++ // numbers, literals, whitespace
				}
				if i == len(p) {
					break
				}
				switch p[i] {
				case '"':
					j, esc := strEnd(p, i+1, false)
					if j < 0 {
						m.inStr, m.esc = true, esc
						i = len(p)
						break value
					}
					i = j
				case '{', '[':
					m.depth++
				case ',':
					if m.depth == 0 { // the value ended
						m.endValue(p, capStart, i)
						capStart, m.state = -1, jsKey
						break value
					}
				default: // '}', ']'
					if m.depth == 0 { // the top-level object closes
						m.endValue(p, capStart, i)
						capStart, m.state = -1, jsEnd
						break value
					}
					m.depth--
				}
				i++
			}
			continue
		}
		i++
	}
	if capStart >= 0 && m.capture >= 0 {
		m.keep(p[capStart:min(i, len(p))])
	}
}

// WriteWhole scans a body that the caller knows is whole: its announced
// length, in one write, on a fresh (or Reset) meter. vLLM (and OpenAI) put
// "usage" among the last members, after
// the choices that make most of the body, so WriteWhole reads the top-level
// members from the end and stops at the first "usage" object it meets:
// tailUsage says when that is exact. Any other body goes through Write. For a
// body that is valid JSON the two report the same usage and error
// (FuzzJSONMeter holds them to it).
func (m *JSONMeter) WriteWhole(p []byte) {
	if v, ok := tailUsage(p); ok {
		m.raw[capUsage], m.set[capUsage] = append(m.raw[capUsage][:0], v...), true
		m.state = jsEnd
		return
	}
	m.Write(p)
}

// tailUsage returns the value of the last top-level "usage" member of the
// object in p, found by walking its members backwards from the end, when
// that value is an object and when it is all a forward scan would capture:
// no top-level "error" member nor "object":"error" (p holds no "error" in
// quotes but null-valued keys, nor a \u escape that could spell one or a
// key), p starts with '{' and ends with '}' (whitespace aside), and the
// member lies within p's last tailBudget bytes. It reports false for
// anything else, and then the caller scans forwards. The backward walk is
// exact for valid JSON: a string is skipped back to the last quote before it
// with an even run of backslashes before it. What comes before the usage
// member is not read, so for a body that is not JSON there (two objects,
// say) it may find a usage the forward scan would not.
func tailUsage(p []byte) ([]byte, bool) {
	lo := skipSpace(p, 0)
	if lo == len(p) || p[lo] != '{' {
		return nil, false
	}
	lo++ // the first byte inside the object
	if !onlyNullErrors(p) || bytes.Contains(p, unicodeEscape) {
		return nil, false
	}
	j := spaceBack(p, lo, len(p))
	if j == lo || p[j-1] != '}' {
		return nil, false
	}
	j-- // the members end before the closing brace
	floor := max(lo, len(p)-tailBudget)
	for {
		ve := spaceBack(p, lo, j)
		if ve == lo { // back at the opening brace
			return nil, false
		}
		vs := valueStartBack(p, lo, floor, ve)
		if vs < 0 {
			return nil, false
		}
		k := spaceBack(p, lo, vs)
		if k == lo || p[k-1] != ':' {
			return nil, false
		}
		k = spaceBack(p, lo, k-1)
		if k == lo || p[k-1] != '"' {
			return nil, false
		}
		ks := stringStartBack(p, lo, floor, k-1)
		if ks < 0 {
			return nil, false
		}
		key := p[ks+1 : k-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return nil, false
		}
		if string(key) == "usage" {
			if p[vs] != '{' {
				return nil, false
			}
			return p[vs:ve], true // under maxCapture, as tailBudget is
		}
		k = spaceBack(p, lo, ks)
		if k == lo || p[k-1] != ',' {
			return nil, false
		}
		j = k - 1
	}
}

// tailBudget bounds how far from its end tailUsage walks a body back. vLLM
// writes usage among its last few hundred bytes; a body that has it further
// up (or not at all) is read forwards rather than walked through twice.
const tailBudget = 4 << 10

var (
	quotedError   = []byte(`"error"`)
	unicodeEscape = []byte(`\u`)
)

// onlyNullErrors reports whether every "error" in quotes in p is a key whose
// value is null, as the Responses API writes on success: no such member
// makes an error. Anywhere else (a key with another value, or "object":"error")
// it may be one. Outside strings "error" in quotes is a key or a value, and a
// value is never followed by a colon.
func onlyNullErrors(p []byte) bool {
	for i := 0; ; {
		k := bytes.Index(p[i:], quotedError)
		if k < 0 {
			return true
		}
		i += k + len(quotedError)
		j := skipSpace(p, i)
		if j == len(p) || p[j] != ':' {
			return false
		}
		j = skipSpace(p, j+1)
		if !bytes.HasPrefix(p[j:], nullLiteral) {
			return false
		}
	}
}

var nullLiteral = []byte("null")

// spaceBack returns the index just past the last non-whitespace byte of
// p[lo:end], or lo if there is none.
func spaceBack(p []byte, lo, end int) int {
	for end > lo && isSpace(p[end-1]) {
		end--
	}
	return end
}

// valueStartBack returns where the value that ends just before p[end]
// starts, or -1 if it starts before p[floor]. The object's members begin at
// p[lo].
func valueStartBack(p []byte, lo, floor, end int) int {
	switch p[end-1] {
	case '"':
		return stringStartBack(p, lo, floor, end-1)
	case '}', ']':
		depth := 0
		for k := end - 1; k >= floor; k-- {
			switch p[k] {
			case '}', ']':
				depth++
			case '{', '[':
				if depth--; depth == 0 {
					return k
				}
			case '"':
				if k = stringStartBack(p, lo, floor, k); k < 0 {
					return -1
				}
			}
		}
		return -1
	}
	k := end // a number or a literal
	for k > floor && !scalarEnd[p[k-1]] {
		k--
	}
	if k == end || k == floor && floor > lo {
		return -1
	}
	return k
}

// scalarEnd marks the bytes that cannot be part of a number or a literal.
var scalarEnd = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, ':': true, ',': true, '{': true, '}': true, '[': true, ']': true, '"': true}

// stringStartBack returns the index of the quote that opens the string
// closed by the quote at p[q], or -1 if it is before p[floor]. The object's
// members begin at p[lo], which bounds a run of backslashes.
func stringStartBack(p []byte, lo, floor, q int) int {
	for {
		k := bytes.LastIndexByte(p[floor:q], '"')
		if k < 0 {
			return -1
		}
		k += floor
		if backslashRun(p, k, lo)%2 == 0 {
			return k
		}
		q = k
	}
}

// endValue finishes the value that ended at p[end].
func (m *JSONMeter) endValue(p []byte, capStart, end int) {
	if m.capture < 0 {
		return
	}
	if capStart >= 0 {
		m.keep(p[capStart:end])
	}
	m.capture = -1
}

// keep appends value bytes to the current capture; a value past maxCapture
// is dropped.
func (m *JSONMeter) keep(b []byte) {
	c := m.capture
	if !m.set[c] {
		return
	}
	if len(m.raw[c])+len(b) > maxCapture {
		m.raw[c], m.set[c] = m.raw[c][:0], false
		return
	}
	m.raw[c] = append(m.raw[c], b...)
}

// value returns a captured member's value, nil if absent.
func (m *JSONMeter) value(c int) []byte {
	if !m.set[c] {
		return nil
	}
	return trimSpace(m.raw[c])
}

// Usage returns the body's top-level usage; ok is false if it has none (or
// null).
func (m *JSONMeter) Usage() (Usage, bool) {
	v := m.value(capUsage)
	if isNull(v) {
		return Usage{}, false
	}
	return parseUsage(v)
}

// Err returns the error the body reports: a non-null top-level "error"
// (object or string), or the flat envelope ("object":"error" with message,
// type and code at the top level). It returns nil for a body without one.
func (m *JSONMeter) Err() *UpstreamError {
	if e := parseErrorValue(m.value(capError)); e != nil {
		return e
	}
	if stringEq(m.value(capObject), "error") {
		return errorFromFields(m.value(capMessage), m.value(capType), m.value(capCode))
	}
	return nil
}
