package vllmsim

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	transcriptions = "/v1/audio/transcriptions"
	translations   = "/v1/audio/translations"
)

// fastAudio is a configuration whose audio answers take no noticeable time.
var fastAudio = Config{TokensPerSecond: 1e6}

// audioForm builds a multipart body: fields are name/value pairs, then the
// file (when not nil) as an upload named "file".
func audioFormBody(t testing.TB, file []byte, fields ...string) (body, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := mw.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "audio.wav")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(file)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String(), mw.FormDataContentType()
}

// postAudio sends a form to path and returns the response with its body
// read; hdr are extra header name/value pairs.
func postAudio(t testing.TB, ts *httptest.Server, path string, file []byte, fields []string, hdr ...string) (*http.Response, string) {
	t.Helper()
	body, ct := audioFormBody(t, file, fields...)
	resp := call(t, ts, http.MethodPost, path, body, append([]string{"Content-Type", ct}, hdr...)...)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// audioStreamResult is a parsed speech-to-text stream.
type audioStreamResult struct {
	chunks   []map[string]any // content chunks
	deltas   []string
	finishes []string // finish_reason of each audio chunk, in order
	usage    map[string]any
	text     string
}

func parseAudioStream(t testing.TB, body string) audioStreamResult {
	t.Helper()
	evs := events(body)
	if len(evs) == 0 || evs[len(evs)-1] != "data: [DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", body)
	}
	var r audioStreamResult
	for _, p := range payloads(t, body) {
		choices := p["choices"].([]any)
		if len(choices) == 0 {
			if r.usage != nil {
				t.Fatalf("two usage chunks")
			}
			r.usage = p["usage"].(map[string]any)
			continue
		}
		if r.usage != nil {
			t.Fatalf("content after the usage chunk: %v", p)
		}
		c := choices[0].(map[string]any)
		d := c["delta"].(map[string]any)["content"].(string)
		r.deltas = append(r.deltas, d)
		r.text += d
		if f, ok := c["finish_reason"].(string); ok {
			r.finishes = append(r.finishes, f)
		}
		r.chunks = append(r.chunks, p)
	}
	return r
}

// isTranscript reports whether text is n vocabulary words.
func isTranscript(text string, n int) bool {
	words := 0
	for text != "" {
		found := false
		for _, v := range vocab {
			if rest, ok := strings.CutPrefix(text, v.text); ok && (rest == "" || rest[0] == ' ') {
				text, found = rest, true
				words++
				break
			}
		}
		if !found {
			return false
		}
	}
	return words == n
}

func TestWAV(t *testing.T) {
	for _, sec := range []float64{0.5, 16, 70} {
		w := WAV(sec, 3)
		if len(w) != 44+int(sec*32000) {
			t.Errorf("WAV(%g) has %d bytes", sec, len(w))
		}
		if d, ok := wavDuration(w); !ok || d != sec {
			t.Errorf("wavDuration(WAV(%g)) = %g, %v", sec, d, ok)
		}
	}
	if bytes.Equal(WAV(1, 1), WAV(1, 2)) || !bytes.Equal(WAV(1, 1), WAV(1, 1)) {
		t.Error("WAV's seed does not make distinct, reproducible files")
	}
	// A LIST chunk before data, an odd-sized one padded, a truncated data
	// chunk (streamed WAV), stereo float at 48 kHz.
	w := WAV(2, 1)
	ext := append(append([]byte{}, w[:36]...), "LIST\x03\x00\x00\x00abc\x00"...)
	ext = append(ext, w[36:]...)
	if d, ok := wavDuration(ext); !ok || d != 2 {
		t.Errorf("with a LIST chunk: %g, %v", d, ok)
	}
	trunc := append([]byte{}, w[:44+16000]...)
	binary.LittleEndian.PutUint32(trunc[40:], 0xFFFFFFFF)
	if d, ok := wavDuration(trunc); !ok || d != 0.5 {
		t.Errorf("truncated: %g, %v", d, ok)
	}
	st := append([]byte{}, w...)
	binary.LittleEndian.PutUint16(st[20:], 3)
	binary.LittleEndian.PutUint16(st[22:], 2)
	binary.LittleEndian.PutUint32(st[24:], 48000)
	binary.LittleEndian.PutUint32(st[28:], 48000*8)
	binary.LittleEndian.PutUint16(st[32:], 8)
	binary.LittleEndian.PutUint16(st[34:], 32)
	if d, ok := wavDuration(st); !ok || d != 64000.0/384000 {
		t.Errorf("stereo float: %g, %v", d, ok)
	}
	// The byte rate is not read (libsndfile does not trust it either).
	for _, lie := range []uint32{0, 0x7fffffff} {
		b := append([]byte{}, w...)
		binary.LittleEndian.PutUint32(b[28:], lie)
		if d, ok := wavDuration(b); !ok || d != 2 {
			t.Errorf("byte rate %d: %g, %v", lie, d, ok)
		}
	}
	for name, b := range map[string][]byte{
		"empty":      nil,
		"mp3":        []byte("ID3\x04\x00\x00\x00\x00\x00\x00 not a wav"),
		"no fmt":     append([]byte("RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00"), 0, 0, 0, 0),
		"no data":    w[:36],
		"no samples": w[:44],
	} {
		if d, ok := wavDuration(b); ok {
			t.Errorf("%s: decoded as %g s", name, d)
		}
	}
}

