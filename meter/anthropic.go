package meter

import (
	"bytes"
	"encoding/json"
)

// The Messages API as vLLM converts it to chat (its Anthropic serving's
// _convert_anthropic_to_openai_request), for /tokenize to count exactly.

// anthropicBlock is a content block, the members the conversion reads.
type anthropicBlock struct {
	Type     string          `json:"type"`
	Text     *string         `json:"text"`
	Thinking *string         `json:"thinking"`
	ID       *string         `json:"id"`
	Name     *string         `json:"name"`
	Input    json.RawMessage `json:"input"`
	Content  json.RawMessage `json:"content"`
	Source   json.RawMessage `json:"source"`
}

// chatFromMessages returns the chat messages and tools vLLM renders a
// Messages request as; ok is false for a body vLLM would refuse (or whose
// shape the conversion does not know), which is then estimated.
func (r *Request) chatFromMessages() (messages, tools []byte, ok bool) {
	var out []map[string]any
	if r.system != nil {
		text, ok := systemText(r.system)
		if !ok {
			return nil, nil, false
		}
		if text != "" {
			out = append(out, map[string]any{"role": "system", "content": text})
		}
	}
	var in []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(r.messages, &in) != nil {
		return nil, nil, false
	}
	for _, m := range in {
		if isString(m.Content) {
			out = append(out, map[string]any{"role": m.Role, "content": m.Content})
			continue
		}
		var blocks []anthropicBlock
		if json.Unmarshal(m.Content, &blocks) != nil {
			return nil, nil, false
		}
		msg := map[string]any{"role": m.Role}
		var parts, calls []map[string]any
		var reasoning string
		for _, b := range blocks {
			switch {
			case b.Type == "text" && b.Text != nil && *b.Text != "":
				parts = append(parts, map[string]any{"type": "text", "text": *b.Text})
			case b.Type == "image" && b.Source != nil:
				var src struct {
					Data string `json:"data"`
				}
				_ = json.Unmarshal(b.Source, &src)
				parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]any{"url": src.Data}})
			case b.Type == "thinking" && b.Thinking != nil:
				reasoning += *b.Thinking
			case b.Type == "tool_use":
				args := "{}"
				if b.Input != nil && !isNull(b.Input) {
					args = pyDumps(b.Input)
				}
				calls = append(calls, map[string]any{"id": deref(b.ID), "type": "function",
					"function": map[string]any{"name": deref(b.Name), "arguments": args}})
			case b.Type == "tool_result":
				content := toolResultText(b.Content)
				if m.Role == "user" {
					out = append(out, map[string]any{"role": "tool", "tool_call_id": deref(b.ID), "content": content})
				} else {
					parts = append(parts, map[string]any{"type": "text", "text": "Tool result: " + content})
				}
			}
		}
		if reasoning != "" {
			msg["reasoning"] = reasoning
		}
		if calls != nil {
			msg["tool_calls"] = calls
		}
		switch {
		case len(parts) == 1 && parts[0]["type"] == "text":
			msg["content"] = parts[0]["text"]
		case len(parts) > 0:
			msg["content"] = parts
		case calls == nil && reasoning == "":
			continue // nothing left: vLLM drops the message
		}
		out = append(out, msg)
	}
	messages, err := json.Marshal(out)
	if err != nil {
		return nil, nil, false
	}
	if r.tools != nil {
		if tools = chatTools(r.tools); tools == nil {
			return nil, nil, false
		}
	}
	return messages, tools, true
}

// chatTools returns Anthropic tools as the chat tools vLLM converts them
// to, members in the order vLLM dumps them:
// [{"type":"function","function":{"name","description","parameters"}}].
// It returns nil if v is not an array.
func chatTools(v []byte) []byte {
	if !isArray(v) {
		return nil
	}
	b := []byte{'['}
	for tool := range elements(v) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		var name, description, schema []byte
		for key, val := range members(tool, nil) {
			switch string(key) {
			case "name":
				name = val
			case "description":
				description = val
			case "input_schema":
				schema = val
			}
		}
		b = append(b, `{"type":"function","function":{`...)
		sep := false
		for _, m := range [...]struct {
			key string
			val []byte
		}{{`"name":`, name}, {`"description":`, description}, {`"parameters":`, schema}} {
			if m.val == nil || isNull(m.val) {
				continue
			}
			if sep {
				b = append(b, ',')
			}
			b, sep = append(append(b, m.key...), m.val...), true
		}
		b = append(b, "}}"...)
	}
	return append(b, ']')
}

// systemText is the system prompt: a string, or its text blocks joined.
func systemText(v []byte) (string, bool) {
	if isString(v) {
		var s string
		return s, json.Unmarshal(v, &s) == nil
	}
	var blocks []anthropicBlock
	if json.Unmarshal(v, &blocks) != nil {
		return "", false
	}
	var s string
	for _, b := range blocks {
		if b.Type == "text" && b.Text != nil {
			s += *b.Text
		}
	}
	return s, true
}

// toolResultText is Python's str() of a tool result's content, as vLLM
// writes it, near enough: a string as it is, anything else as json.dumps
// writes it (Python's repr differs in its quotes only).
func toolResultText(v []byte) string {
	if len(v) == 0 || isNull(v) {
		return ""
	}
	if isString(v) {
		var s string
		_ = json.Unmarshal(v, &s)
		return s
	}
	return pyDumps(v)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// pyDumps writes a JSON value as Python's json.dumps does by default:
// compact but for a space after each comma and colon.
func pyDumps(v []byte) string {
	var c bytes.Buffer
	if len(v) == 0 || json.Compact(&c, v) != nil {
		return ""
	}
	out := make([]byte, 0, c.Len()+c.Len()/4)
	inStr, esc := false, false
	for _, ch := range c.Bytes() {
		out = append(out, ch)
		switch {
		case esc:
			esc = false
		case inStr && ch == '\\':
			esc = true
		case ch == '"':
			inStr = !inStr
		case !inStr && (ch == ',' || ch == ':'):
			out = append(out, ' ')
		}
	}
	return string(out)
}
