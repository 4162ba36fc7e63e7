// Package vllmsim emulates vLLM's OpenAI-compatible HTTP server for tests
// and benchmarks of llm_gate. It follows the wire protocol described in
// shared/VLLM.md: the newest behaviour by default, and the older variants
// of its version-drift table through Config's Legacy* switches.
//
//	srv := httptest.NewServer(vllmsim.New(vllmsim.DefaultConfig()))
//
// # Routes
//
//	POST /v1/chat/completions   chat, JSON or SSE (role chunk, content chunks,
//	                            finishing chunk, optional usage chunk, [DONE])
//	POST /v1/chat/completions/batch  batched chat (JSON only): "messages" is
//	                            a list of conversations, each answered as if
//	                            sent alone to /v1/chat/completions; choice i
//	                            answers conversation i and usage sums them
//	                            all. n must be 1. As in vLLM, tools are
//	                            ignored, and "stream": true still answers
//	                            JSON, each choice reporting only its last
//	                            step (Config.BatchRejectsStreamAndTools: 400)
//	POST /v1/completions        completions; several prompts, n, echo
//	POST /v1/responses          Responses API, JSON or typed SSE events ending
//	                            with response.completed
//	POST /v1/messages           Anthropic Messages, converted to chat as vLLM
//	                            does: JSON, or SSE events message_start …
//	                            message_stop, then data: [DONE]
//	POST /v1/messages/count_tokens  {"input_tokens": N}, as /v1/messages counts
//	POST /v1/embeddings         deterministic unit vectors, float or base64
//	POST /v1/rerank, /rerank    cross-encoder rerank: query + documents,
//	                            results sorted by relevance_score, top_n;
//	                            usage {prompt_tokens, total_tokens}
//	                            (Config.LegacyRerank: {total_tokens})
//	POST /v1/score, /score      pair scores: text_1/text_2, queries/documents,
//	                            queries/items or data_1/data_2 (1:1, 1:N, N:N);
//	                            each pair counts count(query) + count(doc) + 3
//	                            prompt tokens (see pooling.go)
//	POST /v1/audio/transcriptions, /v1/audio/translations
//	                            speech to text from a multipart WAV upload,
//	                            cut into 30 s chunks: json (usage in seconds),
//	                            text, verbose_json, srt, vtt, or SSE with the
//	                            usage chunk on request (see audio.go)
//	GET  /v1/models             model cards with max_model_len
//	POST /tokenize, /detokenize tokenizer routes (not guarded by the API key)
//	GET  /metrics               Prometheus text: vllm:prompt_tokens_total,
//	                            vllm:generation_tokens_total,
//	                            vllm:request_success_total{finished_reason=
//	                            "stop"|"length"|"abort"|"error"}, histograms
//	GET  /health, /version
//	GET  /sim/requests          the recorded requests (JSON; see Recorded)
//	GET  /sim/counters          Counters as JSON
//	POST /sim/reset             Reset
//
// With Config.APIKey set, paths starting with /v1 need
// "Authorization: Bearer <key>" and otherwise get 401 {"error":"Unauthorized"}.
//
// # Output
//
// Generated text is drawn from a fixed vocabulary of words that are each one
// cl100k_base token, so counting a relayed answer's text with cl100k_base
// gives back the number of text tokens exactly. A choice that stops by
// itself ("stop") spends its last token on an EOS that emits no text, as a
// real model does, so its completion_tokens is its text's count plus one;
// a choice cut by max_tokens ("length") has no EOS. Config.OmitEOS turns
// the EOS off.
//
// An answer's length is the natural length (Config.DefaultLength, or
// X-Sim-Length) unless the request's cap — max_completion_tokens or
// max_tokens for chat, max_tokens (default 16) for completions,
// max_output_tokens for responses, else the context left — is reached
// first or at the same token; then finish_reason is "length".
//
// Prompts are counted with cl100k_base; chat messages through a fixed
// template that adds 3 tokens plus the role per message and 3 for the
// generation prompt (see prompt.go), which equals OpenAI's cookbook
// estimate. The same request always produces the same bytes, apart from
// "id" and "created".
//
// # Per-request headers
//
//	X-Sim-Length: N        natural answer length in tokens (>= 1)
//	X-Sim-Error-After: N   after N tokens per choice, end the stream with a
//	                       mid-stream error event (json.dumps spacing, VLLM.md
//	                       §3.7) and [DONE], no usage chunk (/v1/messages:
//	                       an "event: error" with pydantic's complaint about
//	                       that event, and [DONE]); a JSON request gets a
//	                       500 InternalServerError envelope instead
//	X-Sim-Crash-After: N   after N tokens per choice, cut the connection
//	                       (panic(http.ErrAbortHandler)): the client sees an
//	                       unexpected EOF, and no [DONE]
//	X-Sim-Status: S        answer at once with an error envelope of status S
//	                       (400-599), before the body is even parsed; nothing
//	                       is generated or counted
//	X-Sim-TTFT: D          time to first token: a Go duration or milliseconds
//	X-Sim-TPS: R           tokens per second per choice (0 = no delay)
//	X-Sim-Chunk: N         tokens per streamed chunk after the first
//	X-Request-Id: ID       as in vLLM, the response id becomes prefix + ID
//
// These headers apply to the POST routes (the /v1 endpoints, /tokenize and
// /detokenize; the timing and failure ones only to generation). A
// malformed X-Sim-* header is answered with 400, so a typo cannot go
// unnoticed.
//
// # Accounting
//
// Every request except those to /sim/ is recorded (Requests). Counters
// returns totals that equal what the server reported in usage, plus, for
// aborted and failed generations, what was generated before they ended.
// When the client goes away the generation stops at once, the request
// counts as aborted, and its tokens go into GenerationTokens and
// vllm:generation_tokens_total but were never reported to the client — as
// in vLLM. Counters are updated before the last bytes of an answer are
// written, so a client that read a whole answer sees counters including it.
package vllmsim