// The exact bytes of a JSON transcription; its text is the stream's for
// the same file, 2.5 vocabulary words a second.
func TestAudioJSONExactBytes(t *testing.T) {
	sim, ts := start(t, fastAudio)
	file := WAV(16, 1)
	_, sbody := postAudio(t, ts, transcriptions, file, []string{"stream", "true"})
	st := parseAudioStream(t, sbody)
	if !isTranscript(st.text, 40) || sim.tok.Count(st.text) != 40 {
		t.Fatalf("transcript %q: want 40 vocabulary words, counts %d", st.text, sim.tok.Count(st.text))
	}
	resp, body := postAudio(t, ts, transcriptions, file, []string{"model", "sim-model", "language", "en", "temperature", "0.2", "max_tokens", "3"})
	want := `{"text":"` + st.text + `","usage":{"type":"duration","seconds":16}}`
	if resp.StatusCode != 200 || body != want {
		t.Errorf("%d %s\nwant %s", resp.StatusCode, body, want)
	}
	if resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) {
		t.Errorf("headers %v", resp.Header)
	}
	// Same file, same bytes; another file reads differently.
	if _, again := postAudio(t, ts, transcriptions, file, nil); again != want {
		t.Errorf("not deterministic: %s", again)
	}
	if _, other := postAudio(t, ts, transcriptions, WAV(16, 2), nil); other == want {
		t.Error("another file gave the same transcript")
	}
	// usage.seconds is the ceiling of the duration.
	if _, b := postAudio(t, ts, transcriptions, WAV(2.01, 1), nil); !strings.HasSuffix(b, `"usage":{"type":"duration","seconds":3}}`) {
		t.Errorf("2.01 s: %s", b)
	}
}

func TestAudioTextFormat(t *testing.T) {
	_, ts := start(t, fastAudio)
	file := WAV(10, 4)
	_, js := postAudio(t, ts, transcriptions, file, nil)
	m := decode(t, js)
	resp, body := postAudio(t, ts, transcriptions, file, []string{"response_format", "text"})
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	if body != m["text"] || !isTranscript(body, 25) {
		t.Errorf("text body %q, JSON text %q", body, m["text"])
	}
}

