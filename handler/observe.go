package handler

import (
	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// Outcomes of a request, the label of caddy_llm_gate_requests_total.
const (
	outcomeOK            = "ok"
	outcomeUnauthorized  = "unauthorized"
	outcomeForbidden     = "forbidden"
	outcomeBadRequest    = "bad_request"
	outcomeQuota         = "quota"
	outcomeRate          = "rate"
	outcomeUpstreamError = "upstream_error"
	outcomeClientAbort   = "client_abort"
	outcomeInternal      = "internal_error"
)

func outcomeFor(e *apiError) string {
	switch e.Status {
	case 401:
		return outcomeUnauthorized
	case 403:
		return outcomeForbidden
	case 500:
		return outcomeInternal
	}
	return outcomeBadRequest
}

func outcomeForDenial(d *quota.Denial) string {
	if d.Kind == quota.Budget {
		return outcomeQuota
	}
	return outcomeRate
}

func (h *Handler) countOutcome(outcome string) {
	gate.Metrics.Requests.WithLabelValues(outcome).Inc()
}

// observe updates the metrics for a settled request.
func (h *Handler) observe(rec *store.Record, upstreamFailed, aborted, reported bool, estimate int64) {
	switch {
	case aborted:
		h.countOutcome(outcomeClientAbort)
	case upstreamFailed:
		h.countOutcome(outcomeUpstreamError)
	case rec.Status >= 400:
		h.countOutcome(outcomeBadRequest)
	default:
		h.countOutcome(outcomeOK)
	}
	if rec.PromptTokens > 0 {
		gate.Metrics.Tokens.WithLabelValues("prompt", rec.Model).Add(float64(rec.PromptTokens))
	}
	if rec.CompletionTokens > 0 {
		gate.Metrics.Tokens.WithLabelValues("completion", rec.Model).Add(float64(rec.CompletionTokens))
	}
	if h.app.MetricsPerUser {
		gate.Metrics.UserTokens.WithLabelValues(rec.User, "prompt").Add(float64(rec.PromptTokens))
		gate.Metrics.UserTokens.WithLabelValues(rec.User, "completion").Add(float64(rec.CompletionTokens))
	}
	if reported && rec.PromptTokens > 0 {
		gate.Metrics.EstimateError.Observe(float64(estimate-rec.PromptTokens) / float64(rec.PromptTokens))
	}
}
