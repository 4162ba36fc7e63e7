package vllmsim

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// Finish reasons as vllm:request_success_total labels them.
const (
	finishStop = iota
	finishLength
	finishAbort
	finishError
	numFinish
)

var finishNames = [numFinish]string{"stop", "length", "abort", "error"}

// modelStats holds the per-model series /metrics shows.
type modelStats struct {
	name             string
	labels           string // model_name="…",engine="0"
	promptTokens     atomic.Int64
	generationTokens atomic.Int64
	running          atomic.Int64
	finished         [numFinish]atomic.Int64
	promptHist       *histogram
	generationHist   *histogram
}

func newModelStats(name string, maxModelLen int) *modelStats {
	bounds := buckets125(maxModelLen)
	return &modelStats{
		name:           name,
		labels:         `model_name="` + escapeLabel(name) + `",engine="0"`,
		promptHist:     newHistogram(bounds),
		generationHist: newHistogram(bounds),
	}
}

func (m *modelStats) reset() {
	m.promptTokens.Store(0)
	m.generationTokens.Store(0)
	for i := range m.finished {
		m.finished[i].Store(0)
	}
	m.promptHist.reset()
	m.generationHist.reset()
}

// buckets125 is vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, … up to max.
func buckets125(maxValue int) []int64 {
	var out []int64
	for exp := int64(1); ; exp *= 10 {
		for _, m := range []int64{1, 2, 5} {
			v := m * exp
			if v > int64(maxValue) {
				return out
			}
			out = append(out, v)
		}
	}
}

// histogram is a Prometheus histogram over integer observations.
type histogram struct {
	bounds []int64
	counts []atomic.Int64 // per bucket, not cumulative; last is +Inf
	sum    atomic.Int64
	count  atomic.Int64
}

func newHistogram(bounds []int64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Int64, len(bounds)+1)}
}

func (h *histogram) observe(v int64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(v)
	h.count.Add(1)
}

func (h *histogram) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.sum.Store(0)
	h.count.Store(0)
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// appendPromInt writes an integer the way Python's prometheus_client writes
// a float sample: "12.0".
func appendPromInt(b []byte, v int64) []byte {
	b = strconv.AppendInt(b, v, 10)
	return append(b, ".0"...)
}

func appendHeader(b []byte, name, typ, help string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

func appendSample(b []byte, name, labels string, v int64) []byte {
	b = append(b, name...)
	b = append(b, '{')
	b = append(b, labels...)
	b = append(b, "} "...)
	b = appendPromInt(b, v)
	return append(b, '\n')
}

func (s *Server) handleMetrics(w http.ResponseWriter) {
	b := make([]byte, 0, 8192)
	gauge := func(name, help string, get func(*modelStats) int64) {
		b = appendHeader(b, name, "gauge", help)
		for _, m := range s.models {
			b = appendSample(b, name, m.labels, get(m))
		}
	}
	counter := func(name, help string, get func(*modelStats) int64) {
		b = appendHeader(b, name, "counter", help)
		for _, m := range s.models {
			b = appendSample(b, name, m.labels, get(m))
		}
	}
	gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
		func(m *modelStats) int64 { return m.running.Load() })
	gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
		func(*modelStats) int64 { return 0 })
	counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.",
		func(m *modelStats) int64 { return m.promptTokens.Load() })
	counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
		func(m *modelStats) int64 { return m.generationTokens.Load() })

	b = appendHeader(b, "vllm:request_success_total", "counter", "Count of successfully processed requests.")
	for _, m := range s.models {
		for i, reason := range finishNames {
			b = appendSample(b, "vllm:request_success_total", m.labels+`,finished_reason="`+reason+`"`, m.finished[i].Load())
		}
	}
	hist := func(name, help string, get func(*modelStats) *histogram) {
		b = appendHeader(b, name, "histogram", help)
		for _, m := range s.models {
			h := get(m)
			var cum int64
			for i := range h.counts {
				cum += h.counts[i].Load()
				le := "+Inf"
				if i < len(h.bounds) {
					le = strconv.FormatInt(h.bounds[i], 10) + ".0"
				}
				b = appendSample(b, name+"_bucket", m.labels+`,le="`+le+`"`, cum)
			}
			b = appendSample(b, name+"_count", m.labels, h.count.Load())
			b = appendSample(b, name+"_sum", m.labels, h.sum.Load())
		}
	}
	hist("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
		func(m *modelStats) *histogram { return m.promptHist })
	hist("vllm:request_generation_tokens", "Number of generation tokens processed.",
		func(m *modelStats) *histogram { return m.generationHist })

	h := w.Header()
	h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
