package vllmsim

import "time"

// Config describes the emulated server. The zero value of every field is
// usable: New fills in the defaults that DefaultConfig documents, and the
// Legacy*/Omit* switches default to the newest vLLM behaviour (2026).
type Config struct {
	// ModelNames are the served model names (vLLM's --served-model-name).
	// The first one answers requests whose "model" is empty or missing.
	// Default ["sim-model"].
	ModelNames []string
	// MaxModelLen is the context length in tokens (--max-model-len), shared
	// by prompt and output. Default 8192.
	MaxModelLen int
	// TTFT is the simulated prefill time: the delay between the response
	// headers and the first token. 0 means none.
	TTFT time.Duration
	// TokensPerSecond is the decode rate of each choice after the first
	// token. 0 generates as fast as possible.
	TokensPerSecond float64
	// TokensPerChunk is how many tokens each streamed chunk carries after
	// the first one (vLLM's --stream-interval). Default 1.
	TokensPerChunk int
	// DefaultLength is the number of tokens the "model" generates when the
	// request's own cap does not stop it first (its natural answer length,
	// ending with an EOS token). Default 16.
	DefaultLength int
	// VaryLengths makes choice i of a request end i tokens sooner than
	// DefaultLength (at least 1), when its cap does not stop it first: real
	// choices differ in length, and a count that takes one choice's for all
	// of them must show.
	VaryLengths bool
	// ForceIncludeUsage emulates --enable-force-include-usage: every stream
	// ends with a usage chunk and, unless LegacyForceIncludeUsage is set,
	// carries continuous usage on every chunk (vLLM PR #37923).
	ForceIncludeUsage bool
	// APIKey, when set, guards every path that starts with /v1 the way
	// vLLM's --api-key does (§8 of VLLM.md). APIKeys adds more accepted keys.
	APIKey  string
	APIKeys []string

	// LegacyForceIncludeUsage gives ForceIncludeUsage its meaning before
	// PR #37923 (≤ ~Mar 2026): the final usage chunk is forced, continuous
	// usage only when the request asked for it.
	LegacyForceIncludeUsage bool
	// LegacyIncludeUsageDefault makes a present stream_options object
	// default include_usage to false, as vLLM did in 2024.
	LegacyIncludeUsageDefault bool
	// LegacyErrors selects the flat error envelope of vLLM ≤ 0.10.0
	// ({"object":"error","message":…}) and "BadRequestError" as the type of
	// request-validation errors; the default is the nested envelope of
	// ≥ 0.10.1 with type "Bad Request" for validation errors.
	LegacyErrors bool
	// LegacyFields drops the fields added from about August 2025 on:
	// token_ids / prompt_token_ids, completion_tokens_details, and names the
	// chat message's reasoning field "reasoning_content" instead of
	// "reasoning".
	LegacyFields bool
	// CompletionsOmitNulls drops the null keys ("usage":null,
	// "logprobs":null, …) from /v1/completions stream chunks, as servers
	// after PR #40537 may do.
	CompletionsOmitNulls bool
	// AnthropicValidationErrors answers request-validation failures on
	// /v1/messages (max_tokens missing, a bad content block, a body that is
	// not JSON) in the Anthropic envelope with type "invalid_request_error",
	// as the open vLLM PR #58023 proposes. By default they keep the OpenAI
	// envelope of vLLM's app-wide validation handler (issue #57997), while
	// the route's other errors use the Anthropic one.
	AnthropicValidationErrors bool
	// BatchRejectsStreamAndTools makes POST /v1/chat/completions/batch
	// answer 400 to "stream": true (or stream_options) and to "tools", as
	// the open vLLM PRs #50027 and #50042 propose. By default the route
	// accepts them as vLLM does (issue #50026): tools are dropped before the
	// template, and stream makes each choice report only its last step.
	BatchRejectsStreamAndTools bool
	// LegacyRerank gives /v1/rerank answers the shape of vLLM before
	// early 2026: usage is {"total_tokens":N} without prompt_tokens, and
	// the id starts with "rerank-" (since the scoring/ rewrite, "score-").
	LegacyRerank bool
	// LongRequestIDs makes generated ids 32 hex digits (2025) instead of 16
	// (2026).
	LongRequestIDs bool
	// OmitEOS stops counting the EOS token that ends a "stop" choice. By
	// default, as in vLLM, a choice that stops by itself spends its last
	// token on an EOS that emits no text, so its completion_tokens is one
	// more than the tokens in its text.
	OmitEOS bool
	// EnablePromptTokensDetails emulates --enable-prompt-tokens-details:
	// usage gains "prompt_tokens_details":{"cached_tokens":0}.
	EnablePromptTokensDetails bool
	// EnableRequestIDHeaders emulates --enable-request-id-headers: every
	// answer carries X-Request-Id (the client's, or a fresh one).
	EnableRequestIDHeaders bool
	// ChatBOS starts the chat template with a BOS token, as Llama's and
	// Mistral's do: chat prompts then count one token more than the
	// client-side estimate the rest of the template follows.
	ChatBOS bool
	// ResponseRole is the role of generated chat messages (--response-role).
	// Default "assistant".
	ResponseRole string
	// EmbeddingDim is the length of /v1/embeddings vectors. Default 16.
	EmbeddingDim int
	// Version is what GET /version reports. Default "0.29.0".
	Version string
	// RecordLimit caps how many requests Requests keeps (the newest ones).
	// Default 10000; a negative value disables recording.
	RecordLimit int
}

// DefaultConfig returns the configuration New uses for zero fields: one
// model "sim-model", an 8192-token context, no latency, one token per chunk
// and 16-token answers.
func DefaultConfig() Config {
	return Config{
		ModelNames:     []string{"sim-model"},
		MaxModelLen:    8192,
		TokensPerChunk: 1,
		DefaultLength:  16,
		ResponseRole:   "assistant",
		EmbeddingDim:   16,
		Version:        "0.29.0",
		RecordLimit:    10000,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.ModelNames) == 0 {
		c.ModelNames = d.ModelNames
	}
	c.ModelNames = append([]string(nil), c.ModelNames...)
	if c.MaxModelLen <= 0 {
		c.MaxModelLen = d.MaxModelLen
	}
	if c.TTFT < 0 {
		c.TTFT = 0
	}
	if c.TokensPerSecond < 0 {
		c.TokensPerSecond = 0
	}
	if c.TokensPerChunk <= 0 {
		c.TokensPerChunk = d.TokensPerChunk
	}
	if c.DefaultLength <= 0 {
		c.DefaultLength = d.DefaultLength
	}
	if c.ResponseRole == "" {
		c.ResponseRole = d.ResponseRole
	}
	if c.EmbeddingDim <= 0 {
		c.EmbeddingDim = d.EmbeddingDim
	}
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.RecordLimit == 0 {
		c.RecordLimit = d.RecordLimit
	}
	return c
}
