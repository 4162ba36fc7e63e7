package freeport

import (
	"fmt"
	"net"
	"os"
	"testing"
)

func TestSpan(t *testing.T) {
	for _, c := range []struct {
		text   string
		lo, hi int
		ok     bool
	}{
		{"32768\t60999\n", 16384, 32768, true}, // Linux's default
		{"1024 40000", 40001, 65536, true},     // no room below: above
		{"1024 65000", 0, 0, false},            // no room either side
		{"", 0, 0, false},
		{"60999 32768", 0, 0, false},
		{"0 100", 0, 0, false},
		{"32768 70000", 0, 0, false},
	} {
		lo, hi, ok := span(c.text)
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("span(%q) = %d, %d, %v; want %d, %d, %v", c.text, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}

// TestPickOutsideEphemeral checks, against this machine's kernel, that the
// port is bindable, lies outside the range the kernel hands out for port 0,
// and that accept is asked until it says yes.
func TestPickOutsideEphemeral(t *testing.T) {
	b, err := os.ReadFile(rangeFile)
	if err != nil {
		t.Skipf("no %s here: %v", rangeFile, err)
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil {
		t.Fatal(err)
	}
	var asked []int
	port, err := Pick(func(p int) bool {
		asked = append(asked, p)
		return len(asked) == 3
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 3 || asked[2] != port {
		t.Fatalf("Pick = %d after asking %v; want the third port asked", port, asked)
	}
	for _, p := range asked {
		if p >= first && p <= last {
			t.Errorf("port %d is in the ephemeral range %d–%d", p, first, last)
		}
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("binding the picked port: %v", err)
	}
	l.Close()

	if _, err := Pick(func(int) bool { return false }); err == nil {
		t.Error("Pick with an accept that refuses every port returned no error")
	}
}
