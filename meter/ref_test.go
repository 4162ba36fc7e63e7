package meter

// Reference implementations built on encoding/json, to check the
// allocation-free scanner against. They decode into maps, so a repeated key
// takes its last value and keys match exactly, as in Python's json (which
// vLLM and its clients use).

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// refObject decodes an object; ok is false for anything else (null too).
func refObject(raw []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// refString decodes a string value.
func refString(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// refInt reads an integer-valued number.
func refInt(raw []byte) (int64, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	if strings.ContainsAny(s, ".eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && f == math.Trunc(f) && f < 1<<63 && f >= -(1<<63) {
			return int64(f), true
		}
	}
	return 0, false
}

func refCount(raw []byte) int64 {
	n, ok := refInt(raw)
	if !ok || n < 0 {
		return 0
	}
	return n
}

func refIsNull(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	return raw == nil || string(raw) == "null"
}

func refUsage(raw []byte) (Usage, bool) {
	m, ok := refObject(raw)
	if !ok {
		return Usage{}, false
	}
	var u Usage
	_, hasIn := m["input_tokens"]
	_, hasCT := m["completion_tokens"]
	_, hasOut := m["output_tokens"]
	if v, ok := m["prompt_tokens"]; ok {
		u.PromptTokens = refCount(v)
	} else if tt, ok := m["total_tokens"]; ok && !hasIn && !hasCT && !hasOut {
		u.PromptTokens = refCount(tt) // rerank's old {"total_tokens": N}
	} else {
		// Anthropic's shape counts the cache's part of the prompt apart.
		for _, k := range []string{"input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} {
			if n := refCount(m[k]); u.PromptTokens > math.MaxInt64-n {
				u.PromptTokens = math.MaxInt64
			} else {
				u.PromptTokens += n
			}
		}
	}
	if v, ok := m["completion_tokens"]; ok {
		u.CompletionTokens = refCount(v)
	} else {
		u.CompletionTokens = refCount(m["output_tokens"])
	}
	if v, ok := m["total_tokens"]; ok {
		u.TotalTokens = refCount(v)
	} else {
		u.TotalTokens = min(u.PromptTokens+u.CompletionTokens, math.MaxInt64)
		if u.TotalTokens < u.PromptTokens {
			u.TotalTokens = math.MaxInt64
		}
	}
	details, ok := m["prompt_tokens_details"]
	if read, isRead := m["cache_read_input_tokens"]; !ok && isRead {
		u.CachedTokens = refCount(read)
		return u, true
	}
	if !ok {
		details = m["input_tokens_details"]
	}
	if d, ok := refObject(details); ok {
		u.CachedTokens = refCount(d["cached_tokens"])
	}
	return u, true
}

// refText renders a value as UpstreamError text.
func refText(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if refIsNull(raw) {
		return ""
	}
	if s, ok := refString(raw); ok {
		return s
	}
	return string(raw)
}

func refCode(raw []byte) (string, int) {
	if refIsNull(raw) {
		return "", 0
	}
	if n, ok := refInt(raw); ok {
		st := 0
		if n >= 100 && n <= 599 {
			st = int(n)
		}
		return strconv.FormatInt(n, 10), st
	}
	return refText(raw), 0
}

func refErrorFields(m map[string]json.RawMessage) *UpstreamError {
	e := &UpstreamError{Message: refText(m["message"]), Type: refText(m["type"])}
	e.Code, e.Status = refCode(m["code"])
	return e
}

// refErrorValue reads a top-level "error" value.
func refErrorValue(raw []byte) *UpstreamError {
	if refIsNull(raw) {
		return nil
	}
	if m, ok := refObject(raw); ok {
		return refErrorFields(m)
	}
	if bytes.TrimSpace(raw)[0] == '{' {
		return &UpstreamError{} // an object that does not decode: not reachable for valid JSON
	}
	return &UpstreamError{Message: refText(raw)}
}

// refBody is what a JSONMeter must find in a whole body.
func refBody(body []byte) (u Usage, ok bool, e *UpstreamError) {
	m, isObj := refObject(body)
	if !isObj {
		return Usage{}, false, nil
	}
	if v, present := m["usage"]; present && !refIsNull(v) {
		u, ok = refUsage(v)
	}
	if v, present := m["error"]; present {
		e = refErrorValue(v)
	}
	if e == nil {
		if s, isStr := refString(m["object"]); isStr && s == "error" {
			e = refErrorFields(m)
		}
	}
	return u, ok, e
}

// refEventResult is what a StreamMeter must find in one event's data.
type refEventResult struct {
	usage     Usage
	usageOK   bool
	final     bool
	usageOnly bool
	err       *UpstreamError
	done      bool
	text      string
}

// refEvent reads one event's data (with no event: line).
func refEvent(payload []byte) (r refEventResult) {
	m, ok := refObject(payload)
	if !ok {
		return r
	}
	if v, present := m["error"]; present {
		if r.err = refErrorValue(v); r.err != nil {
			return r
		}
	}
	typ, _ := refString(m["type"])
	if typ == "error" || strings.HasPrefix(typ, "response.") {
		resp, _ := refObject(m["response"])
		respUsage := func() {
			if v := resp["usage"]; !refIsNull(v) {
				if u, ok := refUsage(v); ok {
					r.usage, r.usageOK, r.final = u, true, true
				}
			}
		}
		switch typ {
		case "error":
			r.err = refErrorFields(m)
		case "response.completed", "response.incomplete":
			respUsage()
			r.done = true
		case "response.failed":
			respUsage()
			if r.err = refErrorValue(resp["error"]); r.err == nil {
				r.err = &UpstreamError{Message: "response failed"}
			}
		default:
			if strings.HasSuffix(typ, ".delta") && !strings.Contains(typ, "audio") {
				s, _ := refString(m["delta"])
				r.text += s
			}
		}
		return r
	}
	n, first := -1, int64(0)
	var choices []json.RawMessage
	if v, present := m["choices"]; present && json.Unmarshal(v, &choices) == nil && !refIsNull(v) {
		n = len(choices)
		for i, c := range choices {
			cm, ok := refObject(c)
			if !ok {
				continue
			}
			if i == 0 {
				first, _ = refInt(cm["index"])
			}
			s, _ := refString(cm["text"])
			r.text += s
			r.text += refDeltaText(cm["delta"])
			r.text += refDeltaText(cm["message"])
		}
	}
	v := m["usage"]
	if refIsNull(v) {
		return r
	}
	u, ok := refUsage(v)
	if !ok {
		return r
	}
	if n == 1 {
		if first >= 0 && first < maxChoiceIndex {
			r.usage = Usage{u.PromptTokens, u.CompletionTokens, u.PromptTokens + u.CompletionTokens, 0}
			r.usageOK = true
		}
		return r
	}
	r.usage, r.usageOK, r.final, r.usageOnly = u, true, true, n == 0
	return r
}

func refDeltaText(raw []byte) string {
	d, ok := refObject(raw)
	if !ok {
		return ""
	}
	var out string
	if s, ok := refString(d["reasoning"]); ok {
		out += s
	} else {
		s, _ := refString(d["reasoning_content"])
		out += s
	}
	s, _ := refString(d["content"])
	out += s
	s, _ = refString(d["refusal"])
	out += s
	var calls []json.RawMessage
	if json.Unmarshal(d["tool_calls"], &calls) == nil {
		for _, c := range calls {
			cm, ok := refObject(c)
			if !ok {
				continue
			}
			fm, ok := refObject(cm["function"])
			if !ok {
				continue
			}
			s, _ := refString(fm["name"])
			out += s
			s, _ = refString(fm["arguments"])
			out += s
		}
	}
	return out
}
