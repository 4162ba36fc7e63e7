package vllmsim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

const errStreamOptions = "Stream options can only be defined when `stream=True`."

// checkStreamOptions applies vLLM's validator and parses stream_options.
func (s *Server) checkStreamOptions(req *apiRequest) (*StreamOptions, *apiError) {
	if pyTruthy(req.StreamOptionsRaw) && !req.stream() {
		e := s.validationError(errStreamOptions)
		return nil, &e
	}
	so, err := req.streamOptions()
	if err != nil {
		e := s.validationError("Invalid stream_options: " + err.Error())
		return nil, &e
	}
	return so, nil
}

func checkN(n *int) (int, *apiError) {
	if n == nil {
		return 1, nil
	}
	if *n < 1 {
		e := badRequest("n must be at least 1, got "+strconv.Itoa(*n)+".", "n")
		return 0, &e
	}
	return *n, nil
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	so, aerr := s.checkStreamOptions(req)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	if addGen && req.ContinueFinalMessage {
		s.writeError(w, s.validationError("Cannot set both `continue_final_message` and `add_generation_prompt` to True."))
		return
	}
	var msgs []chatMessage
	if len(req.Messages) == 0 || string(req.Messages) == "null" {
		s.writeError(w, s.validationError("Field required: messages"))
		return
	}
	if err := json.Unmarshal(req.Messages, &msgs); err != nil {
		s.writeError(w, s.validationError("Invalid messages: "+err.Error()))
		return
	}
	limit := req.MaxCompletionTokens
	if limit == nil {
		limit = req.MaxTokens
	}
	g, aerr := s.startChat(req.Model, msgs, req.Tools, addGen, req.ContinueFinalMessage, req.N, limit, ov)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	m := g.model
	role, echo := s.chatRole(msgs, addGen, req.Echo)
	id := s.requestID("chatcmpl-", r)
	created := time.Now().Unix()

	if !req.stream() {
		for i := range g.choices {
			g.choices[i].echo = echo
		}
		o := g.run(r.Context(), discard{})
		s.endJSON(w, g, o, func() { s.writeChatJSON(w, g, id, created, []string{role}) })
		return
	}
	include, continuous := s.usageFlags(so)
	cs := &chatStream{
		s: s, g: g, role: role, echo: echo, continuous: continuous,
		prefix: appendChunkPrefix(nil, id, "chat.completion.chunk", created, m.name),
	}
	sw, err := startStream(w)
	if err != nil {
		g.finish(outcomeAborted)
		return
	}
	cs.sw = sw
	s.endStream(sw, g, g.run(r.Context(), cs), cs.prefix, include, usageFinal)
}

// startChat is the chat path from the parsed messages to a started
// generation, shared with the APIs vLLM builds on chat (Anthropic
// Messages): it resolves the model, renders the prompt, sizes the n
// answers against limit (nil: the context left) and counts the request.
func (s *Server) startChat(model string, msgs []chatMessage, tools json.RawMessage, addGen, continueFinal bool, n, limit *int, ov simOverrides) (*generation, *apiError) {
	m, aerr := s.lookupModel(model)
	if aerr != nil {
		return nil, aerr
	}
	prompt, aerr := s.chatPrompt(msgs, tools, addGen, continueFinal)
	if aerr != nil {
		return nil, aerr
	}
	count, aerr := checkN(n)
	if aerr != nil {
		return nil, aerr
	}
	length, finish, aerr := s.outputBudget(prompt, limit, 0, ov)
	if aerr != nil {
		return nil, aerr
	}
	choices := make([]choice, count)
	for i := range choices {
		choices[i] = s.newChoice(i, prompt, length, finish)
	}
	return s.newGeneration(m, choices, prompt, ov), nil
}

// chatPrompt is the length of msgs (and tools) rendered with the
// emulator's chat template.
func (s *Server) chatPrompt(msgs []chatMessage, tools json.RawMessage, addGen, continueFinal bool) (int, *apiError) {
	pb := promptBuilder{tok: s.tok, bos: s.cfg.ChatBOS}
	if err := renderChat(&pb, msgs, tools, addGen, continueFinal, s.cfg.ResponseRole); err != nil {
		e := badRequest(err.Error(), "messages")
		return 0, &e
	}
	return pb.n, nil
}

// chatRole is the role of the answer to msgs (the response role, or the
// last message's without a generation prompt) and, with echo, the text
// echo repeats: the last message, when it has the answer's role.
func (s *Server) chatRole(msgs []chatMessage, addGen, echo bool) (role, echoed string) {
	role = s.cfg.ResponseRole
	if !addGen && len(msgs) > 0 {
		role = msgs[len(msgs)-1].Role
	}
	if echo && len(msgs) > 0 && msgs[len(msgs)-1].Role == role {
		echoed, _ = contentText(msgs[len(msgs)-1].Content)
	}
	return role, echoed
}

