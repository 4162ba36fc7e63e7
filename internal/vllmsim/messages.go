package vllmsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// The Anthropic Messages API (VLLM.md §2.4), as vLLM serves it
// (vllm/entrypoints/anthropic/serving.py): the request is converted to a
// chat completion request and run through the chat path, so the prompt is
// rendered and counted as the equivalent chat request's. Streams are the
// chat stream converted event by event, framed "event: <type>\ndata:
// <json>\n\n", and end with message_stop and a bare "data: [DONE]".

// anthropicBlock is a content block; which fields count depends on type.
type anthropicBlock struct {
	Type      string          `json:"type"`
	Text      *string         `json:"text"`
	Source    json.RawMessage `json:"source"`
	ID        *string         `json:"id"`
	Name      *string         `json:"name"`
	Input     json.RawMessage `json:"input"`
	Content   json.RawMessage `json:"content"`
	IsError   *bool           `json:"is_error"`
	Thinking  *string         `json:"thinking"`
	Signature *string         `json:"signature"`
}

// jsonKind is the first byte of a JSON value, 0 when absent or null.
func jsonKind(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0
	}
	return raw[0]
}

// parseBlocks validates a list of content blocks as pydantic does.
func (s *Server) parseBlocks(raw json.RawMessage, where string) ([]anthropicBlock, *apiError) {
	var blocks []anthropicBlock
	err := json.Unmarshal(raw, &blocks)
	for i := 0; err == nil && i < len(blocks); i++ {
		err = checkBlock(&blocks[i])
	}
	if err != nil {
		e := s.validationError("Invalid " + where + ": " + err.Error())
		return nil, &e
	}
	return blocks, nil
}

