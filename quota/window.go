package quota

import (
	"fmt"
	"strings"
	"time"
)

// Window is a period over which tokens and requests are counted.
type Window uint8

// The windows, shortest first. Minute is sliding; the others are calendar
// periods in UTC; Total never resets.
const (
	Minute Window = iota
	Hour
	Day
	Week
	Month
	Total
	NumWindows // number of windows, not a window
)

var windowNames = [NumWindows]string{"minute", "hour", "day", "week", "month", "total"}

// ParseWindow parses a window name: minute, hour, day, week, month or total,
// in any letter case.
func ParseWindow(s string) (Window, error) {
	for w := Minute; w < NumWindows; w++ {
		if strings.EqualFold(s, windowNames[w]) {
			return w, nil
		}
	}
	return 0, fmt.Errorf("quota: unknown window %q (valid: %s)", s, strings.Join(windowNames[:], ", "))
}

// String returns the window's name as ParseWindow accepts it.
func (w Window) String() string {
	if w < NumWindows {
		return windowNames[w]
	}
	return fmt.Sprintf("window(%d)", uint8(w))
}

// Sliding reports whether the window slides with the clock (Minute) rather
// than resetting at calendar boundaries.
func (w Window) Sliding() bool { return w == Minute }

// Start returns the start of the period containing t, in UTC. For Minute it is
// t − 60s; for Total the zero time.
func (w Window) Start(t time.Time) time.Time {
	t = t.UTC()
	switch w {
	case Minute:
		return t.Add(-time.Minute)
	case Hour:
		y, m, d := t.Date()
		return time.Date(y, m, d, t.Hour(), 0, 0, 0, time.UTC)
	case Day:
		y, m, d := t.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case Week:
		y, m, d := t.Date()
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, m, d-back, 0, 0, 0, 0, time.UTC)
	case Month:
		y, m, _ := t.Date()
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}

// Reset returns when the period containing t ends, in UTC. For Minute it is
// t + 60s, the latest time by which everything counted at t has aged out; for
// Total the zero time (never).
func (w Window) Reset(t time.Time) time.Time {
	switch w {
	case Minute:
		return t.UTC().Add(time.Minute)
	case Hour:
		return w.Start(t).Add(time.Hour)
	case Day:
		return w.Start(t).AddDate(0, 0, 1)
	case Week:
		return w.Start(t).AddDate(0, 0, 7)
	case Month:
		return w.Start(t).AddDate(0, 1, 0) // from the 1st, so no day overflow
	}
	return time.Time{}
}

// per phrases the window for messages: "per day", "in total".
func (w Window) per() string {
	if w == Total {
		return "in total"
	}
	return "per " + w.String()
}

// clock is one reading of the clock with every calendar period start computed
// once, as Unix seconds, so the hot path compares integers.
type clock struct {
	now   time.Time
	sec   int64
	start [NumWindows]int64 // Hour..Month; Minute and Total unused (0)
}

func newClock(now time.Time) clock {
	c := clock{now: now, sec: now.Unix()}
	days := floorDiv(c.sec, 86400)
	c.start[Hour] = floorDiv(c.sec, 3600) * 3600
	c.start[Day] = days * 86400
	// 1970-01-01 was a Thursday, three days after a Monday.
	c.start[Week] = (days - mod(days+3, 7)) * 86400
	c.start[Month] = (days - dayOfMonth(days) + 1) * 86400
	return c
}

// reset is w.Reset(c.now), from the period starts already computed for the
// fixed-length windows.
func (c *clock) reset(w Window) time.Time {
	switch w {
	case Hour:
		return time.Unix(c.start[Hour]+3600, 0).UTC()
	case Day:
		return time.Unix(c.start[Day]+86400, 0).UTC()
	case Week:
		return time.Unix(c.start[Week]+7*86400, 0).UTC()
	}
	return w.Reset(c.now)
}

// dayOfMonth returns the day of the month (1–31) of the given day since
// 1970-01-01 in the proleptic Gregorian calendar, with integer arithmetic only
// (Howard Hinnant's civil_from_days; time.Date costs more on the hot path).
func dayOfMonth(days int64) int64 {
	z := days + 719468 // days since 0000-03-01
	era := floorDiv(z, 146097)
	doe := z - era*146097                                  // day of the 400-year era
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // year of the era
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // day of the year, from March 1st
	mp := (5*doy + 2) / 153                                // month, from March
	return doy - (153*mp+2)/5 + 1
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func mod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}
