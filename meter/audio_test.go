package meter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"mime/multipart"
	"strings"
	"testing"
)

// testWAV is a PCM WAV file of seconds of 16 kHz mono 16-bit silence.
func testWAV(seconds float64) []byte {
	data := int(seconds * 32000)
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(36+data))
	b = append(b, "WAVEfmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1)     // PCM
	b = binary.LittleEndian.AppendUint16(b, 1)     // mono
	b = binary.LittleEndian.AppendUint32(b, 16000) // sample rate
	b = binary.LittleEndian.AppendUint32(b, 32000) // byte rate
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 16)
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(data))
	return append(b, make([]byte, data)...)
}

// form builds a multipart body with the fields in order (a field may
// repeat) and a file, unless file is nil.
func form(t testing.TB, file []byte, fields ...string) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := w.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := w.CreateFormFile("file", "a.wav")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
	}
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

func TestParseForm(t *testing.T) {
	body, ct := form(t, testWAV(16.5), "model", "whisper", "stream", "True", "stream_include_usage", "0",
		"stream_continuous_usage_stats", "on", "max_completion_tokens", "100", "prompt", "hello there", "max_completion_tokens", "200", "language", "en")
	var r Request
	if err := r.ParseForm(EndpointTranscriptions, body, ct); err != nil {
		t.Fatal(err)
	}
	if r.Model != "whisper" || !r.Stream || r.IncludeUsage || !r.ContinuousUsage || r.MaxTokens != 200 || r.MaxTokensField != "max_completion_tokens" {
		t.Errorf("parsed %+v", r)
	}
	if !r.AudioExact || r.AudioSeconds != 16.5 {
		t.Errorf("audio %v s (exact %v), want 16.5", r.AudioSeconds, r.AudioExact)
	}
	// Whisper's decoder prompt, the text prompt, 100 frames a second.
	if got, want := r.EstimatePrompt(nil), int64(4+countText(nil, "hello there")+1650); got != want {
		t.Errorf("EstimatePrompt = %d, want %d", got, want)
	}
	if r.Choices() != 1 || r.PromptOnly() || r.Uncapped() {
		t.Errorf("choices %d, prompt only %v, uncapped %v", r.Choices(), r.PromptOnly(), r.Uncapped())
	}
	if _, ok := r.TokenizeBody(); ok {
		t.Error("a form has a /tokenize body")
	}

	// Not WAV: estimated from the size, at 16 kbit/s.
	body, ct = form(t, make([]byte, 80000))
	if err := r.ParseForm(EndpointTranslations, body, ct); err != nil {
		t.Fatal(err)
	}
	if r.AudioExact || r.AudioSeconds != 40 || r.Stream || r.Model != "" || !r.Uncapped() {
		t.Errorf("mp3-ish: %+v", r)
	}

	for name, c := range map[string]struct {
		body []byte
		ct   string
	}{
		"json":        {[]byte(`{"model":"m"}`), "application/json"},
		"no boundary": {body, "multipart/form-data"},
		"cut short":   {body[:len(body)/2], ct},
		"no file":     {func() []byte { b, _ := form(t, nil, "model", "m"); return b }(), ""},
		"bad bool":    {func() []byte { b, _ := form(t, []byte("x"), "stream", "maybe"); return b }(), ""},
		"bad max":     {func() []byte { b, _ := form(t, []byte("x"), "max_completion_tokens", "-3"); return b }(), ""},
		"long field":  {func() []byte { b, _ := form(t, []byte("x"), "prompt", strings.Repeat("a", maxFormField+1)); return b }(), ""},
	} {
		if c.ct == "" {
			c.ct = "multipart/form-data; boundary=" + boundaryOf(c.body)
		}
		if err := r.ParseForm(EndpointTranscriptions, c.body, c.ct); !errors.Is(err, ErrInvalidForm) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// boundaryOf reads the boundary of a body form built.
func boundaryOf(body []byte) string {
	line, _, _ := bytes.Cut(body, []byte("\r\n"))
	return string(bytes.TrimPrefix(line, []byte("--")))
}

// TestRewriteFormAsksForUsage: a stream's form gains stream_include_usage
// true as its last field of the name, which vLLM reads; the file is intact.
func TestRewriteFormAsksForUsage(t *testing.T) {
	wav := testWAV(1)
	body, ct := form(t, wav, "stream", "true", "stream_include_usage", "false")
	var r Request
	if err := r.ParseForm(EndpointTranscriptions, body, ct); err != nil {
		t.Fatal(err)
	}
	out, err := Rewrite(body, &r, RewriteOptions{InjectUsage: true, MaxTokens: 7})
	if err != nil {
		t.Fatal(err)
	}
	var again Request
	if err := again.ParseForm(EndpointTranscriptions, out, ct); err != nil {
		t.Fatal(err)
	}
	if !again.IncludeUsage || !again.Stream || again.AudioSeconds != 1 || !again.Uncapped() {
		t.Errorf("rewritten: %+v", again)
	}
	if !bytes.Contains(out, wav) {
		t.Error("the file changed")
	}
	// Nothing to do: the client asked for the usage, or does not stream.
	for _, fields := range [][]string{{"stream", "true", "stream_include_usage", "true"}, {"stream", "false"}} {
		body, ct := form(t, wav, fields...)
		r.ParseForm(EndpointTranscriptions, body, ct)
		if out, err := Rewrite(body, &r, RewriteOptions{InjectUsage: true}); err != nil || !bytes.Equal(out, body) {
			t.Errorf("%v: rewritten (%v)", fields, err)
		}
	}
	if _, err := Rewrite(body, &Request{Endpoint: EndpointTranscriptions, Stream: true, boundary: "zz"}, RewriteOptions{InjectUsage: true}); err == nil {
		t.Error("a body without its closing boundary was rewritten")
	}
}

func TestTranscript(t *testing.T) {
	words := "Mary had a little lamb, its fleece was white as snow"
	n := countGenerated(nil, words)
	for name, c := range map[string]struct {
		body    string
		seconds float64
		ok      bool
	}{
		"json":            {`{"text":"` + words + `","usage":{"type":"duration","seconds":16}}`, 16, true},
		"no usage":        {`{"text":"` + words + `"}`, 0, false},
		"verbose, string": {`{"duration":"16.5","language":"en","text":"` + words + `","segments":[],"words":null}`, 16.5, true},
		"verbose, float":  {`{"duration":16.5,"language":"en","text":"` + words + `"}`, 16.5, true},
		"text":            {words + "\n", 0, false},
		"srt":             {"1\n00:00:00,000 --> 00:00:11,540\nMary had a little lamb,\n\n2\n00:00:11,540 --> 00:00:17,660\nits fleece was white as snow\n", 17.66, true},
		"vtt":             {"WEBVTT\n\n00:00:00.000 --> 00:00:11.540\nMary had a little lamb,\n\n00:00:11.540 --> 01:17.660 align:start\nits fleece was white as snow\n", 77.66, true},
	} {
		tokens, seconds, ok := Transcript([]byte(c.body), nil)
		if math.Abs(seconds-c.seconds) > 1e-9 || ok != c.ok || tokens < n-2 || tokens > n+2 {
			t.Errorf("%s: %d tokens (want about %d), %v s %v", name, tokens, n, seconds, ok)
		}
	}
	// A text transcript keeps its lines of digits (a year said aloud).
	if a, _, _ := Transcript([]byte("1984\n"), nil); a == 0 {
		t.Error("a line of digits was not counted in a text answer")
	}
	// A duration is no token usage.
	if _, ok := parseUsage([]byte(`{"type":"duration","seconds":16}`)); ok {
		t.Error("a duration read as a usage of zero tokens")
	}
	if u, ok := parseUsage([]byte(`{"total_tokens":5}`)); !ok || u.PromptTokens != 5 {
		t.Errorf("total_tokens alone: %+v %v", u, ok)
	}
}

func TestEndpointsAudio(t *testing.T) {
	for path, want := range map[string]string{"/v1/audio/transcriptions": "transcriptions", "/v1/audio/translations": "translations"} {
		ep := EndpointFor(path)
		if !ep.Audio() || ep.String() != want {
			t.Errorf("%s: %v %q", path, ep.Audio(), ep.String())
		}
	}
	if EndpointChat.Audio() || EndpointFor("/v1/audio/speech").Audio() {
		t.Error("not audio")
	}
}

// TestParseFormClients: forms as clients write them parse: curl -F (a
// part Content-Type, a boundary of dashes), Python's httpx (the OpenAI
// SDK: quoted boundary-less parameters, a final CRLF), a browser's
// FormData (no final CRLF).
func TestParseFormClients(t *testing.T) {
	wav := testWAV(2)
	for name, c := range map[string]struct{ ct, body string }{
		"curl": {"multipart/form-data; boundary=------------------------d74496d66958873e",
			"--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n" +
				"--------------------------d74496d66958873e\r\nContent-Disposition: form-data; name=\"file\"; filename=\"meeting notes.wav\"\r\nContent-Type: audio/wav\r\n\r\n" + string(wav) + "\r\n" +
				"--------------------------d74496d66958873e--\r\n"},
		"httpx": {"multipart/form-data; boundary=0b5d5b1e2a6f4f8c",
			"--0b5d5b1e2a6f4f8c\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n" +
				"--0b5d5b1e2a6f4f8c\r\nContent-Disposition: form-data; name=\"stream\"\r\n\r\ntrue\r\n" +
				"--0b5d5b1e2a6f4f8c\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\nContent-Type: audio/x-wav\r\n\r\n" + string(wav) + "\r\n" +
				"--0b5d5b1e2a6f4f8c--\r\n"},
		"browser": {`multipart/form-data; boundary="----WebKitFormBoundary7MA4YWxkTrZu0gW"`,
			"------WebKitFormBoundary7MA4YWxkTrZu0gW\r\ncontent-disposition: form-data; name=model\r\n\r\nwhisper\r\n" +
				"------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\n\r\n" + string(wav) + "\r\n" +
				"------WebKitFormBoundary7MA4YWxkTrZu0gW--"},
	} {
		var r Request
		if err := r.ParseForm(EndpointTranscriptions, []byte(c.body), c.ct); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if r.Model != "whisper" || r.AudioSeconds != 2 || !r.AudioExact || r.Stream != (name == "httpx") {
			t.Errorf("%s: %+v", name, r)
		}
		r.Stream = true
		out, err := Rewrite([]byte(c.body), &r, RewriteOptions{InjectUsage: true})
		if err != nil {
			t.Fatal(err)
		}
		var again Request
		if err := again.ParseForm(EndpointTranscriptions, out, c.ct); err != nil || !again.IncludeUsage {
			t.Errorf("%s: rewritten %+v %v:\n%q", name, again, err, out[len(out)-200:])
		}
	}
}

// FuzzParseForm: any body and Content-Type either parse (and then rewrite
// into a form that parses the same, asking for the usage) or fail with
// ErrInvalidForm; nothing panics.
func FuzzParseForm(f *testing.F) {
	body, ct := form(f, testWAV(0.01), "model", "m", "stream", "true", "prompt", "hi")
	f.Add(body, ct)
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nRIFF\r\n--b--"), "multipart/form-data; boundary=b")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		var r Request
		if err := r.ParseForm(EndpointTranscriptions, body, ct); err != nil {
			if !errors.Is(err, ErrInvalidForm) {
				t.Fatal(err)
			}
			return
		}
		r.Stream = true
		out, err := Rewrite(body, &r, RewriteOptions{InjectUsage: true})
		if err != nil {
			if r.IncludeUsage {
				t.Fatal(err)
			}
			t.Fatalf("a parsed form does not rewrite: %v", err)
		}
		var again Request
		if err := again.ParseForm(EndpointTranscriptions, out, ct); err != nil || again.Model != r.Model || again.AudioSeconds != r.AudioSeconds || !again.IncludeUsage && !r.IncludeUsage {
			t.Fatalf("rewritten form reads %+v, %v; the original %+v", again, err, r)
		}
	})
}
