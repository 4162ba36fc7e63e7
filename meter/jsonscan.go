package meter

import (
	"bytes"
	"iter"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small JSON scanner that works on complete values held in
// memory. It never allocates: it reports the raw bytes of keys and values as
// sub-slices of its input and unescapes strings only on request, into a buffer
// the caller owns. It is lenient (it does not validate everything a strict
// parser would) but never reads out of bounds; callers that need strict
// validity check it with valid (valid.go) first.

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipSpace returns the index of the first non-whitespace byte of b at or
// after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// trimSpace drops leading and trailing JSON whitespace.
func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// skipString returns the index just past the string that starts with the
// quote at b[i], or -1 if it is not terminated.
func skipString(b []byte, i int) int {
	q, _ := strEnd(b, i+1, false)
	if q < 0 {
		return -1
	}
	return q + 1
}

// strEnd finds the quote that closes a string whose content goes on at
// b[i:]; esc says that the byte before b[i] was a backslash escaping b[i].
// It returns the quote's index, or -1 and whether b ends inside an escape
// when the string goes on past b (a stream's next write).
func strEnd(b []byte, i int, esc bool) (q int, escOut bool) {
	if esc {
		if i >= len(b) {
			return -1, true
		}
		i++
	}
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return -1, backslashRun(b, len(b), i)%2 == 1
		}
		q += i
		// The quote is escaped exactly when an odd number of backslashes
		// precedes it; the run cannot reach past where the content began.
		if backslashRun(b, q, i)%2 == 0 {
			return q, false
		}
		i = q + 1
	}
}

// backslashRun counts the backslashes just before b[end], not looking
// before b[from].
func backslashRun(b []byte, end, from int) int {
	n := 0
	for k := end - 1; k >= from && b[k] == '\\'; k-- {
		n++
	}
	return n
}

// skipValue returns the index just past the value starting at b[i] (which
// must not be whitespace), or -1 if the value is malformed or truncated.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case '}', ']', ',', ':':
		return -1
	default:
		// A number or a literal: runs until a delimiter.
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ':' || c == '"' || c == '{' || c == '[' || isSpace(c) {
				break
			}
			j++
		}
		return j
	}
}

// isNull reports whether the (trimmed) value v is the literal null or absent.
func isNull(v []byte) bool { return len(v) == 0 || string(v) == "null" }

// objIter walks the members of one JSON object.
type objIter struct {
	b   []byte
	i   int
	bad bool
	// vs and ve are the offsets in b of the value next returned last.
	vs, ve int
	// end is the offset just past the object, once its '}' was reached.
	end int
}

// newObjIter starts iterating the object v (leading whitespace allowed). ok is
// false if v is not an object.
func newObjIter(v []byte) (it objIter, ok bool) {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return objIter{bad: true}, false
	}
	return objIter{b: v, i: i + 1}, true
}

// objAt starts iterating the object whose '{' is at b[i].
func objAt(b []byte, i int) objIter { return objIter{b: b, i: i + 1} }

// next returns the next member: key is the raw key without its quotes (still
// escaped), val the raw value with surrounding whitespace removed. ok is false
// at the end of the object or on malformed input (then it.bad is set).
func (it *objIter) next() (key, val []byte, ok bool) {
	key, vs, ok := it.head()
	if !ok || !it.done(vs, skipValue(it.b, vs)) {
		return nil, nil, false
	}
	return key, it.b[vs:it.ve], true
}

// head reads the next member up to its value: key is the raw key, vs the
// offset of the value's first byte. The caller then moves past the value
// with skip, or with done when it read the value itself.
func (it *objIter) head() (key []byte, vs int, ok bool) {
	if it.bad || it.i < 0 {
		return nil, 0, false
	}
	b := it.b
	i := skipSpace(b, it.i)
	if it.ve > 0 && i < len(b) && b[i] != '}' {
		// Members after the first follow a comma.
		if b[i] != ',' {
			it.bad = true
			return nil, 0, false
		}
		if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
			it.bad = true
			return nil, 0, false
		}
	}
	if i >= len(b) {
		it.bad = true
		return nil, 0, false
	}
	if b[i] == '}' {
		it.i, it.end = -1, i+1
		return nil, 0, false
	}
	if b[i] != '"' {
		it.bad = true
		return nil, 0, false
	}
	ke := skipString(b, i)
	if ke < 0 {
		it.bad = true
		return nil, 0, false
	}
	key = b[i+1 : ke-1]
	i = skipSpace(b, ke)
	if i >= len(b) || b[i] != ':' {
		it.bad = true
		return nil, 0, false
	}
	return key, skipSpace(b, i+1), true
}

