package handler

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/meter"
)

// endsWriter is a writer of endpoint ep whose stream meter has read pre
// (a line's start, when pre does not end one).
func endsWriter(t *testing.T, ep meter.Endpoint, pre string) *meteredWriter {
	t.Helper()
	mw := &meteredWriter{ep: ep, stream: meter.NewStreamMeter(ep, false, nil)}
	if err := mw.stream.Write([]byte(pre), func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return mw
}

// refEnds is endsStream's rule written plainly: a line of p starts with
// data: [DONE] (or, on Messages, event: message_stop), the first line
// being one if the meter is at a line start; on Responses, p holds one of
// the three quoted event types that end a stream.
func refEnds(ep meter.Endpoint, p []byte, atLineStart bool) bool {
	if ep == meter.EndpointResponses {
		for _, m := range []string{`"response.completed"`, `"response.incomplete"`, `"response.failed"`} {
			if bytes.Contains(p, []byte(m)) {
				return true
			}
		}
		return false
	}
	marks := []string{"data: [DONE]"}
	if ep == meter.EndpointMessages {
		marks = append(marks, "event: message_stop")
	}
	for i := range p {
		if i == 0 && !atLineStart || i > 0 && p[i-1] != '\n' && p[i-1] != '\r' {
			continue
		}
		for _, m := range marks {
			if bytes.HasPrefix(p[i:], []byte(m)) {
				return true
			}
		}
	}
	return false
}

// endsStream finds a stream's last event by its marker's rarest bytes: it
// must find the marker wherever the plain rule does, and nowhere else
// (client text that quotes a marker, a marker not at a line start, a
// marker's start or end alone).
func TestEndsStream(t *testing.T) {
	chat, msgs, resp := meter.EndpointChat, meter.EndpointMessages, meter.EndpointResponses
	for _, c := range []struct {
		ep   meter.Endpoint
		pre  string // what the meter read before
		p    string
		want bool
	}{
		{chat, "", "data: [DONE]\n\n", true},
		{chat, "", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", true},
		{chat, "", "data: {}\r\ndata: [DONE]", true},
		{chat, "data: {\"a\":", "data: [DONE]\n\n", false}, // mid-line: the client's text
		{chat, "", `data: {"delta":{"content":"data: [DONE]"}}` + "\n\n", false},
		{chat, "", "xdata: [DONE]\n", false},
		{chat, "", "data: [DONE", false},
		{chat, "", "DONE]", false},
		{chat, "", "[DONE]", false},
		{chat, "", "", false},
		{chat, "", "event: message_stop\n", false},
		{msgs, "", "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", true},
		{msgs, "", "event: content_block_stop\ndata: {}\n\n", false},
		{msgs, "", `data: {"name":"event: message_stop"}` + "\n\n", false},
		{msgs, "", "data: [DONE]\n\n", true},
		{resp, "", `data: {"type":"response.completed","response":{}}`, true},
		{resp, "", `data: {"type":"response.incomplete"}`, true},
		{resp, "", `event: response.failed` + "\n" + `data: {"type":"response.failed"}`, true},
		{resp, "", `data: {"type":"response.output_text.delta","delta":"Done. response.completed"}`, false},
		{resp, "", `"response.completed`, false},
		{resp, "", `response.completed"`, false},
		{resp, "", `.completed"`, false},
		{resp, "", "data: [DONE]\n\n", false},
	} {
		mw := endsWriter(t, c.ep, c.pre)
		if got := mw.endsStream([]byte(c.p)); got != c.want {
			t.Errorf("%v after %q: endsStream(%q) = %v", c.ep, c.pre, c.p, got)
		}
		if ref := refEnds(c.ep, []byte(c.p), mw.stream.AtLineStart()); ref != c.want {
			t.Errorf("case %q: the plain rule says %v", c.p, ref)
		}
	}
	// Writes cut at random from streams whose text quotes the markers.
	pieces := []string{"data: ", "[DONE]", "DONE]", "data: [DONE]", "event: message_stop", "event: ", "message_stop",
		`"response.completed"`, `"response.`, `completed"`, `incomplete"`, `failed"`, `"response`, ".", "\n", "\r", "\n\n",
		`{"delta":{"content":"`, `"}}`, "d", "D", "x", " "}
	r := rand.New(rand.NewPCG(7, 7))
	for n := range 20000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		p := []byte(b.String())
		for _, ep := range []meter.Endpoint{chat, msgs, resp} {
			for _, pre := range []string{"", "data: {"} {
				mw := endsWriter(t, ep, pre)
				if got, want := mw.endsStream(p), refEnds(ep, p, mw.stream.AtLineStart()); got != want {
					t.Fatalf("write %d, %v after %q: endsStream(%q) = %v, want %v", n, ep, pre, p, got, want)
				}
			}
		}
	}
}
