package meter

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Endpoint is one of the OpenAI-compatible endpoints the gate meters.
type Endpoint uint8

// The metered endpoints; EndpointOther is everything else.
const (
	EndpointOther Endpoint = iota
	EndpointChat
	EndpointCompletions
	EndpointEmbeddings
	EndpointResponses
	// EndpointMessages is vLLM's Anthropic Messages API (/v1/messages).
	EndpointMessages
	// EndpointChatBatch is vLLM's batched chat (/v1/chat/completions/batch):
	// several conversations in one request, answered as one chat
	// completion with a choice per conversation.
	EndpointChatBatch
	// EndpointRerank and EndpointScore are vLLM's cross-encoder pooling
	// APIs (/v1/rerank, /v1/score): they read prompts and generate
	// nothing, like embeddings.
	EndpointRerank
	EndpointScore
	// EndpointTranscriptions and EndpointTranslations are vLLM's speech to
	// text (/v1/audio/transcriptions, /v1/audio/translations): multipart
	// forms with an audio file (see ParseForm).
	EndpointTranscriptions
	EndpointTranslations
)

// EndpointFor maps a request path to its endpoint. Only the exact paths are
// metered endpoints; anything else (including a trailing slash, which vLLM
// does not route either) is EndpointOther.
func EndpointFor(path string) Endpoint {
	switch path {
	case "/v1/chat/completions":
		return EndpointChat
	case "/v1/completions":
		return EndpointCompletions
	case "/v1/embeddings":
		return EndpointEmbeddings
	case "/v1/responses":
		return EndpointResponses
	case "/v1/messages":
		return EndpointMessages
	case "/v1/chat/completions/batch":
		return EndpointChatBatch
	case "/v1/rerank":
		return EndpointRerank
	case "/v1/score":
		return EndpointScore
	case "/v1/audio/transcriptions":
		return EndpointTranscriptions
	case "/v1/audio/translations":
		return EndpointTranslations
	}
	return EndpointOther
}

// String returns the endpoint's short name, as used in usage records.
func (e Endpoint) String() string {
	switch e {
	case EndpointChat:
		return "chat"
	case EndpointCompletions:
		return "completions"
	case EndpointEmbeddings:
		return "embeddings"
	case EndpointResponses:
		return "responses"
	case EndpointMessages:
		return "messages"
	case EndpointChatBatch:
		return "chat_batch"
	case EndpointRerank:
		return "rerank"
	case EndpointScore:
		return "score"
	case EndpointTranscriptions:
		return "transcriptions"
	case EndpointTranslations:
		return "translations"
	}
	return "other"
}

// ErrInvalidJSON is wrapped by every error ParseRequest returns: the body is
// not JSON, not an object, or a field the gate reads has the wrong type.
var ErrInvalidJSON = errors.New("invalid request body")

