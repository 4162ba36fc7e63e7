package itest

import (
	"bufio"
	"bytes"
	"math"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// audioForm is a speech-to-text request as OpenAI's SDKs send it: a
// multipart form with the file last.
func audioForm(t *testing.T, wav []byte, fields ...string) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := w.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := w.CreateFormFile("file", "speech.wav")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(wav)
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

const bigPlan = "plan big {\n\t\t\ttokens 10000000 per day\n\t\t}"

// TestAudioStreamExact: a transcription stream is counted exactly: the gate
// asks vLLM for the usage chunk the client did not ask for, reads it and
// hides it; 70 s of audio are three chunks of vLLM's, the prompt their
// frames (100 a second) and Whisper's decoder prompt.
func TestAudioStreamExact(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 2000}, global: bigPlan, site: "plan big"})
	body, ct := audioForm(t, vllmsim.WAV(70, 1), "model", "sim-model", "stream", "true")
	resp := e.post("/v1/audio/transcriptions", token(t, "asr", nil), body, "Content-Type", ct)
	b := mustStatus(t, resp, 200)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	var events, finishes int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		events++
		if strings.Contains(line, `"usage"`) {
			t.Errorf("the usage chunk the gate asked for reached the client: %s", line)
		}
		if strings.Contains(line, `"finish_reason":"stop"`) {
			finishes++
		}
	}
	if !bytes.HasSuffix(b, []byte("data: [DONE]\n\n")) || finishes != 3 || events < 10 {
		t.Fatalf("%d events, %d finishes: %.300s", events, finishes, b)
	}
	r := e.waitRecords("asr", 1)[0]
	c := e.sim.Counters()
	if r.Endpoint != "transcriptions" || r.Estimated || r.PromptTokens != c.PromptTokens || r.CompletionTokens != c.GenerationTokens {
		t.Fatalf("record %+v; the emulator counted %d + %d", r, c.PromptTokens, c.GenerationTokens)
	}
	if r.PromptTokens != 4+7000 {
		t.Errorf("prompt %d, want 7004", r.PromptTokens)
	}

	// A client that asks for the usage gets it.
	body, ct = audioForm(t, vllmsim.WAV(5, 2), "model", "sim-model", "stream", "true", "stream_include_usage", "true")
	b = mustStatus(t, e.post("/v1/audio/transcriptions", token(t, "asr", nil), body, "Content-Type", ct), 200)
	if !bytes.Contains(b, []byte(`"choices":[],"usage":{"prompt_tokens":504,`)) {
		t.Errorf("no usage chunk: %s", b)
	}
}

// TestAudioNonStreaming: vLLM's answer carries no token count, so the
// record is estimated: the prompt from the seconds vLLM reports (exact for
// Whisper's count), the completion by counting the transcript, in each of
// the formats.
func TestAudioNonStreaming(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 5000}, global: bigPlan, site: "plan big"})
	for i, c := range []struct {
		path, format string
	}{
		{"/v1/audio/transcriptions", "json"},
		{"/v1/audio/transcriptions", "text"},
		{"/v1/audio/transcriptions", "srt"},
		{"/v1/audio/transcriptions", "vtt"},
		{"/v1/audio/transcriptions", "verbose_json"},
		{"/v1/audio/translations", "json"},
	} {
		user := "asr" + c.format + strings.TrimPrefix(c.path, "/v1/audio/")
		before := e.sim.Counters()
		body, ct := audioForm(t, vllmsim.WAV(42.5, i), "model", "sim-model", "response_format", c.format)
		direct := postForm(t, e.simURL+c.path, body, ct)
		between := e.sim.Counters()
		got := mustStatus(t, e.post(c.path, token(t, user, nil), body, "Content-Type", ct), 200)
		if !bytes.Equal(got, direct) {
			t.Errorf("%s %s: the gate's answer differs from vLLM's:\n%s\n%s", c.path, c.format, got, direct)
		}
		after := e.sim.Counters()
		prompt, completion := after.PromptTokens-between.PromptTokens, after.GenerationTokens-between.GenerationTokens
		if between.PromptTokens-before.PromptTokens != prompt {
			t.Fatalf("%s: the emulator is not deterministic", c.format)
		}
		r := e.waitRecords(user, 1)[0]
		if !r.Estimated || r.Endpoint != strings.TrimPrefix(c.path, "/v1/audio/") || r.PromptTokens != int64(4+math.Ceil(42.5*100)) || r.PromptTokens != prompt {
			t.Errorf("%s %s: record %+v; the emulator counted a prompt of %d", c.path, c.format, r, prompt)
		}
		if d := r.CompletionTokens - completion; d < -completion/10 || d > completion/10 {
			t.Errorf("%s %s: %d completion tokens estimated, %d generated", c.path, c.format, r.CompletionTokens, completion)
		}
	}
}

func postForm(t *testing.T, url string, body []byte, contentType string) []byte {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return mustStatus(t, resp, 200)
}

// TestAudioPlans: the plan binds speech to text as it binds chat: the
// model list, and the token budget before anything reaches vLLM (10 s of
// audio are a prompt of 1,004 tokens); a body that is not a form with a
// file is refused.
func TestAudioPlans(t *testing.T) {
	e := newEnv(t, envOpts{
		global: "plan small {\n\t\t\ttokens 500 per day\n\t\t}\n\t\tplan chatonly {\n\t\t\tmodels chat-*\n\t\t}",
		site:   "plan small",
	})
	body, ct := audioForm(t, vllmsim.WAV(10, 1), "model", "sim-model")
	b := mustStatus(t, e.post("/v1/audio/transcriptions", token(t, "poor", nil), body, "Content-Type", ct), 429)
	if !bytes.Contains(b, []byte(`"type":"insufficient_quota"`)) {
		t.Errorf("429 body %s", b)
	}
	b = mustStatus(t, e.post("/v1/audio/translations", token(t, "chatter", map[string]any{"plan": "chatonly"}), body, "Content-Type", ct), 403)
	if !bytes.Contains(b, []byte(`"code":"model_not_allowed"`)) {
		t.Errorf("403 body %s", b)
	}
	b = mustStatus(t, e.post("/v1/audio/transcriptions", token(t, "poor", nil), map[string]any{"model": "sim-model"}), 400)
	if !bytes.Contains(b, []byte(`"code":"invalid_form"`)) {
		t.Errorf("400 body %s", b)
	}
	if n := e.sim.Counters().Requests; n != 0 {
		t.Errorf("%d requests reached the emulator", n)
	}
	// One second fits the budget.
	body, ct = audioForm(t, vllmsim.WAV(1, 1), "model", "sim-model")
	mustStatus(t, e.post("/v1/audio/transcriptions", token(t, "poor", nil), body, "Content-Type", ct), 200)
}
