package meter

import (
	"bytes"
	"math"
	"strconv"
)

// Usage is the token usage vLLM reported for one request.
//
// Chat, completions and embeddings report prompt_tokens, completion_tokens,
// total_tokens and prompt_tokens_details.cached_tokens; the Responses API
// reports input_tokens, output_tokens, total_tokens and
// input_tokens_details.cached_tokens, which map to the same fields; the
// Anthropic Messages API reports input_tokens and output_tokens, and (not
// from vLLM) the prompt read from and written to the cache apart from
// input_tokens, which the prompt includes here.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	// CachedTokens is the part of the prompt served from the prefix cache
	// (only with vLLM's --enable-prompt-tokens-details).
	CachedTokens int64
}

// UpstreamError is an error reported by the upstream in a response body or
// stream event, in any of the envelopes vLLM used over time: nested
// {"error":{message,type,param,code}}, flat {"object":"error",message,type,
// code}, {"error":"Unauthorized"}, or a Responses API error event.
type UpstreamError struct {
	Message string
	Type    string
	// Code is the error's code as text: vLLM sends the HTTP status as an
	// integer ("400"); OpenAI-style servers send a word ("rate_limit_exceeded").
	Code string
	// Status is the HTTP status the error carries (vLLM's integer code), or 0
	// when it names none.
	Status int
}

// Error implements error.
func (e *UpstreamError) Error() string {
	var b []byte
	b = append(b, "upstream error"...)
	if e.Status != 0 {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(e.Status), 10)
	}
	if e.Type != "" {
		b = append(b, " ("...)
		b = append(b, e.Type...)
		b = append(b, ')')
	}
	if e.Message != "" {
		b = append(b, ": "...)
		b = append(b, e.Message...)
	}
	return string(b)
}

// maxKeyBytes bounds the escaped length of a key that can still name one of
// the members this package reads: the longest such key is 22 characters, and
// each character takes at most 6 bytes escaped (\uXXXX).
const maxKeyBytes = 192

// keyName returns the key's unescaped bytes, using buf when the raw key holds
// escapes (clients may write "max\u005ftokens"; Python's json, which vLLM
// uses, decodes that to max_tokens, so the gate must too). Keys too long to be
// one the package reads come back raw and match nothing.
func keyName(raw []byte, buf *[maxKeyBytes]byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 || len(raw) > maxKeyBytes {
		return raw
	}
	u := appendUnescaped(buf[:0], raw)
	if len(u) > maxKeyBytes {
		return raw
	}
	return u
}

// count reads a token count. Anything that is not a non-negative integer
// counts as zero: a negative count from upstream must never credit a user.
func count(v []byte) int64 {
	n, ok := parseInt(v)
	if !ok || n < 0 {
		return 0
	}
	return n
}

// parseUsage reads a usage object in either the chat or the Responses shape.
// ok is false if v is not an object. Where both spellings of a count are
// present the chat one wins; a repeated key takes its last value, as Python's
// and Go's JSON decoders do.
//
// An object without a token count is no usage either: vLLM's speech to
// text reports {"type":"duration","seconds":16}, which must not read as a
// request of zero tokens.
func parseUsage(v []byte) (u Usage, ok bool) {
	f, ok := readUsage(v)
	if !ok || !(f.havePT || f.haveIn || f.haveCT || f.haveOut || f.haveTT) {
		return Usage{}, false
	}
	return f.usage(), true
}

// readUsage reads the members of a usage object; ok is false if v is not
// an object (or is malformed).
func readUsage(v []byte) (f usageFields, ok bool) {
	if f.readFast(v) {
		return f, true
	}
	return walkUsage(v)
}

// walkUsage is readUsage through the general object walk.
func walkUsage(v []byte) (f usageFields, ok bool) {
	bad := false
	for key, val := range members(v, &bad) {
		f.set(key, val)
	}
	if bad {
		return usageFields{}, false
	}
	return f, true
}

// usageFields collects the members of a usage object.
type usageFields struct {
	pt, inT, ct, outT, tt, cachedP, cachedI, cacheRead, cacheWrite      int64
	havePT, haveIn, haveCT, haveOut, haveTT, haveCachedP, haveCacheRead bool
}

// set reads one member: key unescaped, val its raw value.
func (f *usageFields) set(key, val []byte) {
	switch string(key) {
	case "prompt_tokens":
		f.pt, f.havePT = count(val), true
	case "input_tokens":
		f.inT, f.haveIn = count(val), true
	case "completion_tokens":
		f.ct, f.haveCT = count(val), true
	case "output_tokens":
		f.outT, f.haveOut = count(val), true
	case "total_tokens":
		f.tt, f.haveTT = count(val), true
	case "prompt_tokens_details":
		f.cachedP, f.haveCachedP = cachedTokens(val), true
	case "input_tokens_details":
		f.cachedI = cachedTokens(val)
	case "cache_read_input_tokens":
		f.cacheRead, f.haveCacheRead = count(val), true
	case "cache_creation_input_tokens":
		f.cacheWrite = count(val)
	}
}

