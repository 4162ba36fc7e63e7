package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat. The kernel
// reports them in USER_HZ, which is 100 on every Linux architecture Go
// supports (sysconf(_SC_CLK_TCK) cannot be read without cgo).
const userHZ = 100

// ParseStatCPU returns utime+stime from the contents of /proc/<pid>/stat:
// the CPU time the process has used, all threads included, in user and
// kernel mode.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	// The second field is the command name in parentheses and may itself
	// contain spaces and parentheses: the fields we want come after the
	// last ')'.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	fields := bytes.Fields(stat[end+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("/proc stat: %d fields after the command, want > %d", len(fields), stime)
	}
	var ticks int64
	for _, f := range [][]byte{fields[utime], fields[stime]} {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc stat: bad CPU time %q", f)
		}
		ticks += n
		if ticks < 0 || ticks > math.MaxInt64/int64(time.Second/userHZ) {
			return 0, fmt.Errorf("/proc stat: CPU time %q out of range", f)
		}
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// ParseVmRSS returns the resident set size in bytes from the contents of
// /proc/<pid>/status (its "VmRSS:   1234 kB" line).
func ParseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("/proc status: malformed VmRSS line %q", bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("/proc status: bad VmRSS %q", f[0])
		}
		return kb << 10, nil
	}
	return 0, errors.New("/proc status: no VmRSS line (kernel thread or zombie?)")
}

// ProcCPU reads the CPU time used so far by process pid.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatCPU(b)
}

// ProcRSS reads the resident set size of process pid in bytes.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseVmRSS(b)
}

// ParseMachineCPU returns, from the contents of /proc/stat, the CPU time
// of the whole machine (all CPUs summed) spent busy and in total, idle
// and I/O wait included: the first line, "cpu  user nice system idle
// iowait irq softirq steal ...", in USER_HZ. Guest time is already
// counted in user and nice, so the fields after steal are not added.
func ParseMachineCPU(stat []byte) (busy, total time.Duration, err error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	rest, ok := bytes.CutPrefix(line, []byte("cpu "))
	if !ok {
		return 0, 0, errors.New("/proc/stat: first line is not the cpu total")
	}
	fields := bytes.Fields(rest)
	const idle, iowait, steal = 3, 4, 7
	if len(fields) <= iowait {
		return 0, 0, fmt.Errorf("/proc/stat: %d cpu fields, want at least %d", len(fields), iowait+1)
	}
	var busyT, idleT int64
	for k, f := range fields[:min(len(fields), steal+1)] {
		n, err := strconv.ParseInt(string(f), 10, 64)
		// Bounded so that the sum of the eight fields, in nanoseconds,
		// cannot overflow.
		if err != nil || n < 0 || n > math.MaxInt64/int64(time.Second/userHZ)/16 {
			return 0, 0, fmt.Errorf("/proc/stat: bad cpu time %q", f)
		}
		if k == idle || k == iowait {
			idleT += n
		} else {
			busyT += n
		}
	}
	tick := time.Second / userHZ
	return time.Duration(busyT) * tick, time.Duration(busyT+idleT) * tick, nil
}

// MachineCPU reads the machine's busy and total CPU time so far.
func MachineCPU() (busy, total time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return ParseMachineCPU(b)
}