// A 70 s file is three audio chunks (30, 30, 10 s): three cues, three
// segments, three finish_reasons.
func TestAudioChunksAndSubtitles(t *testing.T) {
	sim, ts := start(t, fastAudio)
	file := WAV(70, 5)
	_, sbody := postAudio(t, ts, transcriptions, file, []string{"stream", "true"})
	st := parseAudioStream(t, sbody)
	if len(st.finishes) != 3 || st.finishes[0] != "stop" || st.finishes[2] != "stop" {
		t.Fatalf("finish reasons %v", st.finishes)
	}
	if n := sim.tok.Count(st.text); n != 75+75+25 || !isTranscript(st.text, n) {
		t.Fatalf("70 s transcript counts %d: %q", n, st.text)
	}
	// The chunks' texts, split where each one finished.
	var parts []string
	cur := ""
	for i, ch := range st.chunks {
		cur += st.deltas[i]
		if _, ok := ch["choices"].([]any)[0].(map[string]any)["finish_reason"]; ok {
			parts = append(parts, cur)
			cur = ""
		}
	}
	times := [][2]string{{"00:00:00", "00:00:30"}, {"00:00:30", "00:01:00"}, {"00:01:00", "00:01:10"}}
	wantSRT, wantVTT := "", "WEBVTT\n"
	for i, p := range parts {
		if i > 0 {
			wantSRT += "\n"
		}
		wantSRT += strconv.Itoa(i+1) + "\n" + times[i][0] + ",000 --> " + times[i][1] + ",000\n" + strings.TrimSpace(p) + "\n"
		wantVTT += "\n" + times[i][0] + ".000 --> " + times[i][1] + ".000\n" + strings.TrimSpace(p) + "\n"
	}
	for format, want := range map[string]string{"srt": wantSRT, "vtt": wantVTT} {
		resp, body := postAudio(t, ts, transcriptions, file, []string{"response_format", format})
		if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || body != want {
			t.Errorf("%s (%s):\n%s\nwant:\n%s", format, resp.Header.Get("Content-Type"), body, want)
		}
		if cues := strings.Count(body, " --> "); cues != 3 {
			t.Errorf("%s: %d cues", format, cues)
		}
	}
	_, vb := postAudio(t, ts, transcriptions, file, []string{"response_format", "verbose_json", "language", "de"})
	if !strings.HasPrefix(vb, `{"duration":70.0,"language":"de","text":"`+st.text+`","segments":[{"id":0,"avg_logprob":-0.`) ||
		!strings.HasSuffix(vb, `]}],"words":null}`) {
		t.Errorf("verbose_json: %s", vb)
	}
	v := decode(t, vb)
	segs := v["segments"].([]any)
	if len(segs) != 3 {
		t.Fatalf("%d segments", len(segs))
	}
	for i, s := range segs {
		s := s.(map[string]any)
		start, end := float64(30*i), min(float64(30*(i+1)), 70)
		if s["start"] != start || s["end"] != end || s["seek"] != start || s["text"] != parts[i] || s["no_speech_prob"] != nil {
			t.Errorf("segment %d: %v", i, s)
		}
		if toks := s["tokens"].([]any); len(toks) != sim.tok.Count(parts[i]) {
			t.Errorf("segment %d: %d tokens for %q", i, len(toks), parts[i])
		}
	}
	// Without language, Whisper detects it.
	if _, vb := postAudio(t, ts, translations, WAV(1.5, 1), []string{"response_format", "verbose_json"}); !strings.HasPrefix(vb, `{"duration":1.5,"language":"en",`) {
		t.Errorf("verbose_json: %s", vb)
	}
}

var audioIDRE = regexp.MustCompile(`^(transcribe|translate)-[0-9a-f]{32}$`)