func checkBlock(b *anthropicBlock) error {
	switch b.Type {
	case "text", "image", "tool_use", "tool_result", "thinking":
	default:
		return errString("type must be 'text', 'image', 'tool_use', 'tool_result' or 'thinking'")
	}
	if k := jsonKind(b.Source); k != 0 && k != '{' {
		return errString("source must be an object")
	}
	if k := jsonKind(b.Input); k != 0 && k != '{' {
		return errString("input must be an object")
	}
	switch jsonKind(b.Content) {
	case 0, '"':
	case '[':
		return json.Unmarshal(b.Content, new([]map[string]json.RawMessage))
	default:
		return errString("content must be a string or a list of objects")
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

// pyStr is Python's str() of a tool_result's content, "" when it is falsy.
func pyStr(raw json.RawMessage) string {
	switch jsonKind(raw) {
	case '"':
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	case '[':
		b, _ := appendPython(nil, raw, false)
		if string(b) != "[]" {
			return string(b)
		}
	}
	return ""
}

// jsonText is text as a JSON string, the content of a chat message.
func jsonText(text string) json.RawMessage {
	c, _ := json.Marshal(text)
	return c
}

// messagesToChat validates an Anthropic request's model, system, messages
// and tools and converts them as vLLM's _convert_anthropic_to_openai_request
// does: system to a system message, tool_use blocks to tool calls with
// json.dumps arguments, a user's tool_result blocks to tool messages placed
// before it, thinking to reasoning (which the template ignores), and a
// message left with nothing dropped.
func (s *Server) messagesToChat(req *apiRequest) ([]chatMessage, json.RawMessage, *apiError) {
	if req.Model == "" {
		e := s.validationError("Value error, Model is required: model")
		return nil, nil, &e
	}
	var msgs []chatMessage
	switch jsonKind(req.System) {
	case 0:
	case '"':
		var sys string
		_ = json.Unmarshal(req.System, &sys)
		if sys != "" {
			msgs = append(msgs, chatMessage{Role: "system", Content: jsonText(sys)})
		}
	case '[':
		blocks, aerr := s.parseBlocks(req.System, "system")
		if aerr != nil {
			return nil, nil, aerr
		}
		if len(blocks) > 0 {
			var sys strings.Builder
			for _, b := range blocks {
				if b.Type == "text" && b.Text != nil {
					sys.WriteString(*b.Text)
				}
			}
			msgs = append(msgs, chatMessage{Role: "system", Content: jsonText(sys.String())})
		}
	default:
		e := s.validationError("Invalid system: must be a string or a list of content blocks")
		return nil, nil, &e
	}

	var in []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if jsonKind(req.Messages) == 0 {
		e := s.validationError("Field required: messages")
		return nil, nil, &e
	}
	if err := json.Unmarshal(req.Messages, &in); err != nil {
		e := s.validationError("Invalid messages: " + err.Error())
		return nil, nil, &e
	}
	for _, am := range in {
		if am.Role != "user" && am.Role != "assistant" {
			e := s.validationError("Invalid messages: role must be 'user' or 'assistant'")
			return nil, nil, &e
		}
		switch jsonKind(am.Content) {
		case '"':
			msgs = append(msgs, chatMessage{Role: am.Role, Content: am.Content})
			continue
		case '[':
		default:
			e := s.validationError("Invalid messages: content must be a string or a list of content blocks")
			return nil, nil, &e
		}
		blocks, aerr := s.parseBlocks(am.Content, "messages")
		if aerr != nil {
			return nil, nil, aerr
		}
		m := chatMessage{Role: am.Role}
		var texts []string // text parts; image parts count nothing
		parts, reasoning := 0, false
		for _, b := range blocks {
			switch {
			case b.Type == "text" && b.Text != nil && *b.Text != "":
				texts = append(texts, *b.Text)
				parts++
			case b.Type == "image" && jsonKind(b.Source) == '{' && !isEmptyObject(b.Source):
				parts++
			case b.Type == "thinking" && b.Thinking != nil:
				reasoning = true
			case b.Type == "tool_use":
				var tc toolCall
				if b.Name != nil {
					tc.Function.Name = *b.Name
				}
				args := []byte("{}")
				if jsonKind(b.Input) != 0 {
					args, _ = appendPython(nil, b.Input, true)
				}
				tc.Function.Arguments = string(args)
				m.ToolCalls = append(m.ToolCalls, tc)
			case b.Type == "tool_result" && am.Role == "user":
				msgs = append(msgs, chatMessage{Role: "tool", Content: jsonText(pyStr(b.Content))})
			case b.Type == "tool_result":
				texts = append(texts, "Tool result: "+pyStr(b.Content))
				parts++
			}
		}
		if parts == 0 && len(m.ToolCalls) == 0 && !reasoning {
			continue
		}
		if parts > 0 {
			// One text part is plain content; several are a list, which
			// the template joins with "\n".
			m.Content = jsonText(strings.Join(texts, "\n"))
		}
		msgs = append(msgs, m)
	}

	tools, aerr := s.messagesTools(req)
	return msgs, tools, aerr
}

func isEmptyObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && len(m) == 0
}

// messagesTools validates tool_choice and converts the tools to the chat
// tools array, [{"type":"function","function":{name, description,
// parameters}}], with "type":"object" added to a schema that has no type,
// as vLLM's validator does. nil when tools is absent.
func (s *Server) messagesTools(req *apiRequest) (json.RawMessage, *apiError) {
	if jsonKind(req.ToolChoice) != 0 {
		var tc struct {
			Type string  `json:"type"`
			Name *string `json:"name"`
		}
		err := json.Unmarshal(req.ToolChoice, &tc)
		if err == nil && tc.Type != "auto" && tc.Type != "any" && tc.Type != "tool" {
			err = errString("type must be 'auto', 'any' or 'tool'")
		}
		if err != nil {
			e := s.validationError("Invalid tool_choice: " + err.Error())
			return nil, &e
		}
		if tc.Type == "tool" && tc.Name == nil {
			// Raised while building the chat request (vLLM PR #52246: 400).
			e := badRequest("1 validation error for ChatCompletionNamedToolChoiceParam\nfunction.name\n  Input should be a valid string [type=string_type, input_value=None, input_type=NoneType]\n    For further information visit https://errors.pydantic.dev/2.12/v/string_type", "")
			return nil, &e
		}
	}
	if jsonKind(req.Tools) == 0 {
		return nil, nil
	}
	var tools []struct {
		Name        *string         `json:"name"`
		Description *string         `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	}
	err := json.Unmarshal(req.Tools, &tools)
	out := []byte{'['}
	for i := 0; err == nil && i < len(tools); i++ {
		t := &tools[i]
		if t.Name == nil || jsonKind(t.InputSchema) != '{' {
			err = errString("a tool needs a name and an input_schema object")
			break
		}
		var schema bytes.Buffer
		_ = json.Compact(&schema, t.InputSchema)
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(t.InputSchema, &fields)
		if _, ok := fields["type"]; !ok {
			schema.Truncate(schema.Len() - 1)
			if len(fields) > 0 {
				schema.WriteByte(',')
			}
			schema.WriteString(`"type":"object"}`)
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"type":"function","function":{"name":`...)
		out = appendString(out, *t.Name)
		if t.Description != nil {
			out = append(out, `,"description":`...)
			out = appendString(out, *t.Description)
		}
		out = append(out, `,"parameters":`...)
		out = append(out, schema.Bytes()...)
		out = append(out, "}}"...)
	}
	if err != nil {
		e := s.validationError("Invalid tools: " + err.Error())
		return nil, &e
	}
	return append(out, ']'), nil
}