// readFast reads v, a usage object, in one loop over its members: a key is
// found with one search for its closing quote, a value with skipValue, and
// each goes to set as the general walk's would, so both read the same
// usage (FuzzParseUsage). It is a second member loop beside objIter, kept
// because the usage of every response and every stream is read: vLLM's
// usage object takes about 350 ns here against 450 through the walk, and
// objIter alone, without the walk's iterator and key unescaping, saves
// nothing of that (2026-12-02). It reports false for a key with an escape
// (which the walk unescapes) or a malformed object, and the caller starts
// over with the walk.
func (f *usageFields) readFast(v []byte) bool {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return false
	}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == '}' {
		return true
	}
	for {
		if i >= len(v) || v[i] != '"' {
			return false
		}
		n := bytes.IndexByte(v[i+1:], '"')
		if n < 0 {
			return false
		}
		key := v[i+1 : i+1+n]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		if i = skipSpace(v, i+2+n); i >= len(v) || v[i] != ':' {
			return false
		}
		vs := skipSpace(v, i+1)
		ve := skipValue(v, vs)
		if ve <= vs {
			return false
		}
		f.set(key, v[vs:ve])
		if i = skipSpace(v, ve); i >= len(v) {
			return false
		}
		switch v[i] {
		case ',':
			i = skipSpace(v, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
}

// usage resolves the collected members: the chat spelling of each count
// where present, else the Responses one.
func (f *usageFields) usage() (u Usage) {
	switch {
	case f.havePT:
		u.PromptTokens = f.pt
	case f.haveTT && !f.haveIn && !f.haveCT && !f.haveOut:
		// Rerank's usage before 2025 was {"total_tokens": N}: all prompt.
		u.PromptTokens = f.tt
	default:
		u.PromptTokens = satAdd(f.inT, satAdd(f.cacheRead, f.cacheWrite))
	}
	if f.haveCT {
		u.CompletionTokens = f.ct
	} else {
		u.CompletionTokens = f.outT
	}
	if f.haveTT {
		u.TotalTokens = f.tt
	} else {
		u.TotalTokens = satAdd(u.PromptTokens, u.CompletionTokens)
	}
	switch {
	case f.haveCachedP:
		u.CachedTokens = f.cachedP
	case f.haveCacheRead:
		u.CachedTokens = f.cacheRead
	default:
		u.CachedTokens = f.cachedI
	}
	return u
}

// satAdd adds two counts (never negative), stopping at the largest int64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// cachedTokens reads cached_tokens from a *_tokens_details object (or null).
func cachedTokens(v []byte) int64 {
	var n int64
	for key, val := range members(v, nil) {
		if string(key) == "cached_tokens" {
			n = count(val)
		}
	}
	return n
}

// parseErrorValue reads the value of a top-level "error" member: an object
// with message/type/code, or a bare string such as vLLM's "Unauthorized".
// It returns nil for null.
func parseErrorValue(v []byte) *UpstreamError {
	v = trimSpace(v)
	if isNull(v) {
		return nil
	}
	if v[0] == '{' {
		return errorFromObject(v)
	}
	return &UpstreamError{Message: jsonText(v)}
}

// errorFromObject reads message, type and code from an error object: the
// inner object of the nested envelope, the flat envelope itself, or a
// Responses API error event.
func errorFromObject(obj []byte) *UpstreamError {
	e := &UpstreamError{}
	for key, val := range members(obj, nil) {
		switch string(key) {
		case "message":
			e.Message = jsonText(val)
		case "type":
			e.Type = jsonText(val)
		case "code":
			e.Code, e.Status = errorCode(val)
		}
	}
	return e
}

// errorFromFields builds an error from the raw values of a flat envelope's
// members (any of them may be nil when absent).
func errorFromFields(message, typ, code []byte) *UpstreamError {
	e := &UpstreamError{Message: jsonText(message), Type: jsonText(typ)}
	e.Code, e.Status = errorCode(code)
	return e
}

// errorCode reads an error code: an integer (vLLM's HTTP status) or a string.
func errorCode(v []byte) (code string, status int) {
	v = trimSpace(v)
	if isNull(v) {
		return "", 0
	}
	if n, ok := parseInt(v); ok {
		if n >= 100 && n <= 599 {
			status = int(n)
		}
		return strconv.FormatInt(n, 10), status
	}
	return jsonText(v), 0
}

// jsonText renders a value for a message: a string's text, null as "",
// anything else as its JSON.
func jsonText(v []byte) string {
	v = trimSpace(v)
	if isNull(v) {
		return ""
	}
	if body, ok := stringBody(v); ok {
		return string(decoded(nil, body))
	}
	return string(v)
}
