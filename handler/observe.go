package handler

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/gate"
	"github.com/llmgate/llmgate/quota"
	"github.com/llmgate/llmgate/store"
)

// outcome is how a request ended, the label of
// caddy_llm_gate_requests_total.
type outcome uint8

const (
	outcomeOK outcome = iota
	outcomeUnauthorized
	outcomeForbidden
	outcomeBadRequest
	outcomeQuota
	outcomeRate
	outcomeUpstreamError
	outcomeClientAbort
	outcomeInternal
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"ok", "unauthorized", "forbidden", "bad_request", "quota", "rate",
	"upstream_error", "client_abort", "internal_error",
}

func (o outcome) String() string { return outcomeNames[o] }

func outcomeFor(e *apiError) outcome {
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

func outcomeForDenial(d *quota.Denial) outcome {
	if d.Kind == quota.Budget {
		return outcomeQuota
	}
	return outcomeRate
}

// outcomeCounters holds the requests_total child of each outcome, made on
// the outcome's first use: looking one up by its labels hashes them and
// takes a lock, on every request.
var outcomeCounters [numOutcomes]struct {
	once sync.Once
	c    prometheus.Counter
}

func (h *Handler) countOutcome(o outcome) {
	oc := &outcomeCounters[o]
	oc.once.Do(func() { oc.c = gate.Metrics.Requests.WithLabelValues(o.String()) })
	oc.c.Inc()
}

// modelCounters holds the tokens_total children of each model (prompt,
// completion). Only models the upstream served get here (a charge needs
// reported or generated tokens), so it grows like the metric itself.
var modelCounters sync.Map // model -> *[2]prometheus.Counter

func tokenCounters(model string) *[2]prometheus.Counter {
	if c, ok := modelCounters.Load(model); ok {
		return c.(*[2]prometheus.Counter)
	}
	c, _ := modelCounters.LoadOrStore(model, &[2]prometheus.Counter{
		gate.Metrics.Tokens.WithLabelValues("prompt", model),
		gate.Metrics.Tokens.WithLabelValues("completion", model),
	})
	return c.(*[2]prometheus.Counter)
}

// observe updates the metrics for a settled request; estimate is the
// gate's count of its prompt, or -1 if it was admitted without one.
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
	if rec.PromptTokens > 0 || rec.CompletionTokens > 0 {
		c := tokenCounters(rec.Model)
		if rec.PromptTokens > 0 {
			c[0].Add(float64(rec.PromptTokens))
		}
		if rec.CompletionTokens > 0 {
			c[1].Add(float64(rec.CompletionTokens))
		}
	}
	if h.app.MetricsPerUser {
		gate.Metrics.UserTokens.WithLabelValues(rec.User, "prompt").Add(float64(rec.PromptTokens))
		gate.Metrics.UserTokens.WithLabelValues(rec.User, "completion").Add(float64(rec.CompletionTokens))
	}
	if reported && rec.PromptTokens > 0 && estimate >= 0 {
		gate.Metrics.EstimateError.Observe(float64(estimate-rec.PromptTokens) / float64(rec.PromptTokens))
	}
}