// stopReason maps a chat finish_reason to the Anthropic stop_reason.
func stopReason(finish string) string {
	if finish == "length" {
		return "max_tokens"
	}
	return "end_turn"
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	msgs, tools, aerr := s.messagesToChat(req)
	if aerr == nil && req.MaxTokens == nil {
		e := s.validationError("Field required: max_tokens")
		if req.MaxTokensNull {
			e.msg = "Input should be a valid integer: max_tokens"
		}
		aerr = &e
	} else if aerr == nil && *req.MaxTokens <= 0 {
		e := s.validationError("Value error, max_tokens must be positive: max_tokens")
		aerr = &e
	}
	if aerr != nil {
		s.writeMessagesError(w, *aerr)
		return
	}
	// The chat request gets max_tokens and max_completion_tokens alike.
	g, aerr := s.startChat(req.Model, msgs, tools, true, false, nil, req.MaxTokens, ov)
	if aerr != nil {
		s.writeMessagesError(w, *aerr)
		return
	}
	id := s.requestID("chatcmpl-", r)

	if !req.stream() {
		o := g.run(r.Context(), discard{})
		if o == outcomeError {
			g.finish(o)
			s.writeMessagesError(w, generationError)
			return
		}
		s.endJSON(w, g, o, func() { writeJSON(w, http.StatusOK, s.appendMessage(nil, id, g)) })
		return
	}
	sw, err := startStream(w)
	if err != nil {
		g.finish(outcomeAborted)
		return
	}
	ms := &messagesStream{s: s, sw: sw, g: g, id: id}
	o := g.run(r.Context(), ms)
	g.finish(o)
	switch o {
	case outcomeAborted:
	case outcomeCrash:
		panic(http.ErrAbortHandler)
	case outcomeError:
		// vLLM's converter cannot read the chat error event as a chunk and
		// reports that instead; no content_block_stop, no usage.
		b := ms.begin("error")
		b = append(b, `{"type":"error","error":{"type":"internal_error","message":`...)
		b = appendString(b, s.messagesStreamError())
		b = append(b, "}}\n\n"...)
		if sw.send(b) == nil {
			_ = sw.send(append(sw.buf[:0], doneEvent...))
		}
	default:
		_ = ms.finishEvents()
	}
}