// FieldError is an error in one member of the request body, which Param
// names (as the param of OpenAI's error objects does).
type FieldError struct {
	Param string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// DefaultCompletionsMaxTokens is the output cap vLLM (like OpenAI) applies to
// /v1/completions when the request sets no max_tokens. Chat and Responses
// requests without a cap may run to the end of the context instead.
const DefaultCompletionsMaxTokens = 16

// MaxN is the largest n ParseRequest accepts, and the most completions (n
// times the number of prompts) one request may ask for. It keeps the
// arithmetic of a reservation (n × prompts × cap) far from overflowing.
const MaxN = 1 << 16

// Request is what the gate needs to know about an inference request body.
//
// It keeps references into the body it was parsed from (the prompt parts,
// for EstimatePrompt), so the body must not be modified while the Request is
// in use.
type Request struct {
	// Endpoint is the endpoint the body was parsed for.
	Endpoint Endpoint
	// Model is the requested model; "" when absent (vLLM then serves its
	// first model).
	Model string
	// Stream is the request's "stream" flag.
	Stream bool
	// N is the number of choices per prompt (default 1).
	N int
	// Prompts is the number of prompts of a completions request (a list of
	// strings or of token arrays), of inputs of an embeddings request, or of
	// conversations of a batched chat; 1 otherwise.
	Prompts int
	// MaxTokens is the per-choice output cap the upstream will apply:
	// max_completion_tokens, else max_tokens for chat; max_tokens for
	// completions (vLLM's CompletionRequest has no max_completion_tokens,
	// so a cap given only there would not bind), and vLLM's default of
	// DefaultCompletionsMaxTokens when the client left it out (not when it
	// sent null, which vLLM reads as no cap);
	// max_output_tokens for responses; max_tokens for messages (which
	// Anthropic's API requires). 0 when there is none (see
	// Uncapped). An explicit 0 reads as 0, with MaxTokensField set.
	MaxTokens int64
	// MaxTokensField is the member MaxTokens came from, "" if none.
	MaxTokensField string
	// OtherCap reports a cap member MaxTokens does not read, which a
	// server might (max_completion_tokens on completions): the gate then
	// sets the caps itself.
	OtherCap bool
	// StreamOptions reports that the request carries a stream_options object.
	StreamOptions bool
	// IncludeUsage reports that the client asked for the stream's usage
	// chunk: stream_options.include_usage is true, or absent from a present
	// stream_options object (current vLLM's default).
	IncludeUsage bool
	// IncludeUsageImplied reports that IncludeUsage comes from a
	// stream_options object without include_usage: current vLLM then sends
	// the usage chunk, vLLM before mid-2024 did not, so the gate spells it
	// out (and leaves the chunk to the client, who expects it).
	IncludeUsageImplied bool
	// ContinuousUsage is stream_options.continuous_usage_stats.
	ContinuousUsage bool
	// Echo is chat's and completions' "echo": the answer starts with the
	// prompt (completions) or the last message (chat) repeated.
	Echo bool

	// Raw values of the prompt parts, referencing the body; nil if absent.
	messages, prompt, input, instructions, tools, functions, system []byte
	// Rerank's query and documents; score's pairs of inputs under each of
	// their names over time.
	query, documents, queries, items, data1, data2, text1, text2 []byte
	// model's raw value, and the chat members that change how vLLM renders
	// the prompt, for TokenizeBody.
	model      []byte
	renderOpts []rawMember

	// AudioSeconds is a speech-to-text request's audio duration: exact
	// (AudioExact) from a WAV header, else estimated from the file's size.
	AudioSeconds float64
	AudioExact   bool
	boundary     string // of the multipart form
	formEnd      int    // the offset of its closing delimiter
}

// rawMember is a member of the body, its value kept raw.
type rawMember struct {
	name string
	val  []byte
}

// Uncapped reports that neither the client nor the upstream's defaults cap
// the request's output: it may run to the end of the model's context. An
// explicit cap of 0 is a cap (vLLM refuses it, or generates nothing).
func (r *Request) Uncapped() bool { return r.MaxTokens == 0 && r.MaxTokensField == "" }

// Choices is the number of choices the request generates: n, times the
// number of prompts for completions and of conversations for a batched chat.
func (r *Request) Choices() int {
	if (r.Endpoint == EndpointCompletions || r.Endpoint == EndpointChatBatch) && r.Prompts > 1 {
		return r.N * r.Prompts
	}
	return r.N
}

// invalid builds a field error wrapping ErrInvalidJSON.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidJSON}, args...)...)
}

// ParseRequest reads the fields the gate needs from a request body. The body
// must be a JSON object; a field the gate reads with the wrong type is an
// error that names the field. Unknown fields are ignored, keys are matched
// exactly (after unescaping, as vLLM's Python parser does) and a repeated key
// takes its last value.
func ParseRequest(ep Endpoint, body []byte) (*Request, error) {
	r := new(Request)
	if err := r.Parse(ep, body); err != nil {
		return nil, err
	}
	return r, nil
}

