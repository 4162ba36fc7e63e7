package gate

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are process-wide: Caddy gives each config its own registry, and
// registering the same collectors with each new one keeps the counts across
// reloads.
var Metrics = struct {
	Tokens         *prometheus.CounterVec
	UserTokens     *prometheus.CounterVec
	Requests       *prometheus.CounterVec
	EstimateError  prometheus.Histogram
	ActiveRequests prometheus.GaugeFunc
	Reservations   prometheus.GaugeFunc
	CommitDuration prometheus.Histogram
	CommitRecords  prometheus.Counter
	StoreSize      prometheus.GaugeFunc
}{
	Tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "tokens_total",
		Help: "Tokens charged, by kind (prompt, completion) and model.",
	}, []string{"kind", "model"}),
	UserTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "user_tokens_total",
		Help: "Tokens charged per user and kind; only with metrics_per_user.",
	}, []string{"user", "kind"}),
	Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "requests_total",
		Help: "Requests by outcome: ok, unauthorized, forbidden, bad_request, quota, rate, upstream_error, client_abort.",
	}, []string{"outcome"}),
	EstimateError: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "prompt_estimate_error_ratio",
		Help:    "(estimated − reported) / reported prompt tokens, for requests whose usage the upstream reported.",
		Buckets: []float64{-0.5, -0.2, -0.1, -0.05, -0.02, 0, 0.02, 0.05, 0.1, 0.2, 0.5},
	}),
	ActiveRequests: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "active_requests",
		Help: "Metered requests in flight (streams included).",
	}, func() float64 { return float64(inFlight.Load()) }),
	Reservations: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "reservations",
		Help: "Token reservations held by admitted requests that have not settled.",
	}, func() float64 {
		n := 0
		liveStates.Range(func(k, _ any) bool { n += k.(*State).Engine.Reservations(); return true })
		return float64(n)
	}),
	CommitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "store_commit_seconds",
		Help:    "Time to commit a batch of usage to the store.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
	}),
	CommitRecords: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "store_records_total",
		Help: "Per-request records committed to the store.",
	}),
	StoreSize: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "llm_gate", Name: "store_size_bytes",
		Help: "Size of the bbolt file(s).",
	}, func() float64 {
		var n int64
		liveStates.Range(func(k, _ any) bool { n += k.(*State).size(); return true })
		return float64(n)
	}),
}

// inFlight counts the metered requests in flight, in every config: the
// active_requests gauge reads it, and the handler asks it whether a request
// is alone.
var inFlight atomic.Int64

// RequestStarted counts a metered request in flight until RequestDone.
func RequestStarted() { inFlight.Add(1) }

// RequestDone ends what RequestStarted counted.
func RequestDone() { inFlight.Add(-1) }

// InFlight returns the number of metered requests in flight.
func InFlight() int64 { return inFlight.Load() }

// liveStates are the States whose gauges the metrics read.
var liveStates sync.Map

func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		Metrics.Tokens, Metrics.UserTokens, Metrics.Requests, Metrics.EstimateError, Metrics.ActiveRequests,
		Metrics.Reservations, Metrics.CommitDuration, Metrics.CommitRecords, Metrics.StoreSize,
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

func observeCommit(records int, took time.Duration, err error) {
	if err != nil {
		return
	}
	Metrics.CommitDuration.Observe(took.Seconds())
	Metrics.CommitRecords.Add(float64(records))
}
