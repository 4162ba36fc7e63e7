package vllmsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Batched chat, POST /v1/chat/completions/batch, as vLLM serves it
// (vllm/entrypoints/openai/chat_completion/batch_serving.py and
// BatchChatCompletionRequest in protocol.py, 2026): "messages" is a list
// of conversations, each run as its own chat request with the batch's
// other fields (to_chat_completion_request) and one choice. The answer is
// one chat.completion whose choice i answers conversation i, and whose
// usage sums the prompts of every conversation and the tokens of every
// choice. There is no streaming: "stream" is not a field of the batch
// request, yet it reaches each conversation's request (see lastDelta).
// "tools" are dropped before the template. n must be 1.

// batchConversations validates a batch request as pydantic does when it
// parses BatchChatCompletionRequest: its check_batch_mode validator runs
// first, then the fields.
func (s *Server) batchConversations(req *apiRequest) ([][]chatMessage, *apiError) {
	fail := func(msg, param string) ([][]chatMessage, *apiError) {
		e := s.validationError(msg)
		e.param = param
		return nil, &e
	}
	if pyTruthy(req.UseBeamSearch) {
		return fail("Value error, Batch chat completions do not support beam search. Please set `use_beam_search` to False.", "use_beam_search")
	}
	if req.N != nil && *req.N != 1 {
		return fail("Value error, Batch chat completions do not support `n > 1`. Please set `n` to 1.", "n")
	}
	if s.cfg.BatchRejectsStreamAndTools {
		if req.stream() || pyTruthy(req.StreamOptionsRaw) {
			return fail("Value error, Batch chat completions do not support streaming. Please set `stream` to False.", "stream")
		}
		if jsonKind(req.Tools) != 0 {
			return fail("Value error, Batch chat completions do not support tool use. Please omit `tools`.", "tools")
		}
	}
	var raws []json.RawMessage
	switch {
	case jsonKind(req.Messages) == 0:
		return fail("Field required: messages", "body.messages")
	case jsonKind(req.Messages) != '[' || json.Unmarshal(req.Messages, &raws) != nil:
		return fail("Input should be a valid list: messages", "body.messages")
	case len(raws) == 0:
		return fail("List should have at least 1 item after validation, not 0: messages", "body.messages")
	}
	convs := make([][]chatMessage, len(raws))
	for i, raw := range raws {
		loc := "messages." + strconv.Itoa(i)
		if jsonKind(raw) != '[' {
			return fail("Input should be a valid list: "+loc, "body."+loc)
		}
		if err := json.Unmarshal(raw, &convs[i]); err != nil {
			return fail("Invalid messages: "+err.Error(), "body."+loc)
		}
		if len(convs[i]) == 0 {
			return fail("List should have at least 1 item after validation, not 0: "+loc, "body."+loc)
		}
	}
	// tool_choice is Literal["none"] | None.
	if jsonKind(req.ToolChoice) != 0 && string(bytes.TrimSpace(req.ToolChoice)) != `"none"` {
		return fail("Input should be 'none': tool_choice", "body.tool_choice")
	}
	return convs, nil
}

func (s *Server) handleChatBatch(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	convs, aerr := s.batchConversations(req)
	var m *modelStats
	if aerr == nil {
		m, aerr = s.lookupModel(req.Model)
	}
	// Then each conversation becomes a ChatCompletionRequest, whose own
	// validators raise from the handler: BadRequestError, not "Bad Request".
	addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	if aerr == nil && addGen && req.ContinueFinalMessage {
		e := badRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.", "")
		aerr = &e
	}
	if aerr == nil {
		if _, verr := s.checkStreamOptions(req); verr != nil {
			e := badRequest(verr.msg, "")
			aerr = &e
		}
	}
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	limit := req.MaxCompletionTokens
	if limit == nil {
		limit = req.MaxTokens
	}
	choices := make([]choice, len(convs))
	roles := make([]string, len(convs))
	prompt := 0
	var late *apiError // max_tokens < 1: raised after every conversation was rendered
	for i, msgs := range convs {
		p, aerr := s.chatPrompt(msgs, nil, addGen, req.ContinueFinalMessage)
		if aerr != nil {
			s.writeError(w, *aerr)
			return
		}
		length, finish, aerr := s.outputBudget(p, limit, 0, ov)
		if aerr != nil && aerr.param == "max_tokens" && limit != nil && *limit < 1 {
			late = aerr
			continue
		} else if aerr != nil {
			s.writeError(w, *aerr)
			return
		}
		// The choice its own chat request would get, at index i.
		choices[i] = s.newChoice(0, p, length, finish)
		choices[i].index = i
		roles[i], choices[i].echo = s.chatRole(msgs, addGen, req.Echo)
		prompt += p
	}
	if late != nil {
		s.writeError(w, *late)
		return
	}
	id := s.requestID("chatcmpl-", r)
	created := time.Now().Unix()
	g := s.newGeneration(m, choices, prompt, ov)
	var out sink = discard{}
	if req.stream() {
		out = lastDelta{}
	}
	o := g.run(r.Context(), out)
	s.endJSON(w, g, o, func() { s.writeChatJSON(w, g, id, created, roles) })
}
