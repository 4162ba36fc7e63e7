package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/llmgate/llmgate/tokenizer"
)

type chatRequest struct {
	Model     string `json:"model"`
	MaxTokens int    `json:"max_tokens"`
	Messages  []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

// TestConversation: turn k resends the system prompt and the k-1 earlier
// questions and answers, then asks question k; every message but the
// system prompt carries the conversation's number, and every message is
// long enough for the gate's text cache.
func TestConversation(t *testing.T) {
	turns, err := conversation("m", len(conversationQuestions))
	if err != nil {
		t.Fatal(err)
	}
	for k, turn := range turns {
		var req chatRequest
		if err := json.Unmarshal(turn.Body, &req); err != nil {
			t.Fatalf("turn %d: %v", k+1, err)
		}
		if req.Model != "m" || req.MaxTokens != 16 || len(req.Messages) != 2*k+2 {
			t.Fatalf("turn %d: model %q, max_tokens %d, %d messages", k+1, req.Model, req.MaxTokens, len(req.Messages))
		}
		for i, m := range req.Messages {
			wantRole := []string{"assistant", "user"}[i%2]
			if i == 0 {
				wantRole = "system"
			}
			if m.Role != wantRole {
				t.Fatalf("turn %d message %d: role %q, want %q", k+1, i, m.Role, wantRole)
			}
			if len(m.Content) < tokenizer.TextCacheMin {
				t.Errorf("turn %d message %d is %d bytes, under the text cache's %d", k+1, i, len(m.Content), tokenizer.TextCacheMin)
			}
			if strings.Contains(m.Content, conversationMark) != (i > 0) {
				t.Errorf("turn %d message %d: numbered %v", k+1, i, i > 0)
			}
		}
		if got := req.Messages[2*k+1].Content; !strings.HasSuffix(got, conversationQuestions[k]) {
			t.Errorf("turn %d asks %q", k+1, got)
		}
		for _, off := range turn.Offs {
			if string(turn.Body[off:off+varyDigits]) != "00000000" {
				t.Fatalf("turn %d: offset %d is not the number", k+1, off)
			}
		}
	}
	for _, n := range []int{0, len(conversationQuestions) + 1} {
		if _, err := conversation("m", n); err == nil {
			t.Errorf("%d turns accepted", n)
		}
	}
}

// TestConverse: request n is turn n mod turns of conversation n / turns,
// its number written everywhere in a copy of the turn's body.
func TestConverse(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		io.WriteString(w, `{"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}))
	defer srv.Close()
	turns, err := conversation("m", 3)
	if err != nil {
		t.Fatal(err)
	}
	tg := target("x", srv.URL, 1, false, nil, nil)
	tg.Converse(turns)
	var errs ErrorLog
	if w := ClosedLoop(context.Background(), tg, nil, 1, 0, 7, &errs, "x"); w.OK != 7 {
		t.Fatalf("%+v %q", w, errs.Lines())
	}
	for n, b := range bodies {
		conv, turn := n/3, n%3
		num := []byte("Conversation 0000000" + string(rune('0'+conv)))
		if len(b) != len(turns[turn].Body) || bytes.Count(b, num) != 2*turn+1 || bytes.Count(b, []byte("Conversation ")) != 2*turn+1 {
			t.Errorf("request %d: want turn %d of conversation %d, got %s", n, turn+1, conv, b)
		}
	}
	if !bytes.Contains(turns[2].Body, []byte(conversationMark)) {
		t.Fatal("a turn's shared body was written to")
	}
}