// Parse is ParseRequest into r, which the caller may keep on its stack: the
// gate parses one per request. On an error r holds a part of the body's
// fields and is not to be used.
func (r *Request) Parse(ep Endpoint, body []byte) error {
	// Checked and walked in one pass: the members' places come with the
	// verdict.
	var membersBuf [16]topMember
	ms, ok := validMembers(body, membersBuf[:0])
	if !ok {
		var raw json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return invalid("body is not valid JSON: %v (at byte %d)", err, se.Offset)
			}
			return invalid("body is not valid JSON: %v", err)
		}
		return invalid("body is not valid JSON")
	}
	if !isObject(body) {
		return invalid("body must be a JSON object")
	}
	*r = Request{Endpoint: ep, N: 1, Prompts: 1}
	var maxTokens, maxCompletion, maxOutput optInt
	var kb [maxKeyBytes]byte
	for _, m := range ms {
		key, val := keyName(body[m.ks:m.ke], &kb), body[m.vs:m.ve]
		var err error
		name := requestField(key)
		if ep == EndpointMessages && !messagesField(name) ||
			(ep == EndpointRerank || ep == EndpointScore) && !poolingField(name) {
			continue // vLLM's request of that kind ignores it
		}
		switch name {
		case "model":
			r.Model, err = stringField(name, val)
			r.model = nonNull(val)
		case "add_generation_prompt", "continue_final_message", "add_special_tokens",
			"chat_template", "chat_template_kwargs", "mm_processor_kwargs":
			// Options of vLLM's chat rendering, which /tokenize accepts too.
			r.renderOpts = append(r.renderOpts, rawMember{name, val})
		case "stream":
			r.Stream, err = boolField(name, val)
		case "echo":
			if ep == EndpointChat || ep == EndpointCompletions {
				r.Echo, err = boolField(name, val)
			}
		case "n":
			var o optInt
			o, err = intField(name, val)
			r.N = 1
			if err == nil && o.set {
				if o.v < 1 || o.v > MaxN {
					err = invalid("n must be between 1 and %d", MaxN)
				} else {
					r.N = int(o.v)
				}
			}
		case "max_tokens":
			maxTokens, err = capField(name, val)
		case "max_completion_tokens":
			maxCompletion, err = capField(name, val)
		case "max_output_tokens":
			maxOutput, err = capField(name, val)
		case "stream_options":
			err = r.streamOptions(val)
		case "messages", "tools", "functions":
			if !isNull(val) && val[0] != '[' {
				err = invalid("%s must be an array", name)
			}
			switch name {
			case "messages":
				r.messages = nonNull(val)
			case "tools":
				r.tools = nonNull(val)
			default:
				r.functions = nonNull(val)
			}
		case "prompt", "input":
			if !isNull(val) && val[0] != '[' && val[0] != '"' {
				err = invalid("%s must be a string or an array", name)
			}
			if name == "prompt" {
				r.prompt = nonNull(val)
			} else {
				r.input = nonNull(val)
			}
		case "instructions":
			if !isNull(val) && val[0] != '"' {
				err = invalid("instructions must be a string")
			}
			r.instructions = nonNull(val)
		case "query", "documents", "text_1", "text_2", "queries", "items", "data_1", "data_2":
			if ep != EndpointRerank && ep != EndpointScore {
				break // not members of the other requests
			}
			if !isNull(val) && val[0] != '"' && val[0] != '[' && val[0] != '{' {
				err = invalid("%s must be a string, an array or an object", name)
			}
			switch name {
			case "query":
				r.query = nonNull(val)
			case "documents":
				r.documents = nonNull(val)
			case "queries":
				r.queries = nonNull(val)
			case "items":
				r.items = nonNull(val)
			case "data_1":
				r.data1 = nonNull(val)
			case "data_2":
				r.data2 = nonNull(val)
			case "text_1":
				r.text1 = nonNull(val)
			default:
				r.text2 = nonNull(val)
			}
		case "system":
			if ep != EndpointMessages {
				break // not a member of the OpenAI requests
			}
			if !isNull(val) && val[0] != '"' && val[0] != '[' {
				err = invalid("system must be a string or an array")
			}
			r.system = nonNull(val)
		}
		if err != nil {
			return &FieldError{Param: name, Err: err}
		}
	}
	switch ep {
	case EndpointCompletions:
		if !maxTokens.null { // an explicit null is None to vLLM: no cap
			r.MaxTokens = DefaultCompletionsMaxTokens
		}
		r.setCap(maxTokens, "max_tokens")
		r.Prompts = promptCount(r.prompt)
		r.OtherCap = maxCompletion.set
	case EndpointEmbeddings:
		r.Prompts = promptCount(r.input)
	case EndpointResponses:
		r.setCap(maxOutput, "max_output_tokens")
	case EndpointMessages:
		// vLLM sets both of the chat caps from max_tokens.
		r.setCap(maxTokens, "max_tokens")
	case EndpointChatBatch:
		// The batch takes max_completion_tokens unless it is null.
		if maxCompletion.set {
			r.setCap(maxCompletion, "max_completion_tokens")
		} else {
			r.setCap(maxTokens, "max_tokens")
		}
		r.Prompts = max(arrayLen(r.messages), 1)
		if r.Stream {
			// vLLM (issue #50026) then answers in JSON with each
			// conversation's last chunk only, and counts only those.
			return invalid("stream is not supported by the batch endpoint")
		}
	default:
		// vLLM takes `max_completion_tokens or max_tokens`: a 0 in the
		// first is Python's false, and the second then binds.
		if maxCompletion.set && maxCompletion.v != 0 {
			r.setCap(maxCompletion, "max_completion_tokens")
		} else {
			r.setCap(maxTokens, "max_tokens")
		}
	}
	if c := r.Choices(); c > MaxN {
		return invalid("n (%d) times the number of prompts (%d) asks for %d completions; at most %d may be asked for at once", r.N, r.Prompts, c, MaxN)
	}
	return nil
}