// The stream's framing and usage: P = 4 + count(prompt) + ceil(dur × 100),
// C = the tokens of the deltas; Counters agree.
func TestAudioStream(t *testing.T) {
	sim, ts := start(t, fastAudio)
	prompt := "Glossary: vLLM, Caddy, tokenizer."
	resp, body := postAudio(t, ts, transcriptions, WAV(45.5, 6),
		[]string{"prompt", prompt, "stream", "True", "stream_include_usage", "yes", "stream_continuous_usage_stats", "1"})
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream; charset=utf-8" {
		t.Fatalf("%d %q", resp.StatusCode, ct)
	}
	for _, ev := range events(body) {
		if !strings.HasPrefix(ev, "data: ") || strings.Contains(ev, "\n") {
			t.Fatalf("bad event %q", ev)
		}
	}
	st := parseAudioStream(t, body)
	wantP := 4 + sim.tok.Count(prompt) + 4550
	c := 0
	id := ""
	for i, ch := range st.chunks {
		c += sim.tok.Count(st.deltas[i])
		if id == "" {
			id = ch["id"].(string)
		}
		if ch["id"] != id || ch["object"] != "transcription.chunk" || ch["model"] != "sim-model" || ch["created"].(float64) == 0 {
			t.Fatalf("chunk %v", ch)
		}
		p, cc := usageOf(t, ch["usage"])
		if p != wantP || cc != c {
			t.Fatalf("continuous usage of chunk %d: %d/%d, want %d/%d", i, p, cc, wantP, c)
		}
	}
	if !audioIDRE.MatchString(id) {
		t.Errorf("id %q", id)
	}
	if len(st.finishes) != 2 || c != 75+39 {
		t.Errorf("finishes %v, %d tokens", st.finishes, c)
	}
	p, cc := usageOf(t, st.usage)
	if p != wantP || cc != c {
		t.Errorf("usage %d/%d, want %d/%d", p, cc, wantP, c)
	}
	// The exact shape of a content chunk, a finishing chunk and the usage
	// chunk.
	last := regexp.MustCompile(`data: \{"id":"transcribe-[0-9a-f]{32}","object":"transcription.chunk","created":\d+,"model":"sim-model","choices":\[\{"delta":\{"content":" [a-z]+"\},"finish_reason":"stop","stop_reason":null\}\],"usage":\{"prompt_tokens":\d+,"total_tokens":\d+,"completion_tokens":\d+\}\}\n\n` +
		`data: \{"id":"transcribe-[0-9a-f]{32}","object":"transcription.chunk","created":\d+,"model":"sim-model","choices":\[\],"usage":\{"prompt_tokens":\d+,"total_tokens":\d+,"completion_tokens":\d+\}\}\n\n` +
		`data: \[DONE\]\n\n$`)
	if !last.MatchString(body) {
		t.Errorf("stream end:\n%s", body[max(len(body)-600, 0):])
	}
	if got := sim.Counters(); got.PromptTokens != int64(p) || got.GenerationTokens != int64(cc) || got.Requests != 1 {
		t.Errorf("counters %+v, usage %d/%d", got, p, cc)
	}

	// Without the options: no usage anywhere; X-Request-Id names the id.
	_, body = postAudio(t, ts, transcriptions, WAV(3, 6), []string{"stream", "on"}, "X-Request-Id", "abc")
	if strings.Contains(body, "usage") || !strings.Contains(body, `data: {"id":"transcribe-abc","object":"transcription.chunk"`) {
		t.Errorf("plain stream:\n%s", body)
	}
	if !strings.HasPrefix(body, `data: {"id":"transcribe-abc","object":"transcription.chunk","created":`) ||
		!strings.Contains(body, `"model":"sim-model","choices":[{"delta":{"content":" `) {
		t.Errorf("plain stream:\n%s", body)
	}
	// stream_continuous_usage_stats alone does nothing.
	_, body = postAudio(t, ts, transcriptions, WAV(3, 6), []string{"stream", "1", "stream_continuous_usage_stats", "true"})
	if strings.Contains(body, "usage") {
		t.Errorf("continuous without include_usage:\n%s", body)
	}
}

// max_completion_tokens caps each audio chunk; 448 caps it anyway.
func TestAudioMaxCompletionTokens(t *testing.T) {
	sim, ts := start(t, fastAudio)
	file := WAV(70, 7)
	_, body := postAudio(t, ts, transcriptions, file, []string{"stream", "true", "stream_include_usage", "true", "max_completion_tokens", "10"})
	st := parseAudioStream(t, body)
	if len(st.finishes) != 3 || st.finishes[0] != "length" || st.finishes[1] != "length" || st.finishes[2] != "length" {
		t.Errorf("finishes %v", st.finishes)
	}
	if _, c := usageOf(t, st.usage); c != 30 || sim.tok.Count(st.text) != 30 {
		t.Errorf("completion %d, text %q", c, st.text)
	}
	// 25 caps only the two full chunks (75 words); the last (25) stops by
	// itself at the cap: "length".
	_, body = postAudio(t, ts, transcriptions, file, []string{"stream", "true", "stream_include_usage", "true", "max_completion_tokens", "26"})
	st = parseAudioStream(t, body)
	if _, c := usageOf(t, st.usage); c != 26+26+25 || strings.Join(st.finishes, ",") != "length,length,stop" {
		t.Errorf("cap 26: %d tokens, %v", c, st.finishes)
	}
	// A huge cap is clamped to 448 without an error.
	_, body = postAudio(t, ts, transcriptions, WAV(5, 7), []string{"stream", "true", "stream_include_usage", "true", "max_completion_tokens", "1e6"})
	if !strings.Contains(body, "Input should be a valid integer") {
		t.Errorf("1e6: %s", body)
	}
	_, body = postAudio(t, ts, transcriptions, WAV(5, 7), []string{"stream", "true", "stream_include_usage", "true", "max_completion_tokens", "1000000.0"},
		"X-Sim-Length", "1000")
	st = parseAudioStream(t, body)
	if _, c := usageOf(t, st.usage); c != 448 || st.finishes[0] != "length" {
		t.Errorf("clamped: %d tokens, %v", c, st.finishes)
	}
	// The cap applies to JSON answers too.
	_, js := postAudio(t, ts, transcriptions, file, []string{"max_completion_tokens", "10"})
	if text := decode(t, js)["text"].(string); sim.tok.Count(text) != 30 {
		t.Errorf("JSON text %q", text)
	}
}