// skip moves past the value that starts at b[vs]; false if it is malformed.
func (it *objIter) skip(vs int) bool {
	return it.done(vs, skipValue(it.b, vs))
}

// done records that the value at b[vs:ve] was read (ve < 0: malformed).
func (it *objIter) done(vs, ve int) bool {
	if ve < 0 || ve == vs {
		it.bad = true
		return false
	}
	it.i, it.vs, it.ve = ve, vs, ve
	return true
}

// arrIter walks the elements of one JSON array.
type arrIter struct {
	b   []byte
	i   int
	n   int // elements returned
	bad bool
	// end is the offset just past the array, once its ']' was reached.
	end int
}

// newArrIter starts iterating the array v. ok is false if v is not an array.
func newArrIter(v []byte) (it arrIter, ok bool) {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '[' {
		return arrIter{bad: true}, false
	}
	return arrIter{b: v, i: i + 1}, true
}

// arrAt starts iterating the array whose '[' is at b[i].
func arrAt(b []byte, i int) arrIter { return arrIter{b: b, i: i + 1} }

// next returns the next element, trimmed; ok is false at the end or on
// malformed input.
func (it *arrIter) next() (val []byte, ok bool) {
	vs, ok := it.head()
	if !ok || !it.done(vs, skipValue(it.b, vs)) {
		return nil, false
	}
	return it.b[vs:it.i], true
}

// head finds the next element and returns the offset of its first byte; the
// caller then moves past it with done (or reads it through next).
func (it *arrIter) head() (vs int, ok bool) {
	if it.bad || it.i < 0 {
		return 0, false
	}
	b := it.b
	i := skipSpace(b, it.i)
	if it.n > 0 && i < len(b) && b[i] != ']' {
		// Elements after the first follow a comma.
		if b[i] != ',' {
			it.bad = true
			return 0, false
		}
		if i = skipSpace(b, i+1); i < len(b) && b[i] == ']' {
			it.bad = true
			return 0, false
		}
	}
	if i >= len(b) {
		it.bad = true
		return 0, false
	}
	if b[i] == ']' {
		it.i, it.end = -1, i+1
		return 0, false
	}
	return i, true
}

// done records that the element at b[vs:ve] was read (ve < 0: malformed).
func (it *arrIter) done(vs, ve int) bool {
	if ve < 0 || ve == vs {
		it.bad = true
		return false
	}
	it.i = ve
	it.n++
	return true
}

// arrayLen counts the elements of the array v; -1 if v is not an array.
func arrayLen(v []byte) int {
	it, ok := newArrIter(v)
	if !ok {
		return -1
	}
	n := 0
	for {
		if _, ok := it.next(); !ok {
			break
		}
		n++
	}
	return n
}

// keyIs reports whether the raw (possibly escaped) key equals k.
func keyIs(raw []byte, k string) bool {
	var kb [maxKeyBytes]byte
	return string(keyName(raw, &kb)) == k
}

// isObject reports whether v starts like an object (leading whitespace
// allowed); members then walks it.
func isObject(v []byte) bool {
	i := skipSpace(v, 0)
	return i < len(v) && v[i] == '{'
}

// isArray reports whether v starts like an array (leading whitespace
// allowed); elements then walks it.
func isArray(v []byte) bool {
	i := skipSpace(v, 0)
	return i < len(v) && v[i] == '['
}

// elements iterates the raw elements of the array v; it yields nothing if v
// is not an array and stops at a malformed element.
func elements(v []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		it, ok := newArrIter(v)
		if !ok {
			return
		}
		for {
			el, more := it.next()
			if !more || !yield(el) {
				return
			}
		}
	}
}

