package main

import (
	"crypto/sha256"
	"os"
	"strings"
	"testing"
	"time"
)

// statLine builds a /proc/<pid>/stat line with the given command name and
// utime/stime (fields 14 and 15); the other fields are plausible fillers.
func statLine(comm string, utime, stime string) string {
	f := []string{"S", "1", "1", "1", "0", "-1", "4194560", "100", "0", "0", "0", utime, stime, "0", "0", "20", "0", "8", "0", "12345"}
	return "4242 (" + comm + ") " + strings.Join(f, " ") + "\n"
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"plain", statLine("caddy", "150", "50"), 2 * time.Second, false},
		{"zero", statLine("caddy", "0", "0"), 0, false},
		{"command with spaces and parens", statLine("we) ird (name", "3", "4"), 70 * time.Millisecond, false},
		{"no command", "4242 caddy S 1 1", 0, true},
		{"too few fields", "4242 (caddy) S 1 1 1", 0, true},
		{"non-numeric utime", statLine("caddy", "x", "1"), 0, true},
		{"negative stime", statLine("caddy", "1", "-1"), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatCPU([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseStatCPU(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"typical", "Name:\tcaddy\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n", 12345 << 10, false},
		{"last line without newline", "Name:\tx\nVmRSS:\t1 kB", 1024, false},
		{"missing (kernel thread)", "Name:\tkthreadd\nState:\tS\n", 0, true},
		{"wrong unit", "VmRSS:\t12 MB\n", 0, true},
		{"not a number", "VmRSS:\tlots kB\n", 0, true},
		{"no value", "VmRSS:\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVmRSS([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseVmRSS = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestProcSelf reads this test process's own /proc files: the RSS of a Go
// test binary is megabytes, and CPU time grows while we burn CPU.
func TestProcSelf(t *testing.T) {
	pid := os.Getpid()
	rss, err := ProcRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 64<<30 {
		t.Errorf("ProcRSS(self) = %d bytes, want between 1 MiB and 64 GiB", rss)
	}
	before, err := ProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn at least 50 ms of CPU (5 ticks of USER_HZ), measured by the
	// kernel rather than by the wall clock.
	sum := sha256.Sum256(nil)
	var after time.Duration
	for i := 0; ; i++ {
		sum = sha256.Sum256(sum[:])
		if i%10000 != 0 {
			continue
		}
		if after, err = ProcCPU(pid); err != nil {
			t.Fatal(err)
		}
		if after-before >= 50*time.Millisecond {
			break
		}
	}
	if after <= before {
		t.Errorf("CPU time did not grow: %v then %v", before, after)
	}
	if _, err := ProcCPU(1 << 30); err == nil {
		t.Error("ProcCPU of a pid that cannot exist succeeded")
	}
	if _, err := ProcRSS(1 << 30); err == nil {
		t.Error("ProcRSS of a pid that cannot exist succeeded")
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte(statLine("caddy", "1", "2")))
	f.Add([]byte(statLine("a) b", "99999999999", "0")))
	f.Add([]byte("1 () "))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v without error", d)
		}
	})
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t 10 kB\n"))
	f.Add([]byte("Name: x\nVmRSS: 1 kB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseVmRSS(b)
		if err == nil && (n < 0 || n%1024 != 0) {
			t.Fatalf("RSS %d without error", n)
		}
	})
}

func BenchmarkProcCPU(b *testing.B) {
	pid := os.Getpid()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ProcCPU(pid); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	const tick = time.Second / userHZ
	tests := []struct {
		name        string
		in          string
		busy, total time.Duration
		wantErr     bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// guest time is inside user and nice, so it is not added again.
		{"full", "cpu  100 2 30 500 7 1 4 3 50 9\ncpu0 50 1 15 250 3 0 2 1 25 4\nintr 1\n", 140 * tick, 647 * tick, false},
		{"old kernel, five fields", "cpu 10 0 5 80 5\n", 15 * tick, 100 * tick, false},
		{"no newline", "cpu  1 0 0 9 0 0 0 0 0 0", tick, 10 * tick, false},
		{"per-cpu line first", "cpu0 1 0 0 9 0\n", 0, 0, true},
		{"empty", "", 0, 0, true},
		{"too few fields", "cpu  1 2 3\n", 0, 0, true},
		{"not a number", "cpu  1 x 3 4 5\n", 0, 0, true},
		{"negative", "cpu  1 -2 3 4 5\n", 0, 0, true},
		{"overflowing", "cpu  99999999999999999 0 0 0 0\n", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy, total, err := ParseMachineCPU([]byte(tt.in))
			if (err != nil) != tt.wantErr || busy != tt.busy || total != tt.total {
				t.Errorf("ParseMachineCPU(%q) = %v, %v, %v; want %v, %v, error %v", tt.in, busy, total, err, tt.busy, tt.total, tt.wantErr)
			}
		})
	}
	// This machine's own: busy never exceeds total, and both move forward.
	b0, t0, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if b0 <= 0 || b0 > t0 {
		t.Fatalf("machine CPU busy %v of %v", b0, t0)
	}
	for deadline := time.Now().Add(2 * time.Second); ; {
		_, t1, err := MachineCPU()
		if err != nil || t1 < t0 {
			t.Fatalf("machine CPU total went from %v to %v (%v)", t0, t1, err)
		}
		if t1 > t0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine CPU total stuck at %v for 2s", t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