// requestFields are the members ParseRequest reads.
var requestFields = [...]string{
	"model", "messages", "max_tokens", "stream", "stream_options", "max_completion_tokens",
	"n", "prompt", "input", "tools", "functions", "instructions", "max_output_tokens", "system",
	"query", "documents", "text_1", "text_2", "queries", "items", "data_1", "data_2",
	"add_generation_prompt", "continue_final_message", "add_special_tokens",
	"chat_template", "chat_template_kwargs", "mm_processor_kwargs", "echo",
}

// requestField returns the name in requestFields that key is, without
// allocating (the name may be kept and shown in errors), or "".
func requestField(key []byte) string {
	for _, f := range requestFields {
		if string(key) == f {
			return f
		}
	}
	return ""
}

// messagesField reports whether vLLM's Anthropic request reads the member
// (of those the gate reads).
func messagesField(name string) bool {
	switch name {
	case "model", "messages", "max_tokens", "stream", "system", "tools":
		return true
	}
	return false
}

// poolingField reports whether vLLM's rerank and score requests read the
// member (of those the gate reads).
func poolingField(name string) bool {
	switch name {
	case "model", "query", "documents", "text_1", "text_2", "queries", "items", "data_1", "data_2":
		return true
	}
	return false
}

// PromptOnly reports whether the request generates nothing: embeddings,
// rerank and score read prompts only.
func (r *Request) PromptOnly() bool {
	switch r.Endpoint {
	case EndpointEmbeddings, EndpointRerank, EndpointScore:
		return true
	}
	return false
}

// optInt is an integer member that may be absent or null.
type optInt struct {
	v    int64
	set  bool
	null bool // given as null: for pydantic None, unlike absence
}

func (r *Request) setCap(o optInt, field string) {
	if o.set {
		r.MaxTokens, r.MaxTokensField = o.v, field
	}
}

// nonNull returns v, or nil for a null value.
func nonNull(v []byte) []byte {
	if isNull(v) {
		return nil
	}
	return v
}

func stringField(name string, v []byte) (string, error) {
	if isNull(v) {
		return "", nil
	}
	body, ok := stringBody(v)
	if !ok {
		return "", invalid("%s must be a string", name)
	}
	return string(decoded(nil, body)), nil
}

func boolField(name string, v []byte) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false", "null":
		return false, nil
	}
	return false, invalid("%s must be a boolean", name)
}

