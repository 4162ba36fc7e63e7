package meter

import (
	"strings"
	"testing"
)

// Decoys: each test compares the gate's prompt estimate of a request with
// that of the same request as vLLM reads it (the members vLLM ignores, or
// does not pick, removed). A large gap would be an admission bypass, since
// rerank, score and messages are admitted on this estimate alone
// (TokenizeBody does not cover them, even with prompt_count tokenize).

func decoyEstimate(t *testing.T, ep Endpoint, body string) int64 {
	t.Helper()
	r, err := ParseRequest(ep, []byte(body))
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return r.EstimatePrompt(cl100k(t))
}

var decoyText = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 200) // ~2,000 tokens

// vLLM's ScoreRequest is a union tried in the order queries+documents,
// queries+items, data_1+data_2, text_1+text_2: a body with queries and
// documents is scored as such whatever else it carries. The gate took the
// last of text_1/queries/data_1 and of text_2/items/data_2 in body order,
// and preferred text_2/items/data_2 to documents.
func TestScoreDecoyEstimate(t *testing.T) {
	docs := `[` + strings.Repeat(jsonString(decoyText)+",", 9) + jsonString(decoyText) + `]`
	honest := `{"model":"m","queries":"What is it?","documents":` + docs + `}`
	for _, disguised := range []string{
		`{"model":"m","queries":"What is it?","documents":` + docs + `,"text_2":"x"}`,
		`{"model":"m","queries":"What is it?","documents":` + docs + `,"items":"x"}`,
		`{"model":"m","data_1":"What is it?","data_2":` + docs + `,"text_1":"a","text_2":"b"}`,
	} {
		want := decoyEstimate(t, EndpointScore, honest)
		got := decoyEstimate(t, EndpointScore, disguised)
		if got < want/2 {
			t.Errorf("score estimate %d for a request vLLM counts like one estimated at %d:\n%.120s…", got, want, disguised)
		}
	}
}

// vLLM's AnthropicContentBlock takes text and thinking on any block; a
// "text" block's prompt is its text. The gate read whichever of text and
// thinking came last.
func TestMessagesThinkingDecoyEstimate(t *testing.T) {
	honest := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":` + jsonString(decoyText) + `}]}]}`
	disguised := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":` + jsonString(decoyText) + `,"thinking":""}]}]}`
	want := decoyEstimate(t, EndpointMessages, honest)
	got := decoyEstimate(t, EndpointMessages, disguised)
	if got < want/2 {
		t.Errorf("messages estimate %d for a text block vLLM counts like one estimated at %d", got, want)
	}
	sysHonest := `{"model":"m","max_tokens":5,"system":[{"type":"text","text":` + jsonString(decoyText) + `}],"messages":[{"role":"user","content":"hi"}]}`
	sysDisguised := `{"model":"m","max_tokens":5,"system":[{"type":"text","text":` + jsonString(decoyText) + `,"thinking":""}],"messages":[{"role":"user","content":"hi"}]}`
	want = decoyEstimate(t, EndpointMessages, sysHonest)
	got = decoyEstimate(t, EndpointMessages, sysDisguised)
	if got < want/2 {
		t.Errorf("messages estimate %d for a system block vLLM counts like one estimated at %d", got, want)
	}
}