// chatStream writes chat.completion.chunk events (VLLM.md §3.3–3.4).
type chatStream struct {
	s          *Server
	sw         *streamWriter
	g          *generation
	prefix     []byte
	role       string
	echo       string
	continuous bool
}

// first sends one role chunk per choice, then the echo chunks.
func (cs *chatStream) first() error {
	for i := range cs.g.choices {
		c := &cs.g.choices[i]
		b := append(cs.sw.buf[:0], cs.prefix...)
		b = append(b, `{"index":`...)
		b = appendInt(b, c.index)
		b = append(b, `,"delta":{"role":`...)
		b = appendString(b, cs.role)
		b = append(b, `,"content":""},"logprobs":null,"finish_reason":null}]`...)
		if cs.continuous {
			b = append(b, `,"usage":`...)
			b = cs.s.appendUsage(b, c.prompt, 0, usageChunk)
		}
		if !cs.s.cfg.LegacyFields {
			b = append(b, `,"prompt_token_ids":null`...)
		}
		b = append(b, "}\n\n"...)
		if err := cs.sw.send(b); err != nil {
			return err
		}
	}
	if cs.echo == "" {
		return nil
	}
	for i := range cs.g.choices {
		c := &cs.g.choices[i]
		b := append(cs.sw.buf[:0], cs.prefix...)
		b = append(b, `{"index":`...)
		b = appendInt(b, c.index)
		b = append(b, `,"delta":{"content":`...)
		b = appendString(b, cs.echo)
		b = append(b, `},"logprobs":null,"finish_reason":null}]`...)
		if cs.continuous {
			b = append(b, `,"usage":`...)
			b = cs.s.appendUsage(b, c.prompt, 0, usageChunk)
		}
		b = append(b, "}\n\n"...)
		if err := cs.sw.send(b); err != nil {
			return err
		}
	}
	return nil
}

// emit sends one content chunk; the chunk with a choice's last token also
// carries its finish_reason and stop_reason.
func (cs *chatStream) emit(c *choice, from, to int) error {
	b := append(cs.sw.buf[:0], cs.prefix...)
	b = append(b, `{"index":`...)
	b = appendInt(b, c.index)
	b = append(b, `,"delta":{"content":"`...)
	b = c.appendText(b, from, to)
	b = append(b, `"},"logprobs":null,"finish_reason":`...)
	if c.done() {
		b = append(b, '"')
		b = append(b, c.finish...)
		b = append(b, `","stop_reason":null`...)
	} else {
		b = append(b, "null"...)
	}
	if !cs.s.cfg.LegacyFields {
		b = append(b, `,"token_ids":null`...)
	}
	b = append(b, "}]"...)
	if cs.continuous {
		b = append(b, `,"usage":`...)
		b = cs.s.appendUsage(b, c.prompt, c.emitted, usageChunk)
	}
	b = append(b, "}\n\n"...)
	return cs.sw.send(b)
}

// writeChatJSON writes a chat.completion body (VLLM.md §4.1). roles[i] is
// the role of choice i, the last one that of the choices after it; a
// choice's echo precedes its text.
func (s *Server) writeChatJSON(w http.ResponseWriter, g *generation, id string, created int64, roles []string) {
	b := make([]byte, 0, 512+len(g.choices)*(len(g.choices[0].echo)+8*g.choices[0].length+256))
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendString(b, g.model.name)
	b = append(b, `,"choices":[`...)
	reasoningKey := `,"reasoning":null}`
	if s.cfg.LegacyFields {
		reasoningKey = `,"reasoning_content":null}`
	}
	for i := range g.choices {
		c := &g.choices[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = appendInt(b, c.index)
		b = append(b, `,"message":{"role":`...)
		b = appendString(b, roles[min(i, len(roles)-1)])
		b = append(b, `,"content":`...)
		b = appendJSONText(b, c.echo, c)
		b = append(b, `,"refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[]`...)
		b = append(b, reasoningKey...)
		b = append(b, `,"logprobs":null,"finish_reason":"`...)
		b = append(b, c.finish...)
		b = append(b, `","stop_reason":null`...)
		if !s.cfg.LegacyFields {
			b = append(b, `,"token_ids":null`...)
		}
		b = append(b, '}')
	}
	b = append(b, `],"service_tier":null,"system_fingerprint":null,"usage":`...)
	b = s.appendUsage(b, g.prompt, g.completionTokens(), usageBody)
	b = append(b, `,"prompt_logprobs":null`...)
	if !s.cfg.LegacyFields {
		b = append(b, `,"prompt_token_ids":null`...)
	}
	b = append(b, `,"kv_transfer_params":null}`...)
	writeJSON(w, http.StatusOK, b)
}
