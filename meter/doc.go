// Package meter reads OpenAI-compatible inference traffic for the gate: what
// a request asks for, and how many tokens its response used.
//
// Request side, once per request: ParseRequest reads the fields the gate
// needs (model, stream, n, output cap, stream_options) and keeps the prompt
// parts in place; EstimatePrompt counts the prompt with a tokenizer;
// TokenizeBody builds the body for an exact count by vLLM's /tokenize; and
// Rewrite splices the body to ask for the stream's usage chunk and to cap
// the output, leaving every other byte as the client sent it.
//
// Response side, on the hot path: StreamMeter reads an SSE stream as it is
// relayed (optionally removing the usage chunk the gate asked for), and
// JSONMeter scans a JSON body for its top-level usage and error. Both work
// incrementally on the bytes as they pass, keep little, and do not allocate
// per event. They accept the wire variants of the drift table in the shared
// VLLM.md (§11): nested and flat error envelopes, reasoning and
// reasoning_content, usage null or absent, continuous usage, and the
// Responses API's events.
//
// JSON is read by a small scanner of its own (jsonscan.go) that matches keys
// exactly after unescaping, as vLLM's Python parser does, and takes the last
// of repeated keys; it is tested against encoding/json.
//
// The package knows nothing of Caddy or HTTP.
package meter
