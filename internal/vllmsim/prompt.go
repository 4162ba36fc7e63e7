package vllmsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/llmgate/llmgate/tokenizer"
)

// Prompt accounting.
//
// A real vLLM counts the ids of the rendered chat template, which depends on
// the model. The emulator renders a fixed ChatML-like template instead, so
// its count is deterministic and equal to the usual client-side tiktoken
// estimate (OpenAI's cookbook rule for cl100k models):
//
//	per message:  <|im_start|> role [":" name] <|im_sep|> content <|im_end|>
//	              = 3 + count(role) + count(content) [+ 1 + count(name)]
//	generation prompt (add_generation_prompt, default on):
//	              <|im_start|> assistant <|im_sep|> = 3
//	tools, when given: one leading system message whose content is the
//	              compact JSON of the tools array
//
// Content given as a list of parts counts its text parts joined by "\n";
// other parts (images, audio) count nothing. An assistant message's tool
// calls add count(name) + count(arguments) each. /tokenize renders the same
// template, so its count always equals a chat request's prompt_tokens.
// Completion prompts are counted as plain cl100k text (no BOS), and token-id
// prompts by their length.

// promptBuilder accumulates a rendered prompt as ids, or only its length.
type promptBuilder struct {
	tok     *tokenizer.Tokenizer
	bos     bool // the template starts with a BOS (Config.ChatBOS)
	wantIDs bool
	ids     []int
	n       int
}

func (p *promptBuilder) special(id int) {
	p.n++
	if p.wantIDs {
		p.ids = append(p.ids, id)
	}
}

func (p *promptBuilder) text(s string) {
	if s == "" {
		return
	}
	if p.wantIDs {
		ids := p.tok.Encode(s)
		p.ids = append(p.ids, ids...)
		p.n += len(ids)
		return
	}
	p.n += p.tok.Count(s)
}

// chatMessage is the part of an OpenAI chat message the template reads.
type chatMessage struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	Name      string          `json:"name"`
	ToolCalls []toolCall      `json:"tool_calls"`
}

// toolCall is one of an assistant message's tool calls; the template counts
// its function's name and arguments.
type toolCall struct {
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

var errBadContent = errors.New("message content must be a string or a list of content parts")

// contentText flattens a message's content to the text the template counts.
func contentText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errBadContent
		}
		return s, nil
	case '[':
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", errBadContent
		}
		texts := make([]string, 0, len(parts))
		for _, p := range parts {
			if p.Text != nil && (p.Type == "text" || p.Type == "input_text" || p.Type == "output_text" || p.Type == "") {
				texts = append(texts, *p.Text)
			}
		}
		return strings.Join(texts, "\n"), nil
	}
	return "", errBadContent
}

// renderChat renders messages (and tools) with the emulator's template.
// continueFinal leaves the last message open, as vLLM's
// continue_final_message does, and then no generation prompt follows.
func renderChat(p *promptBuilder, msgs []chatMessage, tools json.RawMessage, addGenerationPrompt, continueFinal bool, role string) error {
	if p.bos {
		p.special(tokEndOfText) // cl100k's BOS stand-in
	}
	if t := bytes.TrimSpace(tools); len(t) > 0 && string(t) != "null" {
		var compact bytes.Buffer
		if err := json.Compact(&compact, t); err != nil {
			return err
		}
		p.special(tokImStart)
		p.text("system")
		p.special(tokImSep)
		p.text(compact.String())
		p.special(tokImEnd)
	}
	for i, m := range msgs {
		content, err := contentText(m.Content)
		if err != nil {
			return err
		}
		p.special(tokImStart)
		p.text(m.Role)
		if m.Name != "" {
			p.special(tokColon)
			p.text(m.Name)
		}
		p.special(tokImSep)
		p.text(content)
		for _, tc := range m.ToolCalls {
			p.text(tc.Function.Name)
			p.text(tc.Function.Arguments)
		}
		if !(continueFinal && i == len(msgs)-1) {
			p.special(tokImEnd)
		}
	}
	if addGenerationPrompt && !continueFinal {
		p.special(tokImStart)
		p.text(role)
		p.special(tokImSep)
	}
	return nil
}

// promptInput is one prompt of a completions or embeddings request: text,
// or token ids.
type promptInput struct {
	text  string
	ids   []int
	isIDs bool
}

var errBadPrompt = errors.New("prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids")

// parsePrompts reads the "prompt" (or "input") field of completions and
// embeddings: a string, a list of strings, a list of ints, or a list of
// lists of ints.
func parsePrompts(raw json.RawMessage) ([]promptInput, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errBadPrompt
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errBadPrompt
		}
		return []promptInput{{text: s}}, nil
	case '[':
	default:
		return nil, errBadPrompt
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 {
		return nil, errBadPrompt
	}
	// A flat list of ints is one tokenized prompt.
	if first := bytes.TrimSpace(items[0]); len(first) > 0 && first[0] != '"' && first[0] != '[' {
		var ids []int
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, errBadPrompt
		}
		return []promptInput{{ids: ids, isIDs: true}}, nil
	}
	out := make([]promptInput, 0, len(items))
	for _, it := range items {
		it = bytes.TrimSpace(it)
		if len(it) == 0 {
			return nil, errBadPrompt
		}
		switch it[0] {
		case '"':
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				return nil, errBadPrompt
			}
			out = append(out, promptInput{text: s})
		case '[':
			var ids []int
			if err := json.Unmarshal(it, &ids); err != nil || len(ids) == 0 {
				return nil, errBadPrompt
			}
			out = append(out, promptInput{ids: ids, isIDs: true})
		default:
			return nil, errBadPrompt
		}
	}
	return out, nil
}

// count returns the prompt's length in tokens.
func (pi promptInput) count(tok *tokenizer.Tokenizer) int {
	if pi.isIDs {
		return len(pi.ids)
	}
	return tok.Count(pi.text)
}

// responsesMessages turns a Responses API request's instructions and input
// into chat messages for the template.
func responsesMessages(instructions *string, input json.RawMessage) ([]chatMessage, error) {
	var msgs []chatMessage
	if instructions != nil && *instructions != "" {
		c, _ := json.Marshal(*instructions)
		msgs = append(msgs, chatMessage{Role: "system", Content: c})
	}
	input = bytes.TrimSpace(input)
	if len(input) == 0 || string(input) == "null" {
		return nil, errors.New("input is required")
	}
	if input[0] == '"' {
		return append(msgs, chatMessage{Role: "user", Content: input}), nil
	}
	var items []struct {
		Type      string          `json:"type"`
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		Output    *string         `json:"output"`
		Name      string          `json:"name"`
		Arguments string          `json:"arguments"`
	}
	if err := json.Unmarshal(input, &items); err != nil {
		return nil, errors.New("input must be a string or a list of input items")
	}
	for _, it := range items {
		switch {
		case it.Role != "":
			msgs = append(msgs, chatMessage{Role: it.Role, Content: it.Content})
		case it.Type == "function_call_output" && it.Output != nil:
			c, _ := json.Marshal(*it.Output)
			msgs = append(msgs, chatMessage{Role: "tool", Content: c})
		case it.Type == "function_call":
			c, _ := json.Marshal(it.Name + it.Arguments)
			msgs = append(msgs, chatMessage{Role: "assistant", Content: c})
		}
	}
	return msgs, nil
}
