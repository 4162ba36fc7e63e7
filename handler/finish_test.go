package handler

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/llmgate/llmgate/meter"
)

// TestFinishFlushesWholeJSON: a JSON body of announced length leaves the
// server's buffer before the gate settles when the caller allows it (HTTP/1.x,
// records committed in the background); otherwise, without a length or when
// compressed it is left to the server, whose end of the response comes only
// when the handler returns. The end-to-end half, flush_interval 0 keeping a
// response open until its record is in the file, is TestKill9LosesNothing.
func TestFinishFlushesWholeJSON(t *testing.T) {
	body := `{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
	for _, c := range []struct {
		name      string
		early     bool
		header    map[string]string
		wantFlush bool
	}{
		{"allowed, with length", true, map[string]string{"Content-Length": strconv.Itoa(len(body))}, true},
		{"not allowed", false, map[string]string{"Content-Length": strconv.Itoa(len(body))}, false},
		{"chunked", true, nil, false},
		{"compressed", true, map[string]string{"Content-Length": strconv.Itoa(len(body)), "Content-Encoding": "gzip"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mw := getWriter(rec, &Handler{}, meter.EndpointChat, false, time.Now())
			defer putWriter(mw)
			mw.Header().Set("Content-Type", "application/json")
			for k, v := range c.header {
				mw.Header().Set(k, v)
			}
			mw.WriteHeader(http.StatusOK)
			if _, err := mw.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
			if rec.Flushed {
				t.Fatal("flushed before finish")
			}
			mw.finish(c.early)
			if rec.Flushed != c.wantFlush {
				t.Errorf("flushed %v, want %v", rec.Flushed, c.wantFlush)
			}
			if u, ok := mw.usage(); !ok || u.PromptTokens != 3 || u.CompletionTokens != 2 {
				t.Errorf("usage %+v, %v", u, ok)
			}
		})
	}
}

// TestJSONBodyInPieces: a body of announced length that comes in several
// writes is read forwards, a piece at a time, to the same usage as a body
// written whole (read from its end).
func TestJSONBodyInPieces(t *testing.T) {
	body := `{"id":"x","choices":[{"text":"{\"usage\":{\"prompt_tokens\":9}}"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
	for _, pieces := range [][]string{{body}, {body[:40], body[40:]}, {body[:1], body[1 : len(body)-1], body[len(body)-1:]}} {
		rec := httptest.NewRecorder()
		mw := getWriter(rec, &Handler{}, meter.EndpointChat, false, time.Now())
		mw.Header().Set("Content-Type", "application/json")
		mw.Header().Set("Content-Length", strconv.Itoa(len(body)))
		mw.WriteHeader(http.StatusOK)
		for _, p := range pieces {
			if _, err := mw.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		if u, ok := mw.usage(); !ok || u.PromptTokens != 3 || u.CompletionTokens != 2 {
			t.Errorf("%d pieces: usage %+v, %v", len(pieces), u, ok)
		}
		if rec.Body.String() != body {
			t.Errorf("%d pieces: the client got %q", len(pieces), rec.Body.String())
		}
		putWriter(mw)
	}
}