// appendMessage appends the non-streaming answer: model_dump with the nulls
// dropped, and a text block only when there is text.
func (s *Server) appendMessage(b []byte, id string, g *generation) []byte {
	c := &g.choices[0]
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"type":"message","role":"assistant","content":[`...)
	if c.emitted > 0 && !(c.eos && c.length == 1) {
		b = append(b, `{"type":"text","text":`...)
		b = appendJSONText(b, "", c)
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendString(b, g.model.name)
	b = append(b, `,"stop_reason":"`...)
	b = append(b, stopReason(c.finish)...)
	b = append(b, `","usage":{"input_tokens":`...)
	b = appendInt(b, g.prompt)
	b = append(b, `,"output_tokens":`...)
	b = appendInt(b, g.completionTokens())
	return append(b, "}}"...)
}

// messagesStreamError is the message of the error event that ends a failed
// stream: pydantic's ValidationError for the chat error event read as a
// chat chunk (pydantic 2.12 wording), which lacks "model" and "choices".
func (s *Server) messagesStreamError() string {
	ev := s.appendStreamError(nil, generationError)
	repr, _ := appendPython(nil, ev[len("data: "):len(ev)-2], false)
	in := string(repr)
	if len(in) > 50 { // pydantic-core keeps the first 25 and last 24
		in = in[:25] + "..." + in[len(in)-24:]
	}
	line := "\n  Field required [type=missing, input_value=" + in + ", input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.12/v/missing"
	return "2 validation errors for ChatCompletionStreamResponse\nmodel" + line + "\nchoices" + line
}

// messagesStream writes the events vLLM's message_stream_converter makes
// of the chat stream (role chunk with continuous usage, content chunks,
// usage chunk, [DONE]); each is one write, as each Python yield is.
type messagesStream struct {
	s    *Server
	sw   *streamWriter
	g    *generation
	id   string
	open bool // the text block was started
}

func (ms *messagesStream) begin(typ string) []byte {
	b := append(ms.sw.buf[:0], "event: "...)
	b = append(b, typ...)
	return append(b, "\ndata: "...)
}

// first turns the role chunk into message_start; its message's type and
// role are defaults, which exclude_unset drops.
func (ms *messagesStream) first() error {
	b := ms.begin("message_start")
	b = append(b, `{"type":"message_start","message":{"id":`...)
	b = appendString(b, ms.id)
	b = append(b, `,"content":[],"model":`...)
	b = appendString(b, ms.g.model.name)
	b = append(b, `,"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`...)
	b = appendInt(b, ms.g.prompt)
	b = append(b, `,"output_tokens":0}}}`+"\n\n"...)
	return ms.sw.send(b)
}

// emit sends a content chunk's text as a text_delta, starting the text
// block at the first text; a chunk with no text (an EOS alone) sends
// nothing.
func (ms *messagesStream) emit(c *choice, from, to int) error {
	if c.eos && from == c.length-1 {
		return nil
	}
	if !ms.open {
		ms.open = true
		b := ms.begin("content_block_start")
		b = append(b, `{"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}`+"\n\n"...)
		if err := ms.sw.send(b); err != nil {
			return err
		}
	}
	b := ms.begin("content_block_delta")
	b = append(b, `{"type":"content_block_delta","delta":{"type":"text_delta","text":"`...)
	b = c.appendText(b, from, to)
	b = append(b, `"},"index":0}`+"\n\n"...)
	return ms.sw.send(b)
}

// finishEvents turns the usage chunk into content_block_stop and
// message_delta, and [DONE] into message_stop and [DONE].
func (ms *messagesStream) finishEvents() error {
	if ms.open {
		b := ms.begin("content_block_stop")
		b = append(b, `{"type":"content_block_stop","index":0}`+"\n\n"...)
		if err := ms.sw.send(b); err != nil {
			return err
		}
	}
	b := ms.begin("message_delta")
	b = append(b, `{"type":"message_delta","delta":{"stop_reason":"`...)
	b = append(b, stopReason(ms.g.choices[0].finish)...)
	b = append(b, `"},"usage":{"input_tokens":`...)
	b = appendInt(b, ms.g.prompt)
	b = append(b, `,"output_tokens":`...)
	b = appendInt(b, ms.g.completionTokens())
	b = append(b, "}}\n\n"...)
	if err := ms.sw.send(b); err != nil {
		return err
	}
	if err := ms.sw.send(append(ms.begin("message_stop"), `{"type":"message_stop"}`+"\n\n"...)); err != nil {
		return err
	}
	return ms.sw.send(append(ms.sw.buf[:0], doneEvent...))
}

// handleCountTokens answers POST /v1/messages/count_tokens with the
// input_tokens /v1/messages would report for the same request.
func (s *Server) handleCountTokens(w http.ResponseWriter, _ *http.Request, req *apiRequest, _ simOverrides) {
	msgs, tools, aerr := s.messagesToChat(req)
	if aerr == nil {
		_, aerr = s.lookupModel(req.Model)
	}
	if aerr != nil {
		s.writeMessagesError(w, *aerr)
		return
	}
	pb := promptBuilder{tok: s.tok, bos: s.cfg.ChatBOS}
	if err := renderChat(&pb, msgs, tools, true, false, s.cfg.ResponseRole); err != nil {
		s.writeMessagesError(w, badRequest(err.Error(), "messages"))
		return
	}
	writeJSON(w, http.StatusOK, append(appendInt([]byte(`{"input_tokens":`), pb.n), '}'))
}
