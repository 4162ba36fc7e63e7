package vllmsim

import (
	"net/http"
	"strings"
)

// apiError is an error answered in vLLM's envelope.
type apiError struct {
	status int
	typ    string
	msg    string
	param  string // "" is null
	// validation marks a request-validation failure, which vLLM answers
	// from its app-wide handler rather than from the route's own code.
	validation bool
}

// validationError is a request-validation failure: "Bad Request" as the type
// in 2026 handlers, "BadRequestError" in older ones.
func (s *Server) validationError(msg string) apiError {
	typ := "Bad Request"
	if s.cfg.LegacyErrors {
		typ = "BadRequestError"
	}
	return apiError{status: http.StatusBadRequest, typ: typ, msg: msg, validation: true}
}

// badRequest is a BadRequestError raised by the serving code (context
// length, sampling parameters).
func badRequest(msg, param string) apiError {
	return apiError{status: http.StatusBadRequest, typ: "BadRequestError", msg: msg, param: param}
}

// errorTypeForStatus names the error type vLLM would use for a status.
func errorTypeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequestError"
	case http.StatusNotFound:
		return "NotFoundError"
	case http.StatusInternalServerError:
		return "InternalServerError"
	case http.StatusNotImplemented:
		return "NotImplementedError"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "") + "Error"
}

// appendErrorBody appends the envelope: nested {"error":{…}} by default,
// flat {"object":"error",…} with LegacyErrors. code is the HTTP status.
func (s *Server) appendErrorBody(b []byte, e apiError) []byte {
	if s.cfg.LegacyErrors {
		b = append(b, `{"object":"error","message":`...)
	} else {
		b = append(b, `{"error":{"message":`...)
	}
	b = appendString(b, e.msg)
	b = append(b, `,"type":`...)
	b = appendString(b, e.typ)
	b = append(b, `,"param":`...)
	b = appendNullableString(b, e.param)
	b = append(b, `,"code":`...)
	b = appendInt(b, e.status)
	if s.cfg.LegacyErrors {
		return append(b, '}')
	}
	return append(b, "}}"...)
}

func (s *Server) writeError(w http.ResponseWriter, e apiError) {
	writeJSON(w, e.status, s.appendErrorBody(make([]byte, 0, 128+len(e.msg)), e))
}

// writeMessagesError answers an error on the Anthropic routes. The route's
// own errors (unknown model, context length, a failed generation) come in
// the Anthropic envelope, {"type":"error","error":{type, message}}, with
// the OpenAI error's type (translate_error_response). Request-validation
// failures are answered by vLLM's app-wide handler in the OpenAI envelope
// (issue #57997) unless Config.AnthropicValidationErrors is set.
func (s *Server) writeMessagesError(w http.ResponseWriter, e apiError) {
	if e.validation && !s.cfg.AnthropicValidationErrors {
		s.writeError(w, e)
		return
	}
	if e.validation {
		e.typ = "invalid_request_error"
	}
	b := append(make([]byte, 0, 64+len(e.msg)), `{"type":"error","error":{"type":`...)
	b = appendString(b, e.typ)
	b = append(b, `,"message":`...)
	b = appendString(b, e.msg)
	writeJSON(w, e.status, append(b, "}}"...))
}

// appendStreamError appends a mid-stream error event. vLLM builds it with
// json.dumps, hence the spaces after ':' and ',' and the \u escapes; the
// top-level key is "error" in every era, wrapping the flat object in old
// ones.
func (s *Server) appendStreamError(b []byte, e apiError) []byte {
	b = append(b, `data: {"error": {`...)
	if s.cfg.LegacyErrors {
		b = append(b, `"object": "error", `...)
	}
	b = append(b, `"message": `...)
	b = appendStringASCII(b, e.msg)
	b = append(b, `, "type": `...)
	b = appendStringASCII(b, e.typ)
	b = append(b, `, "param": `...)
	if e.param == "" {
		b = append(b, "null"...)
	} else {
		b = appendStringASCII(b, e.param)
	}
	b = append(b, `, "code": `...)
	b = appendInt(b, e.status)
	return append(b, "}}\n\n"...)
}

// generationError is what vLLM reports when a generation fails
// (finish_reason "error", GenerationError).
var generationError = apiError{status: http.StatusInternalServerError, typ: "InternalServerError", msg: "Internal server error"}
