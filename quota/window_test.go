package quota

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func utc(y int, m time.Month, d, h, min, s int) time.Time {
	return time.Date(y, m, d, h, min, s, 0, time.UTC)
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in   string
		want Window
		ok   bool
	}{
		{"minute", Minute, true},
		{"hour", Hour, true},
		{"day", Day, true},
		{"week", Week, true},
		{"month", Month, true},
		{"total", Total, true},
		{"DAY", Day, true},
		{"Month", Month, true},
		{"days", 0, false},
		{"1m", 0, false},
		{"", 0, false},
		{" day", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseWindow(tt.in)
		if tt.ok != (err == nil) || (tt.ok && got != tt.want) {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "minute, hour, day, week, month, total") {
			t.Errorf("ParseWindow(%q) error %q does not list the valid words", tt.in, err)
		}
	}
	for w := Minute; w < NumWindows; w++ {
		if got, err := ParseWindow(w.String()); err != nil || got != w {
			t.Errorf("ParseWindow(%v.String()) = %v, %v", w, got, err)
		}
	}
	if s := NumWindows.String(); s != "window(6)" {
		t.Errorf("NumWindows.String() = %q", s)
	}
}

func TestWindowStartReset(t *testing.T) {
	plus5 := time.FixedZone("UTC+5", 5*3600)
	tests := []struct {
		name         string
		w            Window
		at           time.Time
		start, reset time.Time
	}{
		{"minute slides", Minute, utc(2024, 3, 10, 13, 45, 12), utc(2024, 3, 10, 13, 44, 12), utc(2024, 3, 10, 13, 46, 12)},
		{"hour", Hour, utc(2024, 3, 10, 13, 45, 12).Add(500 * time.Millisecond), utc(2024, 3, 10, 13, 0, 0), utc(2024, 3, 10, 14, 0, 0)},
		{"hour at boundary", Hour, utc(2024, 3, 10, 14, 0, 0), utc(2024, 3, 10, 14, 0, 0), utc(2024, 3, 10, 15, 0, 0)},
		{"hour before midnight", Hour, utc(2024, 12, 31, 23, 59, 59), utc(2024, 12, 31, 23, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
		{"day", Day, utc(2024, 3, 10, 13, 45, 12), utc(2024, 3, 10, 0, 0, 0), utc(2024, 3, 11, 0, 0, 0)},
		{"day end of year", Day, utc(2024, 12, 31, 23, 59, 59), utc(2024, 12, 31, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
		{"day leap", Day, utc(2024, 2, 28, 12, 0, 0), utc(2024, 2, 28, 0, 0, 0), utc(2024, 2, 29, 0, 0, 0)},
		{"day in another zone", Day, time.Date(2024, 3, 1, 2, 0, 0, 0, plus5), utc(2024, 2, 29, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0)},
		{"week on Monday", Week, utc(2024, 1, 8, 0, 0, 0), utc(2024, 1, 8, 0, 0, 0), utc(2024, 1, 15, 0, 0, 0)},
		{"week on Sunday night", Week, utc(2024, 1, 7, 23, 59, 59), utc(2024, 1, 1, 0, 0, 0), utc(2024, 1, 8, 0, 0, 0)},
		{"week mid-week", Week, utc(2024, 1, 10, 12, 0, 0), utc(2024, 1, 8, 0, 0, 0), utc(2024, 1, 15, 0, 0, 0)},
		{"week across new year", Week, utc(2025, 1, 1, 9, 0, 0), utc(2024, 12, 30, 0, 0, 0), utc(2025, 1, 6, 0, 0, 0)},
		{"week across month", Week, utc(2024, 3, 2, 9, 0, 0), utc(2024, 2, 26, 0, 0, 0), utc(2024, 3, 4, 0, 0, 0)},
		{"month", Month, utc(2024, 3, 10, 13, 45, 12), utc(2024, 3, 1, 0, 0, 0), utc(2024, 4, 1, 0, 0, 0)},
		{"month leap February", Month, utc(2024, 2, 29, 12, 0, 0), utc(2024, 2, 1, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0)},
		{"month plain February", Month, utc(2023, 2, 28, 23, 59, 59), utc(2023, 2, 1, 0, 0, 0), utc(2023, 3, 1, 0, 0, 0)},
		{"month of 31 days", Month, utc(2024, 1, 31, 12, 0, 0), utc(2024, 1, 1, 0, 0, 0), utc(2024, 2, 1, 0, 0, 0)},
		{"month December", Month, utc(2024, 12, 31, 23, 59, 59), utc(2024, 12, 1, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
		{"month on the 1st", Month, utc(2025, 1, 1, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0), utc(2025, 2, 1, 0, 0, 0)},
		{"total", Total, utc(2024, 3, 10, 13, 45, 12), time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.Start(tt.at); !got.Equal(tt.start) || got.Location() != time.UTC {
				t.Errorf("%v.Start(%v) = %v, want %v (UTC)", tt.w, tt.at, got, tt.start)
			}
			if got := tt.w.Reset(tt.at); !got.Equal(tt.reset) {
				t.Errorf("%v.Reset(%v) = %v, want %v", tt.w, tt.at, got, tt.reset)
			}
			if tt.w == Week && tt.w.Start(tt.at).Weekday() != time.Monday {
				t.Errorf("week starts on %v", tt.w.Start(tt.at).Weekday())
			}
		})
	}
	if NumWindows.Start(time.Now()) != (time.Time{}) || NumWindows.Reset(time.Now()) != (time.Time{}) {
		t.Error("an invalid window should have zero start and reset")
	}
}

// The engine's integer period starts and resets must agree with Window.Start
// and Window.Reset everywhere,
// including before 1970 where division rounds the other way.
func TestClockMatchesWindowStart(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := utc(1960, 1, 1, 0, 0, 0).Unix(), utc(2100, 1, 1, 0, 0, 0).Unix()
	for i := 0; i < 20000; i++ {
		at := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9))
		if i%5 == 0 { // period edges and the second before them
			at = Day.Start(at).Add(-time.Duration(r.IntN(2)) * time.Second)
		}
		c := newClock(at)
		for w := Hour; w < Total; w++ {
			if want := w.Start(at).Unix(); c.start[w] != want {
				t.Fatalf("%v: clock start %d, Window.Start %d (%v)", at, c.start[w], want, w)
			}
			if got := c.reset(w); !got.Equal(w.Reset(at)) || got.Location() != time.UTC {
				t.Fatalf("%v: clock reset %v, Window.Reset %v (%v)", at, got, w.Reset(at), w)
			}
			if w.Start(at).After(at) || !w.Reset(at).After(at) {
				t.Fatalf("%v: %v period [%v, %v) does not contain it", at, w, w.Start(at), w.Reset(at))
			}
		}
	}
}