func TestAudioTranslations(t *testing.T) {
	sim, ts := start(t, fastAudio)
	file := WAV(16, 1)
	_, tr := postAudio(t, ts, transcriptions, file, nil)
	resp, body := postAudio(t, ts, translations, file, nil)
	text, _ := strings.CutPrefix(body, `{"text":"`)
	text, ok := strings.CutSuffix(text, `"}`)
	if resp.StatusCode != 200 || !ok || !isTranscript(text, 40) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if strings.Contains(tr, text) {
		t.Error("the translation reads as the transcription")
	}
	sim.Reset()
	_, sbody := postAudio(t, ts, translations, file, []string{"stream", "true", "stream_include_usage", "true"})
	st := parseAudioStream(t, sbody)
	if st.text != text {
		t.Errorf("stream text %q, JSON %q", st.text, text)
	}
	for _, ch := range st.chunks {
		if ch["object"] != "translation.chunk" || !audioIDRE.MatchString(ch["id"].(string)) || !strings.HasPrefix(ch["id"].(string), "translate-") {
			t.Fatalf("chunk %v", ch)
		}
	}
	p, c := usageOf(t, st.usage)
	if p != 4+1600 || c != 40 {
		t.Errorf("usage %d/%d", p, c)
	}
	if got := sim.Counters(); got.PromptTokens != int64(p) || got.GenerationTokens != int64(c) {
		t.Errorf("counters %+v", got)
	}
}

// Counters add a JSON answer's tokens as its stream would report them.
func TestAudioCounters(t *testing.T) {
	sim, ts := start(t, fastAudio)
	file := WAV(61, 8)
	fields := []string{"prompt", "hello there"}
	_, body := postAudio(t, ts, transcriptions, file, append(fields, "stream", "true", "stream_include_usage", "true"))
	p, c := usageOf(t, parseAudioStream(t, body).usage)
	if p != 4+sim.tok.Count("hello there")+6100 || c != 75+75+3 {
		t.Fatalf("usage %d/%d", p, c)
	}
	sim.Reset()
	for _, format := range []string{"json", "text", "srt", "vtt", "verbose_json"} {
		if resp, _ := postAudio(t, ts, transcriptions, file, append(fields, "response_format", format)); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", format, resp.StatusCode)
		}
		if resp, _ := postAudio(t, ts, translations, file, append(fields, "response_format", format)); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", format, resp.StatusCode)
		}
	}
	got := sim.Counters()
	if got.PromptTokens != 10*int64(p) || got.GenerationTokens != 10*int64(c) || got.Requests != 10 || got.Aborted != 0 {
		t.Errorf("counters %+v, want 10 × %d/%d", got, p, c)
	}
	// The engine saw three requests per call, each with its decoder prompt
	// and its own frames.
	enginePrompt := 3*(4+sim.tok.Count("hello there")) + 6100
	if got.EnginePromptTokens != 10*int64(enginePrompt) {
		t.Errorf("engine prompt %d, want 10 × %d", got.EnginePromptTokens, enginePrompt)
	}
	mt := metrics(t, ts)
	if mt["vllm:request_success_total{"+modelLabels+`,finished_reason="stop"}`] != 30 ||
		mt["vllm:generation_tokens_total{"+modelLabels+"}"] != float64(10*c) {
		t.Errorf("metrics %v", mt)
	}
}

