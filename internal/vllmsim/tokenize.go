package vllmsim

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// handleTokenize answers POST /tokenize in its completion form ("prompt")
// or chat form ("messages"); the chat form renders the same template as
// /v1/chat/completions, so count equals that request's prompt_tokens.
func (s *Server) handleTokenize(w http.ResponseWriter, _ *http.Request, req *apiRequest, _ simOverrides) {
	if _, aerr := s.lookupModel(req.Model); aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	pb := promptBuilder{tok: s.tok, wantIDs: true, ids: []int{}}
	switch {
	case len(req.Messages) > 0 && string(req.Messages) != "null":
		addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
		if addGen && req.ContinueFinalMessage {
			s.writeError(w, s.validationError("Cannot set both `continue_final_message` and `add_generation_prompt` to True."))
			return
		}
		var msgs []chatMessage
		if err := json.Unmarshal(req.Messages, &msgs); err != nil {
			s.writeError(w, s.validationError("Invalid messages: "+err.Error()))
			return
		}
		pb.bos = s.cfg.ChatBOS
		if err := renderChat(&pb, msgs, req.Tools, addGen, req.ContinueFinalMessage, s.cfg.ResponseRole); err != nil {
			s.writeError(w, badRequest(err.Error(), "messages"))
			return
		}
	case len(bytes.TrimSpace(req.Prompt)) > 0 && bytes.TrimSpace(req.Prompt)[0] == '"':
		var p string
		if err := json.Unmarshal(req.Prompt, &p); err != nil {
			s.writeError(w, s.validationError("Invalid prompt: "+err.Error()))
			return
		}
		pb.text(p)
	default:
		s.writeError(w, s.validationError("Field required: prompt or messages"))
		return
	}
	b := make([]byte, 0, 64+len(pb.ids)*7)
	b = append(b, `{"count":`...)
	b = appendInt(b, pb.n)
	b = append(b, `,"max_model_len":`...)
	b = appendInt(b, s.cfg.MaxModelLen)
	b = append(b, `,"tokens":[`...)
	for i, id := range pb.ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendInt(b, id)
	}
	b = append(b, `],"token_strs":`...)
	if req.ReturnTokenStrs {
		b = append(b, '[')
		for i, id := range pb.ids {
			if i > 0 {
				b = append(b, ',')
			}
			t, _ := tokenText(id)
			b = appendString(b, t)
		}
		b = append(b, ']')
	} else {
		b = append(b, "null"...)
	}
	writeJSON(w, http.StatusOK, append(b, '}'))
}

// handleDetokenize answers POST /detokenize: {"tokens":[…]} → {"prompt":…}.
func (s *Server) handleDetokenize(w http.ResponseWriter, _ *http.Request, req *apiRequest, _ simOverrides) {
	if _, aerr := s.lookupModel(req.Model); aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	if req.Tokens == nil {
		s.writeError(w, s.validationError("Field required: tokens"))
		return
	}
	text, ok := decodeTokens(req.Tokens)
	if !ok {
		s.writeError(w, badRequest("token id out of vocabulary", "tokens"))
		return
	}
	writeJSON(w, http.StatusOK, append(appendString([]byte(`{"prompt":`), text), '}'))
}
