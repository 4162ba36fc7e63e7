// Package freeport picks TCP ports for the servers that tests and the
// benchmark start and then tell another program about.
//
// A port taken from a listener on port 0 and closed again is in the kernel's
// ephemeral range, which the kernel keeps handing out: to the next listener on
// port 0 (httptest servers) and as the local port of outgoing connections. A
// server told to bind that port a moment later can find it taken ("bind:
// address already in use"). Pick returns ports below that range, which the
// kernel never hands out on its own.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// rangeFile holds the kernel's ephemeral range on Linux.
const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// span returns the ports to pick from, [lo, hi): below the ephemeral range
// when it leaves room (16384–32767 with Linux's default 32768–60999), above
// it otherwise; ok is false where the range cannot be read or leaves no room
// either side, and Pick then takes the kernel's own choice.
func span(text string) (lo, hi int, ok bool) {
	var first, last int
	if _, err := fmt.Sscan(text, &first, &last); err != nil || first < 1 || last < first || last > 65535 {
		return 0, 0, false
	}
	switch {
	case first >= 4096:
		return first / 2, first, true
	case last <= 65535-4096:
		return last + 1, 65536, true
	}
	return 0, 0, false
}

// Pick returns a port that no socket of this machine was bound to a moment
// ago, outside the ephemeral range where the kernel tells it, for which
// accept (if not nil) returned true. Another program can still bind it
// first; accept is where a caller coordinates with other processes of its
// own (see testcaddy.FreePort).
func Pick(accept func(port int) bool) (int, error) {
	lo, hi, ok := 0, 0, false
	if b, err := os.ReadFile(rangeFile); err == nil {
		lo, hi, ok = span(string(b))
	}
	for range 200 {
		// ":port" conflicts with a socket bound to any address of the port;
		// without a range, the kernel's own choice on loopback is all there
		// is.
		addr := "127.0.0.1:0"
		if ok {
			addr = fmt.Sprintf(":%d", lo+rand.IntN(hi-lo))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if ok {
				continue // in use
			}
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if accept == nil || accept(port) {
			return port, nil
		}
	}
	return 0, errors.New("freeport: no free port found in 200 tries")
}