// intField reads an integer member; null counts as absent.
func intField(name string, v []byte) (optInt, error) {
	if isNull(v) {
		return optInt{null: true}, nil
	}
	if len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return optInt{}, invalid("%s must be an integer", name)
	}
	n, ok := parseInt(v)
	if !ok {
		f, err := strconv.ParseFloat(string(v), 64)
		if errors.Is(err, strconv.ErrRange) || err == nil && f == math.Trunc(f) {
			return optInt{}, invalid("%s is out of range", name)
		}
		return optInt{}, invalid("%s must be an integer", name)
	}
	return optInt{v: n, set: true}, nil
}

// capField reads an output cap: a non-negative integer or null.
func capField(name string, v []byte) (optInt, error) {
	o, err := intField(name, v)
	if err == nil && o.v < 0 {
		err = invalid("%s must not be negative", name)
	}
	return o, err
}

// streamOptions reads the stream_options member.
func (r *Request) streamOptions(v []byte) error {
	if isNull(v) {
		r.StreamOptions, r.IncludeUsage, r.ContinuousUsage = false, false, false
		return nil
	}
	if !isObject(v) {
		return invalid("stream_options must be an object")
	}
	r.StreamOptions = true
	include, includeSet := false, false
	r.ContinuousUsage = false
	for key, val := range members(v, nil) {
		switch string(key) {
		case "include_usage":
			b, err := boolField("stream_options.include_usage", val)
			if err != nil {
				return err
			}
			// null is an explicit "no" for pydantic (None), unlike absence.
			include, includeSet = b, true
		case "continuous_usage_stats":
			b, err := boolField("stream_options.continuous_usage_stats", val)
			if err != nil {
				return err
			}
			r.ContinuousUsage = b
		}
	}
	r.IncludeUsage = include || !includeSet
	r.IncludeUsageImplied = !includeSet
	return nil
}

// promptCount is the number of prompts in a completions prompt or an
// embeddings input: a string or one token array is one prompt, a list of
// strings or of token arrays is one per element.
func promptCount(v []byte) int {
	if !isArray(v) {
		return 1
	}
	n := 0
	for el := range elements(v) {
		if el[0] != '"' && el[0] != '[' {
			return 1 // a token array: a single prompt
		}
		n++
	}
	if n == 0 {
		return 1
	}
	return n
}

// TokenizeBody returns the body of a POST to vLLM's /tokenize that counts
// this request's prompt exactly as the request itself would be rendered: for
// chat, its messages and tools with the rendering options the client set
// (chat template and its kwargs, add_generation_prompt, …); for messages,
// the chat vLLM converts the request to; for completions and embeddings, a
// single string prompt. ok is false where /tokenize cannot
// count the prompt in one call (a list of prompts, token arrays — which
// EstimatePrompt counts exactly —, the Responses API): estimate those.
func (r *Request) TokenizeBody() (body []byte, ok bool) {
	b := []byte{'{'}
	sep := func() {
		if len(b) > 1 {
			b = append(b, ',')
		}
	}
	add := func(name string, val []byte) {
		sep()
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = append(b, val...)
	}
	if r.model != nil {
		add("model", r.model)
	}
	switch r.Endpoint {
	case EndpointChat:
		if r.messages == nil {
			return nil, false
		}
		add("messages", r.messages)
		if r.tools != nil {
			add("tools", r.tools)
		}
		// A repeated member keeps its last value, as vLLM reads it.
		for i, m := range r.renderOpts {
			last := true
			for _, later := range r.renderOpts[i+1:] {
				if later.name == m.name {
					last = false
				}
			}
			if last {
				add(m.name, m.val)
			}
		}
	case EndpointMessages:
		messages, tools, ok := r.chatFromMessages()
		if !ok {
			return nil, false
		}
		add("messages", messages)
		if tools != nil {
			add("tools", tools)
		}
	case EndpointCompletions, EndpointEmbeddings:
		p := r.prompt
		if r.Endpoint == EndpointEmbeddings {
			p = r.input
		}
		if !isString(p) {
			return nil, false
		}
		add("prompt", p)
	default:
		return nil, false
	}
	return append(b, '}'), true
}
