package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99.9, 7 * time.Millisecond},
		{"p0 is the minimum", ms(1, 2, 3), 0, time.Millisecond},
		{"p100 is the maximum", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"median of odd count", ms(1, 2, 3), 50, 2 * time.Millisecond},
		// Nearest rank: ceil(0.5*4) = 2nd sample, never an interpolation.
		{"median of even count", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p90 of 1..100", hundred, 90, 90 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p1 of 1..100", hundred, 1, time.Millisecond},
		{"above 100 clamps", ms(1, 2), 150, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

// TestPercentileProperty checks the nearest-rank definition on random
// data: at least p% of the samples are <= the result, and fewer than p% are
// strictly below it.
func TestPercentileProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		n := 1 + rng.IntN(300)
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(rng.IntN(50))
		}
		SortDurations(d)
		if !slices.IsSorted(d) {
			t.Fatal("SortDurations did not sort")
		}
		p := 0.1 + rng.Float64()*99.9
		v := Percentile(d, p)
		le, lt := 0, 0
		for _, x := range d {
			if x <= v {
				le++
			}
			if x < v {
				lt++
			}
		}
		if float64(le) < p/100*float64(n)-1e-9 || float64(lt) >= p/100*float64(n) {
			t.Fatalf("n=%d p=%.2f: result %v has %d samples <= and %d samples <", n, p, v, le, lt)
		}
	}
}

func TestSpreadOf(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		in   []float64
		want Spread
	}{
		{"odd", []float64{3, 1, 2}, Spread{1, 2, 3, 3}},
		{"even averages the middle", []float64{4, 1, 3, 2}, Spread{1, 2.5, 4, 4}},
		{"one", []float64{5}, Spread{5, 5, 5, 1}},
		{"NaN skipped", []float64{nan, 2, nan, 4}, Spread{2, 3, 4, 2}},
		{"negative", []float64{-5, 5, 0}, Spread{-5, 0, 5, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			if got := SpreadOf(tt.in); got != tt.want {
				t.Errorf("SpreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
			if !slices.EqualFunc(in, tt.in, func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }) {
				t.Errorf("SpreadOf modified its input")
			}
		})
	}
	for _, in := range [][]float64{nil, {nan, nan}} {
		s := SpreadOf(in)
		if s.N != 0 || !math.IsNaN(s.Median) || !math.IsNaN(s.Min) || !math.IsNaN(s.Max) {
			t.Errorf("SpreadOf(%v) = %+v, want NaNs and N 0", in, s)
		}
	}
}

func floatsEqual(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool {
		return x == y || (math.IsNaN(x) && math.IsNaN(y)) || math.Abs(x-y) < 1e-12
	})
}

func TestRatiosAndDeltas(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name        string
		a, b        []float64
		ratio, diff []float64
	}{
		{"paired", []float64{2, 9, 1}, []float64{4, 3, 1}, []float64{0.5, 3, 1}, []float64{-2, 6, 0}},
		{"NaN on either side", []float64{nan, 4}, []float64{1, nan}, []float64{nan, nan}, []float64{nan, nan}},
		{"division by zero", []float64{1}, []float64{0}, []float64{nan}, []float64{1}},
		{"shorter side wins", []float64{1, 2, 3}, []float64{1}, []float64{1}, []float64{0}},
		{"empty", nil, []float64{1}, []float64{}, []float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Ratios(tt.a, tt.b); !floatsEqual(got, tt.ratio) {
				t.Errorf("Ratios = %v, want %v", got, tt.ratio)
			}
			if got := Deltas(tt.a, tt.b); !floatsEqual(got, tt.diff) {
				t.Errorf("Deltas = %v, want %v", got, tt.diff)
			}
		})
	}
}

func TestMicros(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want float64
	}{{0, 0}, {time.Microsecond, 1}, {1500 * time.Nanosecond, 1.5}, {2 * time.Second, 2e6}} {
		if got := Micros(tt.d); got != tt.want {
			t.Errorf("Micros(%v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}

func BenchmarkPercentiles(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	src := make([]time.Duration, 100000)
	for i := range src {
		src[i] = time.Duration(rng.IntN(1e6))
	}
	d := make([]time.Duration, len(src))
	b.ReportAllocs()
	for b.Loop() {
		copy(d, src)
		SortDurations(d)
		for _, p := range []float64{50, 90, 99, 99.9} {
			_ = Percentile(d, p)
		}
	}
}
