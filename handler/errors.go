package handler

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

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
	return &apiError{Status: 403, Type: "permission_error", Code: "model_not_allowed", Param: "model",
		Message: "The model `" + model + "` is not allowed by your plan."}
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

// write answers the error. Headers already set on w (x-ratelimit-*) stay.
func (e *apiError) write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	var param *string
	if e.Param != "" {
		param = &e.Param
	}
	body, _ := json.Marshal(errorBody{Error: errorInner{Message: e.Message, Type: e.Type, Param: param, Code: e.Code}})
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
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