func TestAudioErrors(t *testing.T) {
	_, ts := start(t, fastAudio)
	wav := WAV(2, 1)
	badReq := func(msg, param string) string {
		p := "null"
		if param != "" {
			p = `"` + param + `"`
		}
		return `{"error":{"message":"` + msg + `","type":"BadRequestError","param":` + p + `,"code":400}}`
	}
	validation := func(msg, param string) string {
		return strings.Replace(badReq(msg, param), "BadRequestError", "Bad Request", 1)
	}
	for _, tc := range []struct {
		name   string
		file   []byte
		fields []string
		status int
		want   string // exact body, or a substring when it starts with "~"
	}{
		{"no file", nil, []string{"model", "sim-model"}, 400, validation("Field required: file", "")},
		{"not a wav", []byte("ID3 this is an mp3, honest"), nil, 400, badReq(errInvalidAudio, "")},
		{"bad format", wav, []string{"response_format", "xml"}, 400, validation(errBadFormFormat, "")},
		{"options without stream", wav, []string{"stream_include_usage", "true"}, 400, validation(errStreamOptions, "stream_include_usage")},
		{"false option without stream", wav, []string{"stream_continuous_usage_stats", "false"}, 400, validation(errStreamOptions, "stream_continuous_usage_stats")},
		{"stream srt", wav, []string{"stream", "true", "response_format", "srt"}, 400, badReq("srt format doesn't support streaming case", "")},
		{"stream verbose", wav, []string{"stream", "true", "response_format", "verbose_json"}, 400, badReq("verbose_json format doesn't support streaming case", "")},
		{"stream vtt", wav, []string{"stream", "true", "response_format", "vtt"}, 400, badReq("vtt format doesn't support streaming case", "")},
		{"beam stream", wav, []string{"stream", "true", "use_beam_search", "true"}, 400, badReq("Streaming is not currently supported with beam search", "")},
		{"diarized", wav, []string{"response_format", "diarized_json"}, 400, badReq("Currently do not support diarized_json for sim-model", "")},
		{"bad bool", wav, []string{"stream", "maybe"}, 400, "~valid boolean"},
		{"bad int", wav, []string{"max_completion_tokens", "ten"}, 400, "~valid integer"},
		{"zero tokens", wav, []string{"max_completion_tokens", "0"}, 400, badReq("max_tokens must be at least 1, got 0.", "max_tokens")},
		{"unknown model", wav, []string{"model", "whisper-x"}, 404, `{"error":{"message":"The model ` + "`whisper-x`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`},
		{"too long", WAV(600.5, 1), nil, 400, badReq(errAudioTooLong, "")},
		{"too big", make([]byte, 25<<20+1024), nil, 400, badReq("Maximum file size exceeded (parameter=audio_filesize_mb, value=25.0009765625)", "audio_filesize_mb")},
	} {
		resp, body := postAudio(t, ts, transcriptions, tc.file, tc.fields)
		ok := body == tc.want
		if sub, partial := strings.CutPrefix(tc.want, "~"); partial {
			ok = strings.Contains(body, sub)
		}
		if resp.StatusCode != tc.status || !ok || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s\nwant %d %s", tc.name, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	// stream=false lets the options through (vLLM's check sees a non-empty
	// string), and the answer is JSON.
	if resp, body := postAudio(t, ts, transcriptions, wav, []string{"stream", "false", "stream_include_usage", "true"}); resp.StatusCode != 200 || !strings.HasPrefix(body, `{"text":`) {
		t.Errorf("stream=false with options: %d %s", resp.StatusCode, body)
	}
	// 600 s exactly is fine.
	if resp, _ := postAudio(t, ts, transcriptions, WAV(600, 1), []string{"response_format", "text"}); resp.StatusCode != 200 {
		t.Errorf("600 s: %d", resp.StatusCode)
	}

	// A "file" field that is not an upload, a JSON body, a broken form, GET.
	body, ct := audioFormBody(t, nil, "file", "hello")
	if s, b := post(t, ts, transcriptions, body, "Content-Type", ct); s != 422 ||
		b != `{"error":{"message":"Expected 'file' to be a file-like object, not 'str'.","type":"Unprocessable Entity","param":null,"code":422}}` {
		t.Errorf("file as str: %d %s", s, b)
	}
	if s, b := post(t, ts, transcriptions, `{"file":"x"}`); s != 400 || b != validation("Field required: file", "") {
		t.Errorf("JSON body: %d %s", s, b)
	}
	if s, b := post(t, ts, transcriptions, "garbage", "Content-Type", "multipart/form-data; boundary=xyz"); s != 400 || b != validation("There was an error parsing the body", "") {
		t.Errorf("broken form: %d %s", s, b)
	}
	if s, b := post(t, ts, transcriptions, "x", "Content-Type", "multipart/form-data"); s != 400 || b != validation("Missing boundary in multipart.", "") {
		t.Errorf("no boundary: %d %s", s, b)
	}
	if s, b := get(t, ts, translations); s != 405 || b != `{"detail":"Method Not Allowed"}` {
		t.Errorf("GET: %d %s", s, b)
	}
	// X-Sim-Status answers before the form is read.
	if s, _ := post(t, ts, translations, "garbage", "Content-Type", "text/plain", "X-Sim-Status", "503"); s != 503 {
		t.Errorf("X-Sim-Status: %d", s)
	}
}

func TestAudioRoutingAndRecording(t *testing.T) {
	sim, ts := start(t, Config{TokensPerSecond: 1e6, APIKey: "k", ModelNames: []string{"whisper", "other"}})
	if resp, _ := postAudio(t, ts, transcriptions, WAV(1, 1), nil); resp.StatusCode != 401 {
		t.Errorf("without key: %d", resp.StatusCode)
	}
	_, body := postAudio(t, ts, transcriptions, WAV(1, 1), []string{"stream", "true", "stream_include_usage", "true", "max_completion_tokens", "7"}, "Authorization", "Bearer k")
	if !strings.Contains(body, `"model":"whisper"`) {
		t.Errorf("default model: %s", body)
	}
	_, body = postAudio(t, ts, translations, WAV(1, 1), []string{"model", "other", "stream", "1"}, "Authorization", "Bearer k")
	if !strings.Contains(body, `"model":"other"`) {
		t.Errorf("named model: %s", body)
	}
	recs := sim.Requests()
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[1]
	if r.Path != transcriptions || !r.Stream || r.MaxCompletionTokens == nil || *r.MaxCompletionTokens != 7 ||
		r.StreamOptions == nil || r.StreamOptions.IncludeUsage == nil || !*r.StreamOptions.IncludeUsage || !bytes.Contains(r.Body, WAV(1, 1)) {
		t.Errorf("record %+v", r)
	}
	if recs[2].Model != "other" || recs[2].StreamOptions != nil {
		t.Errorf("record %+v", recs[2])
	}
}

// A client that goes away stops the stream; what was generated counts.
func TestAudioClientDisconnect(t *testing.T) {
	sim, ts := start(t, Config{})
	body, ct := audioFormBody(t, WAV(70, 9), "stream", "true", "stream_include_usage", "true")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := callCtx(ctx, t, ts, http.MethodPost, transcriptions, body, "Content-Type", ct, "X-Sim-TPS", "200")
	buf := make([]byte, 4096)
	got := ""
	for strings.Count(got, "\n\n") < 5 {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += string(buf[:n])
	}
	cancel()
	resp.Body.Close()
	c := waitCounters(t, sim, func(c Counters) bool { return c.Aborted == 1 })
	if c.GenerationTokens < 5 || c.GenerationTokens >= 175 || c.PromptTokens != 4+7000 || c.Requests != 1 {
		t.Errorf("counters %+v", c)
	}
}

func TestAudioErrorAfter(t *testing.T) {
	sim, ts := start(t, fastAudio)
	// 35 s: chunks of 75 and 13 tokens; the error comes in the second.
	_, body := postAudio(t, ts, transcriptions, WAV(35, 1), []string{"stream", "true", "stream_include_usage", "true"}, "X-Sim-Error-After", "80")
	i := strings.Index(body, `data: {"error"`)
	if i < 0 {
		t.Fatalf("no error event:\n%s", body)
	}
	st := parseAudioStream(t, body[:i]+doneEvent)
	if sim.tok.Count(st.text) != 80 || !strings.HasSuffix(body, `"code": 500}}`+"\n\ndata: [DONE]\n\n") || st.usage != nil {
		t.Errorf("stream:\n%s", body)
	}
	c := sim.Counters()
	if c.GenerationTokens != 80 || c.Errored != 1 || c.PromptTokens != 4+3500 {
		t.Errorf("counters %+v", c)
	}
	resp, js := postAudio(t, ts, translations, WAV(3, 1), nil, "X-Sim-Error-After", "2")
	if resp.StatusCode != 500 || !strings.Contains(js, "InternalServerError") {
		t.Errorf("JSON: %d %s", resp.StatusCode, js)
	}
}

// Streams are paced: chunk after chunk, each with its TTFT.
func TestAudioPacing(t *testing.T) {
	_, ts := start(t, Config{TokensPerSecond: 1000, TTFT: 20 * time.Millisecond})
	t0 := time.Now()
	// 35 s: two chunks, 88 tokens: at least 2 × 20 ms + 86 ms.
	if resp, _ := postAudio(t, ts, transcriptions, WAV(35, 1), nil); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	if el := time.Since(t0); el < 120*time.Millisecond {
		t.Errorf("took %v", el)
	}
}
