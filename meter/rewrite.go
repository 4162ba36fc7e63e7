package meter

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
)

// RewriteOptions says what Rewrite changes in a request body.
type RewriteOptions struct {
	// InjectUsage asks vLLM for the stream's usage chunk by setting
	// stream_options.include_usage to true. It applies only to streaming
	// chat and completions requests: vLLM rejects stream_options without
	// stream (400), and the other endpoints report usage without it.
	InjectUsage bool
	// MaxTokens is the per-choice output cap to set; 0 leaves the caps alone.
	MaxTokens int64
	// Model, when set, names the model of a request that named none
	// ("model" absent, null or ""): the upstream's default, which the gate
	// checked against the plan, spelt out so that the upstream serves that
	// one even if its default changed meanwhile.
	Model string
}

// edit replaces body[start:end] with text (an insertion when start == end).
type edit struct {
	start, end int
	text       []byte
}

// Rewrite returns body with the changes o asks for, made by splicing bytes:
// every other byte of the body stays as it was, key order included, and new
// members are appended at the end of their object. It returns body itself
// (the same slice) when there is nothing to change.
//
// InjectUsage sets include_usage:true in stream_options, adding the member or
// the object as needed and keeping any other stream_options fields. When the
// client had not asked for usage but had set continuous_usage_stats, that
// option is turned off: it only took effect together with include_usage, and
// the client must keep seeing the stream it asked for.
//
// MaxTokens sets the output cap: max_completion_tokens if the client used it,
// else max_tokens, for chat and completions; max_output_tokens for
// responses; max_tokens for messages. Any other cap member present (chat and completions carry two
// spellings, and servers differ on which one wins) is lowered to MaxTokens
// too; a cap the client set lower is never raised.
//
// Every occurrence of a repeated key is changed, so that a server reading
// the first occurrence is bound as well as one reading the last.
func Rewrite(body []byte, r *Request, o RewriteOptions) ([]byte, error) {
	if r.Endpoint.Audio() {
		// vLLM's cap there is per 30 s of audio: the gate sets none.
		if o.InjectUsage && r.Stream && !r.IncludeUsage {
			return rewriteForm(body, r)
		}
		return body, nil
	}
	inject := o.InjectUsage && r.Stream &&
		(r.Endpoint == EndpointChat || r.Endpoint == EndpointCompletions)
	var primary string
	var others []string
	if o.MaxTokens > 0 {
		switch r.Endpoint {
		case EndpointChat, EndpointChatBatch, EndpointOther:
			primary, others = "max_tokens", []string{"max_completion_tokens"}
			if r.MaxTokensField == "max_completion_tokens" {
				primary, others = "max_completion_tokens", []string{"max_tokens"}
			}
		case EndpointCompletions:
			primary, others = "max_tokens", []string{"max_completion_tokens"}
		case EndpointResponses:
			primary = "max_output_tokens"
		case EndpointMessages:
			primary = "max_tokens"
		}
	}
	if !inject && primary == "" && o.Model == "" {
		return body, nil
	}
	it, ok := newObjIter(body)
	if !ok {
		return nil, errors.New("meter: request body is not a JSON object")
	}
	var edits []edit
	var capText []byte
	if primary != "" {
		capText = strconv.AppendInt(nil, o.MaxTokens, 10)
	}
	var modelText []byte
	if o.Model != "" {
		modelText, _ = json.Marshal(o.Model) // a string always marshals
	}
	lastEnd := -1 // end of the last member's value: where new members go
	sawOptions, sawPrimary, sawModel := false, false, false
	var kb [maxKeyBytes]byte
	for {
		key, val, more := it.next()
		if !more {
			break
		}
		vs, ve := it.vs, it.ve
		lastEnd = ve
		name := string(keyName(key, &kb))
		switch {
		case inject && name == "stream_options":
			sawOptions = true
			e, err := injectUsage(val, vs, !r.IncludeUsage)
			if err != nil {
				return nil, err
			}
			edits = append(edits, e...)
		case primary != "" && name == primary:
			sawPrimary = true
			if string(val) != string(capText) {
				edits = append(edits, edit{vs, ve, capText})
			}
		case modelText != nil && name == "model":
			sawModel = true
			edits = append(edits, edit{vs, ve, modelText})
		case primary != "" && slices.Contains(others, name):
			if n, ok := parseInt(val); !ok || n > o.MaxTokens {
				edits = append(edits, edit{vs, ve, capText})
			}
		}
	}
	if it.bad {
		return nil, errors.New("meter: request body is not valid JSON")
	}
	closing := len(trimRight(body)) - 1 // the object's '}'
	if closing < 0 || body[closing] != '}' {
		return nil, errors.New("meter: request body is not a JSON object")
	}
	add := func(member string, value []byte) {
		var t []byte
		pos := closing
		if lastEnd >= 0 {
			t = append(t, ',')
			pos = lastEnd
		}
		t = append(t, '"')
		t = append(t, member...)
		t = append(t, `":`...)
		t = append(t, value...)
		edits = append(edits, edit{pos, pos, t})
	}
	if inject && !sawOptions {
		add("stream_options", []byte(`{"include_usage":true}`))
	}
	if primary != "" && !sawPrimary {
		add(primary, capText)
	}
	if modelText != nil && !sawModel {
		add("model", modelText)
	}
	if len(edits) == 0 {
		return body, nil
	}
	return splice(body, edits), nil
}

// trimRight drops trailing JSON whitespace.
func trimRight(b []byte) []byte {
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// injectUsage returns the edits that make the stream_options value v (at
// offset off in the body) ask for usage. With clearContinuous, a
// continuous_usage_stats:true is turned off (see Rewrite).
func injectUsage(v []byte, off int, clearContinuous bool) ([]edit, error) {
	if isNull(v) {
		return []edit{{off, off + len(v), []byte(`{"include_usage":true}`)}}, nil
	}
	it, ok := newObjIter(v)
	if !ok {
		return nil, errors.New("meter: stream_options is not an object")
	}
	var edits []edit
	lastEnd := -1
	sawInclude := false
	var kb [maxKeyBytes]byte
	for {
		key, val, more := it.next()
		if !more {
			break
		}
		lastEnd = it.ve
		switch string(keyName(key, &kb)) {
		case "include_usage":
			sawInclude = true
			if string(val) != "true" {
				edits = append(edits, edit{off + it.vs, off + it.ve, []byte("true")})
			}
		case "continuous_usage_stats":
			if clearContinuous && string(val) == "true" {
				edits = append(edits, edit{off + it.vs, off + it.ve, []byte("false")})
			}
		}
	}
	if it.bad {
		return nil, errors.New("meter: stream_options is not valid JSON")
	}
	if !sawInclude {
		if lastEnd >= 0 {
			edits = append(edits, edit{off + lastEnd, off + lastEnd, []byte(`,"include_usage":true`)})
		} else {
			closing := off + len(trimRight(v)) - 1
			edits = append(edits, edit{closing, closing, []byte(`"include_usage":true`)})
		}
	}
	return edits, nil
}

// splice applies non-overlapping edits to body in one new slice. Insertions
// at the same offset keep the order they were given in.
func splice(body []byte, edits []edit) []byte {
	slices.SortStableFunc(edits, func(a, b edit) int { return a.start - b.start })
	n := len(body)
	for _, e := range edits {
		n += len(e.text) - (e.end - e.start)
	}
	out := make([]byte, 0, n)
	pos := 0
	for _, e := range edits {
		out = append(out, body[pos:e.start]...)
		out = append(out, e.text...)
		pos = e.end
	}
	return append(out, body[pos:]...)
}
