package handler

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// apiError is an error answered to the client in OpenAI's shape, so every SDK
// shows its message.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Message string
	Param   string
	header  http.Header
}

func (e *apiError) Error() string { return e.Message }

// Errors of SPEC §4.
func errMissingKey() *apiError {
	return &apiError{Status: 401, Type: "invalid_request_error", Code: "missing_api_key",
		Message: "You didn't provide an API key. Send it as `Authorization: Bearer <key>` (or `x-api-key`).",
		header:  http.Header{"Www-Authenticate": {`Bearer realm="llm_gate"`}}}
}

func errInvalidKey() *apiError {
	return &apiError{Status: 401, Type: "invalid_request_error", Code: "invalid_api_key",
		Message: "Incorrect API key or token provided, or it has expired or been revoked.",
		header:  http.Header{"Www-Authenticate": {`Bearer realm="llm_gate", error="invalid_token"`}}}
}

func errUserDisabled() *apiError {
	return &apiError{Status: 403, Type: "permission_error", Code: "user_disabled",
		Message: "This user is disabled. Ask the gate's administrator."}
}

func errModelNotAllowed(model string) *apiError {
	msg := "The model `" + model + "` is not allowed by your plan."
	if model == "" {
		msg = "The request names no model, and the upstream lists none to serve it with: name one your plan allows."
	}
	return &apiError{Status: 403, Type: "permission_error", Code: "model_not_allowed", Param: "model", Message: msg}
}

func errBadRequest(code, msg string) *apiError {
	return &apiError{Status: 400, Type: "invalid_request_error", Code: code, Message: msg}
}

func errBodyTooLarge(limit int64) *apiError {
	return &apiError{Status: 413, Type: "invalid_request_error", Code: "body_too_large",
		Message: "The request body is larger than the gate accepts (" + strconv.FormatInt(limit, 10) + " bytes)."}
}

func errNotFound(path string) *apiError {
	return &apiError{Status: 404, Type: "invalid_request_error", Code: "not_found",
		Message: "Unknown path " + path + "; the gate serves the OpenAI API under /v1/."}
}

func errUpstream(status int) *apiError {
	if status < 500 {
		status = http.StatusBadGateway
	}
	return &apiError{Status: status, Type: "server_error", Code: "upstream_error",
		Message: "The model server is unavailable; you were not charged. Try again later."}
}

// upstreamFailure is the error for next's failure to get an answer from
// the upstream: its status (502 unless reverse_proxy chose another 5xx).
func upstreamFailure(err error) *apiError {
	status := http.StatusBadGateway
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		status = he.StatusCode
	}
	return errUpstream(status)
}

func errInternal() *apiError {
	return &apiError{Status: 500, Type: "server_error", Code: "internal_error",
		Message: "The gate failed to handle the request; you were not charged."}
}

// write answers the error to r. Headers already set on w (x-ratelimit-*)
// stay. The body has OpenAI's shape, or Anthropic's on the Messages API's
// paths, where clients use Anthropic's SDKs.
func (e *apiError) write(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	var body []byte
	if isMessagesPath(r.URL.Path) {
		body, _ = json.Marshal(anthropicErrorBody{Type: "error",
			Error: anthropicError{Type: anthropicType(e.Status), Message: e.Message, Code: e.Code}})
	} else {
		var param *string
		if e.Param != "" {
			param = &e.Param
		}
		body, _ = json.Marshal(errorBody{Error: errorInner{Message: e.Message, Type: e.Type, Param: param, Code: e.Code}})
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

// isMessagesPath reports whether path belongs to the Anthropic Messages API
// vLLM serves (/v1/messages and /v1/messages/count_tokens).
func isMessagesPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/v1/messages")
	return ok && (rest == "" || rest[0] == '/')
}

// anthropicType is the error type Anthropic's API gives a status.
func anthropicType(status int) string {
	switch status {
	case 400, 405:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	}
	return "api_error"
}

// anthropicErrorBody is Anthropic's error envelope; code keeps the gate's
// own code (insufficient_quota, model_not_allowed, …) for programs.
type anthropicErrorBody struct {
	Type  string         `json:"type"`
	Error anthropicError `json:"error"`
}

type anthropicError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Code    string `json:"code"`
}

type errorBody struct {
	Error errorInner `json:"error"`
}

type errorInner struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}
