package main

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample such that at least p% of the
// samples are less than or equal to it. Nearest rank never invents a value
// that was not measured, which matters for tail latencies with few samples.
// It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// SortDurations sorts d in place and returns it, for chaining into
// Percentile.
func SortDurations(d []time.Duration) []time.Duration {
	slices.Sort(d)
	return d
}

// Spread summarises one figure measured once per round.
type Spread struct {
	Min, Median, Max float64
	N                int // rounds that produced a value
}

// SpreadOf returns the minimum, median and maximum of vals, skipping NaNs
// (a round that could not produce the figure). The median of an even count
// is the mean of the two middle values.
func SpreadOf(vals []float64) Spread {
	v := make([]float64, 0, len(vals))
	for _, x := range vals {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{Min: math.NaN(), Median: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Spread{Min: v[0], Median: med, Max: v[n-1], N: n}
}

// Ratios divides a by b round by round (the rounds are paired: both were
// measured within the same round, so their ratio cancels most of the drift
// of a shared machine). A round missing either side yields NaN.
func Ratios(a, b []float64) []float64 {
	return pairwise(a, b, func(x, y float64) float64 {
		if y == 0 {
			return math.NaN()
		}
		return x / y
	})
}

// Deltas subtracts b from a round by round.
func Deltas(a, b []float64) []float64 {
	return pairwise(a, b, func(x, y float64) float64 { return x - y })
}

func pairwise(a, b []float64, f func(x, y float64) float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := range n {
		if math.IsNaN(a[i]) || math.IsNaN(b[i]) {
			out[i] = math.NaN()
			continue
		}
		out[i] = f(a[i], b[i])
	}
	return out
}

// Micros converts a duration to float microseconds, the unit every latency
// figure of the report is kept in.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