// members iterates the members of the object v: each key unescaped (in a
// buffer reused from one member to the next) with its raw value. If bad is
// not nil, *bad reports whether v was not an object or was malformed; the
// members yielded before the fault are then not to be trusted.
func members(v []byte, bad *bool) iter.Seq2[[]byte, []byte] {
	return func(yield func(key, val []byte) bool) {
		it, ok := newObjIter(v)
		if !ok {
			if bad != nil {
				*bad = true
			}
			return
		}
		var kb [maxKeyBytes]byte
		for {
			key, val, more := it.next()
			if !more {
				break
			}
			if !yield(keyName(key, &kb), val) {
				return
			}
		}
		if bad != nil {
			*bad = it.bad
		}
	}
}

// member returns the value of the object's member named k (its last
// occurrence), or nil.
func member(obj []byte, k string) []byte {
	var v []byte
	bad := false
	for key, val := range members(obj, &bad) {
		if string(key) == k {
			v = val
		}
	}
	if bad {
		return nil
	}
	return v
}

// isString reports whether v is a JSON string value.
func isString(v []byte) bool { return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' }

// stringBody returns the raw content of the string value v without its quotes;
// ok is false if v is not a string.
func stringBody(v []byte) (body []byte, ok bool) {
	if !isString(v) {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

// stringEq reports whether the string value v equals s after unescaping.
func stringEq(v []byte, s string) bool {
	body, ok := stringBody(v)
	if !ok {
		return false
	}
	return keyIs(body, s)
}

// decoded returns the decoded form of the raw JSON string content s: s
// itself when it holds no escape and is valid UTF-8 (the usual case, at no
// cost), else s decoded into buf's storage (appendUnescaped).
func decoded(buf, s []byte) []byte {
	if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return s
	}
	if cap(buf) < len(s) {
		// Decoded text is rarely longer than its escaped form: one
		// allocation, not one per doubling (a 400 KiB prompt with line
		// breaks made twenty).
		buf = make([]byte, 0, len(s))
	}
	return appendUnescaped(buf[:0], s)
}

// appendUnescaped appends the decoded form of the raw JSON string content s
// (between the quotes) to dst. Like encoding/json it replaces invalid UTF-8 and
// unpaired surrogates with U+FFFD.
func appendUnescaped(dst, s []byte) []byte {
	for {
		// Copy the run up to the next escape in one go.
		j := bytes.IndexByte(s, '\\')
		if j < 0 {
			return appendUTF8(dst, s)
		}
		dst = appendUTF8(dst, s[:j])
		s = s[j:]
		if len(s) < 2 {
			return dst // dangling backslash: malformed, stop here
		}
		n := 2
		switch s[1] {
		case '"', '\\', '/':
			dst = append(dst, s[1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, 2)
			if !ok {
				return dst
			}
			n = 6
			if utf16.IsSurrogate(r) {
				// A pair makes one character; anything else is replaced,
				// and what follows is read on its own (as encoding/json).
				r2, ok := lowSurrogate(s, 6)
				if d := utf16.DecodeRune(r, r2); ok && d != utf8.RuneError {
					r, n = d, 12
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst
		}
		s = s[n:]
	}
}

// appendUTF8 appends b, replacing each byte of invalid UTF-8 with U+FFFD.
func appendUTF8(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[:size]...)
		}
		b = b[size:]
	}
	return dst
}

// lowSurrogate reads a "\uXXXX" escape at s[i] if there is one.
func lowSurrogate(s []byte, i int) (rune, bool) {
	if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
		return hex4(s, i+2)
	}
	return 0, false
}

// hex4 decodes four hex digits at s[i:].
func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// parseInt reads an integer-valued JSON number: a plain integer, or a number
// with a fraction or exponent whose value is integral (5.0, 1e3), as pydantic
// accepts. ok is false for anything else, including values outside int64.
func parseInt(v []byte) (n int64, ok bool) {
	if len(v) == 0 {
		return 0, false
	}
	i, neg := 0, false
	if v[0] == '-' {
		neg, i = true, 1
	}
	if i >= len(v) {
		return 0, false
	}
	var u uint64
	for ; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return parseIntFloat(v)
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// parseIntFloat is parseInt's slow path for numbers written with a fraction
// or an exponent. It is rare, so the allocation of the conversion is fine.
func parseIntFloat(v []byte) (int64, bool) {
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f != math.Trunc(f) || f >= 1<<63 || f < -(1<<63) {
		return 0, false
	}
	return int64(f), true
}
