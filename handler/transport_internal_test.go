package handler

import (
	"io"
	"strings"
	"testing"
)

// gateBody finds the gate's reader alone or under reverse_proxy's readers
// (TestTransport), and under nothing else.
func TestGateBody(t *testing.T) {
	b := &bodyReader{}
	if gateBody(b) != b {
		t.Error("the gate's reader itself not found")
	}
	// The name and shape of one of reverse_proxy's readers, in another
	// package.
	type requestBodyWithTrailers struct{ io.ReadCloser }
	// Twice: the second time from the cache of the types seen.
	for range 2 {
		for name, rc := range map[string]io.ReadCloser{
			"nil":                 nil,
			"another module's":    &requestBodyWithTrailers{b},
			"a nil pointer":       (*requestBodyWithTrailers)(nil),
			"a value, no pointer": requestBodyWithTrailers{b},
			"the client's":        io.NopCloser(strings.NewReader("{}")),
		} {
			if gateBody(rc) != nil {
				t.Errorf("%s reader: the gate's found", name)
			}
		}
	}
}

// BenchmarkGateBody: what the transport's search costs a request whose body
// is not the gate's (a reader of another package, looked at by reflection;
// the types seen are cached).
func BenchmarkGateBody(b *testing.B) {
	type requestBodyWithTrailers struct{ io.ReadCloser }
	rc := &requestBodyWithTrailers{&bodyReader{}}
	for b.Loop() {
		if gateBody(rc) != nil {
			b.Fatal("found")
		}
	}
}
