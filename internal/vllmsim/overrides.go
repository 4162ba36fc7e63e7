package vllmsim

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// simOverrides are the X-Sim-* request headers, parsed.
type simOverrides struct {
	length     int           // natural answer length; 0 = Config.DefaultLength
	errorAfter int           // -1 = none
	crashAfter int           // -1 = none
	status     int           // 0 = none
	ttft       time.Duration // valid when hasTTFT
	hasTTFT    bool
	tps        float64 // valid when hasTPS
	hasTPS     bool
	chunk      int // 0 = Config.TokensPerChunk
}

// parseOverrides reads the X-Sim-* headers; a malformed one is an error so
// that a test with a typo fails loudly instead of silently testing nothing.
func parseOverrides(h http.Header) (simOverrides, error) {
	ov := simOverrides{errorAfter: -1, crashAfter: -1}
	var err error
	intHeader := func(name string, min int, dst *int) {
		v := strings.TrimSpace(h.Get(name))
		if v == "" || err != nil {
			return
		}
		n, e := strconv.Atoi(v)
		if e != nil || n < min {
			err = fmt.Errorf("invalid %s header %q: want an integer >= %d", name, v, min)
			return
		}
		*dst = n
	}
	intHeader("X-Sim-Length", 1, &ov.length)
	intHeader("X-Sim-Error-After", 0, &ov.errorAfter)
	intHeader("X-Sim-Crash-After", 0, &ov.crashAfter)
	intHeader("X-Sim-Status", 400, &ov.status)
	intHeader("X-Sim-Chunk", 1, &ov.chunk)
	if err == nil && ov.status > 599 {
		err = fmt.Errorf("invalid X-Sim-Status header %d: want 400-599", ov.status)
	}
	if err != nil {
		return ov, err
	}
	if v := strings.TrimSpace(h.Get("X-Sim-TTFT")); v != "" {
		d, e := parseDuration(v)
		if e != nil {
			return ov, fmt.Errorf("invalid X-Sim-TTFT header %q: want a Go duration (250ms) or milliseconds", v)
		}
		ov.ttft, ov.hasTTFT = d, true
	}
	if v := strings.TrimSpace(h.Get("X-Sim-TPS")); v != "" {
		f, e := strconv.ParseFloat(v, 64)
		if e != nil || f < 0 {
			return ov, fmt.Errorf("invalid X-Sim-TPS header %q: want tokens per second >= 0", v)
		}
		ov.tps, ov.hasTPS = f, true
	}
	return ov, nil
}

// parseDuration accepts a Go duration ("1.5s", "200ms") or a bare number of
// milliseconds.
func parseDuration(v string) (time.Duration, error) {
	if ms, err := strconv.ParseFloat(v, 64); err == nil {
		if ms < 0 {
			return 0, fmt.Errorf("negative duration")
		}
		return time.Duration(ms * float64(time.Millisecond)), nil
	}
	d, err := time.ParseDuration(v)
	if err == nil && d < 0 {
		err = fmt.Errorf("negative duration")
	}
	return d, err
}
