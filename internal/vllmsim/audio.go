package vllmsim

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"hash/fnv"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Speech to text: POST /v1/audio/transcriptions and /v1/audio/translations,
// as vLLM serves them for Whisper in late 2026 (.cache/audio-spec.md, era
// E4). The request is a multipart form with an audio file, which must be a
// WAV file here (RIFF/WAVE with a fmt and a data chunk): its duration is the
// data chunk's size over the byte rate.
//
// The audio is cut into contiguous 30 s chunks (the last one shorter), each
// transcribed by its own engine request, one after the other, each capped
// at max_completion_tokens (at most Whisper's max_model_len, 448). A chunk's
// natural transcript is about 2.5 words per second (X-Sim-Length sets it),
// drawn from the vocabulary with a seed hashed from the file's bytes, so
// the same file always reads the same and counting the text with cl100k
// gives back the generated tokens. Every chunk's text starts with a space,
// as Whisper's do, and that space is the " " vLLM joins the chunks with:
// the transcript is the chunks' texts concatenated. No EOS token is
// counted (the spec leaves open whether vLLM counts it): a chunk's tokens
// are exactly the tokens of its text.
//
// Accounting, as vLLM reports it:
//
//	prompt_tokens      4 (Whisper's decoder prompt) + count(prompt field)
//	                   + ceil(duration × 100) (log-mel frames of the whole
//	                   file), once per request, whatever the chunks
//	completion_tokens  every token of every chunk
//
// Only a stream with stream_include_usage (or Config.ForceIncludeUsage)
// reports them; a JSON transcription reports {"type":"duration","seconds":
// ceil(duration)} and a translation nothing. Counters add them all the
// same. EnginePromptTokens (vllm:prompt_tokens_total) counts each chunk's
// engine request: 4 + count(prompt) + ceil(chunk duration × 100).
//
// Config.ForceIncludeUsage forces the final usage chunk; continuous usage
// still needs both stream options. X-Sim-Error-After and X-Sim-Crash-After
// count the request's tokens over all its chunks; X-Sim-TTFT is each
// chunk's prefill.

const (
	// whisperMaxModelLen caps the tokens of one audio chunk.
	whisperMaxModelLen = 448
	// whisperDecoderPrompt is <|startoftranscript|><|lang|><|task|><|notimestamps|>.
	whisperDecoderPrompt = 4
	// audioFramesPerSecond is Whisper's log-mel frame rate (16000 / 160).
	audioFramesPerSecond = 100
	// audioChunkSeconds is max_audio_clip_s.
	audioChunkSeconds = 30
	// audioWordsPerSecond is the speech rate of the emulated transcripts.
	audioWordsPerSecond = 2.5
	// maxAudioFileBytes is VLLM_MAX_AUDIO_CLIP_FILESIZE_MB (25 MiB).
	maxAudioFileBytes = 25 << 20
	// maxAudioSeconds is VLLM_MAX_AUDIO_DECODE_DURATION_S.
	maxAudioSeconds = 600
	// maxFormPart, maxFormParts: Starlette's multipart limits (max_part_size
	// for fields that are not files, max_fields, max_files).
	maxFormPart  = 1 << 20
	maxFormParts = 1000
)

const (
	errInvalidAudio  = "Invalid or unsupported audio file."
	errAudioTooLong  = "Audio exceeds maximum allowed duration of 600s. Set VLLM_MAX_AUDIO_DECODE_DURATION_S to increase this limit."
	errFileIsStr     = "Expected 'file' to be a file-like object, not 'str'."
	errBadFormFormat = "Input should be 'json', 'text', 'srt', 'verbose_json', 'vtt' or 'diarized_json': response_format"
)

// WAV returns a 16 kHz mono 16-bit PCM WAV file of seconds of quiet noise
// (its 44-byte canonical header, then the samples). Files with different
// seeds differ, and so do their transcripts.
func WAV(seconds float64, seed int) []byte {
	const rate, align = 16000, 2
	n := int(math.Round(max(seconds, 0) * rate))
	b := make([]byte, 44+align*n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+align*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], rate*align)
	binary.LittleEndian.PutUint16(b[32:], align)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(align*n))
	x := uint64(seed)*0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D
	for i := 0; i < n; i++ {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		binary.LittleEndian.PutUint16(b[44+align*i:], uint16(int16(int64((x*2685821657736338717)>>53)-1024)))
	}
	return b
}

// wavDuration reads a RIFF/WAVE file's duration in seconds as libsndfile
// (soundfile, which vLLM decodes with) does: the data chunk's frames (its
// bytes, as many as the file holds, over the block align) over the sample
// rate; the byte rate field is not trusted. ok is false for anything
// else, or a WAV without samples.
func wavDuration(b []byte) (seconds float64, ok bool) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, false
	}
	var rate, align int64
	for off := int64(12); off+8 <= int64(len(b)); {
		id := string(b[off : off+4])
		size := int64(binary.LittleEndian.Uint32(b[off+4:]))
		body := off + 8
		switch id {
		case "fmt ":
			if size < 16 || body+size > int64(len(b)) {
				return 0, false
			}
			f := b[body:]
			format := binary.LittleEndian.Uint16(f)
			channels := binary.LittleEndian.Uint16(f[2:])
			rate = int64(binary.LittleEndian.Uint32(f[4:]))
			align = int64(binary.LittleEndian.Uint16(f[12:]))
			bits := binary.LittleEndian.Uint16(f[14:])
			switch format {
			case 1, 3, 6, 7, 0xFFFE: // PCM, float, A-law, µ-law, extensible
			default:
				return 0, false
			}
			if channels == 0 || rate == 0 || align == 0 || bits == 0 {
				return 0, false
			}
		case "data":
			if rate == 0 {
				return 0, false
			}
			frames := min(size, int64(len(b))-body) / align
			if frames <= 0 {
				return 0, false
			}
			return float64(frames) / float64(rate), true
		}
		off = body + size + size&1 // chunks are padded to an even size
	}
	return 0, false
}

// audioTask is the task of a speech-to-text path, "" for other paths.
func audioTask(path string) string {
	switch path {
	case "/v1/audio/transcriptions":
		return "transcribe"
	case "/v1/audio/translations":
		return "translate"
	}
	return ""
}

// audioForm is a speech-to-text request's form as Starlette parses it:
// the last value of each field wins.
type audioForm struct {
	err    *apiError // the body is a broken multipart form
	fields map[string]string
	file   []byte
	// fileKind is 0 without a "file" field, 1 for an upload, 2 for a
	// plain field (a part without a filename).
	fileKind int
}

// parseAudioForm reads the form. A body that is neither multipart nor
// url-encoded is an empty form, as Starlette makes it.
func (s *Server) parseAudioForm(contentType string, body []byte) *audioForm {
	f := &audioForm{fields: map[string]string{}}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return f
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		vals, _ := url.ParseQuery(string(body))
		for k, v := range vals {
			if k == "file" {
				f.fileKind = 2
				continue
			}
			f.fields[k] = v[len(v)-1]
		}
		return f
	case "multipart/form-data":
	default:
		return f
	}
	fail := func(msg string) *audioForm {
		e := s.validationError(msg)
		f.err = &e
		return f
	}
	if params["boundary"] == "" {
		return fail("Missing boundary in multipart.")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	files, fields := 0, 0
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return f
		}
		if err != nil {
			return fail("There was an error parsing the body")
		}
		name := p.FormName()
		if p.FileName() != "" {
			if files++; files > maxFormParts {
				return fail("Too many files. Maximum number of files is 1000.")
			}
			data, err := io.ReadAll(p)
			if err != nil {
				return fail("There was an error parsing the body")
			}
			if name == "file" {
				f.file, f.fileKind = data, 1
			}
			continue
		}
		if fields++; fields > maxFormParts {
			return fail("Too many fields. Maximum number of fields is 1000.")
		}
		v, err := io.ReadAll(io.LimitReader(p, maxFormPart+1))
		if err != nil {
			return fail("There was an error parsing the body")
		}
		if len(v) > maxFormPart {
			return fail("Part exceeded maximum size of 1024KB.")
		}
		if name == "file" {
			f.file, f.fileKind = nil, 2
			continue
		}
		f.fields[name] = string(v)
	}
}

// formBool reads a boolean form value as pydantic does.
func formBool(v string) (b, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "t", "y", "yes", "on":
		return true, true
	case "0", "false", "f", "n", "no", "off":
		return false, true
	}
	return false, false
}

// formInt reads an integer form value as pydantic does: digits, or
// digits with a fraction of zeros ("1000000.0"); no exponent.
func formInt(v string) (int, bool) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '.'); i >= 0 {
		if strings.Trim(v[i+1:], "0") != "" {
			return 0, false
		}
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// recorded is the form's fields as Recorded shows them.
func (f *audioForm) recorded() *apiRequest {
	q := &apiRequest{Model: f.fields["model"]}
	if b, ok := formBool(f.fields["stream"]); ok {
		q.Stream = &b
	}
	if n, ok := formInt(f.fields["max_completion_tokens"]); ok {
		q.MaxCompletionTokens = &n
	}
	var so []string
	if b, ok := formBool(f.fields["stream_include_usage"]); ok {
		so = append(so, `"include_usage":`+strconv.FormatBool(b))
	}
	if b, ok := formBool(f.fields["stream_continuous_usage_stats"]); ok {
		so = append(so, `"continuous_usage_stats":`+strconv.FormatBool(b))
	}
	if so != nil {
		q.StreamOptionsRaw = []byte("{" + strings.Join(so, ",") + "}")
	}
	return q
}

// audioRequest is a validated speech-to-text request.
type audioRequest struct {
	model      string
	prompt     string
	language   string
	format     string
	stream     bool
	include    bool
	continuous bool
	beam       bool
	maxTokens  *int
}

// validateAudioForm applies the request model's validation: the stream-option
// check first (a "before" validator, which sees the raw strings: any
// non-empty value is truthy, so stream=false lets the options through),
// then the fields.
func (s *Server) validateAudioForm(f *audioForm) (*audioRequest, *apiError) {
	if f.err != nil {
		return nil, f.err
	}
	fail := func(msg, param string) (*audioRequest, *apiError) {
		e := s.validationError(msg)
		e.param = param
		return nil, &e
	}
	if f.fields["stream"] == "" {
		for _, so := range []string{"stream_include_usage", "stream_continuous_usage_stats"} {
			if f.fields[so] != "" {
				return fail(errStreamOptions, so)
			}
		}
	}
	switch f.fileKind {
	case 0:
		return fail("Field required: file", "")
	case 2:
		return nil, &apiError{status: http.StatusUnprocessableEntity, typ: "Unprocessable Entity", msg: errFileIsStr}
	}
	q := &audioRequest{
		model:    f.fields["model"],
		prompt:   f.fields["prompt"],
		language: f.fields["language"],
		format:   f.fields["response_format"],
	}
	switch q.format {
	case "":
		q.format = "json"
	case "json", "text", "srt", "verbose_json", "vtt", "diarized_json":
	default:
		return fail(errBadFormFormat, "")
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"stream", &q.stream}, {"stream_include_usage", &q.include}, {"stream_continuous_usage_stats", &q.continuous}, {"use_beam_search", &q.beam}} {
		v := f.fields[b.name]
		if v == "" {
			continue
		}
		var ok bool
		if *b.dst, ok = formBool(v); !ok {
			return fail("Input should be a valid boolean, unable to interpret input: "+b.name, "")
		}
	}
	if v := f.fields["max_completion_tokens"]; v != "" {
		n, ok := formInt(v)
		if !ok {
			return fail("Input should be a valid integer, unable to parse string as an integer: max_completion_tokens", "")
		}
		q.maxTokens = &n
	}
	return q, nil
}

// pyFloatString is Python's repr of a float.
func pyFloatString(f float64) string {
	return string(appendPyNumber(nil, strconv.FormatFloat(f, 'e', -1, 64), true))
}

// handleAudio answers a speech-to-text request; task is "transcribe" or
// "translate".
func (s *Server) handleAudio(w http.ResponseWriter, r *http.Request, task string, f *audioForm) {
	ov, err := parseOverrides(r.Header)
	if err != nil {
		s.writeError(w, s.validationError(err.Error()))
		return
	}
	if ov.status != 0 {
		s.writeError(w, apiError{status: ov.status, typ: errorTypeForStatus(ov.status), msg: "Simulated error (X-Sim-Status)"})
		return
	}
	q, aerr := s.validateAudioForm(f)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	if len(f.file) > maxAudioFileBytes {
		mib := float64(len(f.file)) / (1 << 20)
		s.writeError(w, badRequest("Maximum file size exceeded (parameter=audio_filesize_mb, value="+pyFloatString(mib)+")", "audio_filesize_mb"))
		return
	}
	m, aerr := s.lookupModel(q.model)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	switch {
	case q.stream && q.format != "json" && q.format != "text":
		s.writeError(w, badRequest(q.format+" format doesn't support streaming case", ""))
		return
	case q.stream && q.beam:
		s.writeError(w, badRequest("Streaming is not currently supported with beam search", ""))
		return
	case q.format == "diarized_json":
		s.writeError(w, badRequest("Currently do not support diarized_json for "+m.name, ""))
		return
	}
	dur, ok := wavDuration(f.file)
	if !ok {
		s.writeError(w, badRequest(errInvalidAudio, ""))
		return
	}
	if dur > maxAudioSeconds {
		s.writeError(w, badRequest(errAudioTooLong, ""))
		return
	}
	limit := whisperMaxModelLen
	if q.maxTokens != nil {
		if *q.maxTokens < 1 {
			s.writeError(w, badRequest("max_tokens must be at least 1, got "+strconv.Itoa(*q.maxTokens)+".", "max_tokens"))
			return
		}
		limit = min(*q.maxTokens, limit)
	}
	decoder := whisperDecoderPrompt + s.tok.Count(q.prompt)
	prompt := decoder + audioFrames(dur)
	g := s.newGeneration(m, s.audioChunks(f.file, task, dur, decoder, limit, ov), prompt, ov)

	prefix, object := "transcribe-", "transcription"
	if task == "translate" {
		prefix, object = "translate-", "translation"
	}
	id := prefix + r.Header.Get("X-Request-Id")
	if id == prefix {
		id += s.hexID(32)
	}
	if !q.stream {
		o := g.runChunks(r.Context(), discard{})
		s.endJSON(w, g, o, func() { s.writeAudioBody(w, g, task, q, dur) })
		return
	}
	include := q.include || s.cfg.ForceIncludeUsage
	as := &audioStream{
		s: s, continuous: include && q.continuous, prompt: prompt,
		prefix: appendChunkPrefix(nil, id, object+".chunk", time.Now().Unix(), m.name),
	}
	sw, err := startStream(w)
	if err != nil {
		g.finish(outcomeAborted)
		return
	}
	as.sw = sw
	s.endStream(sw, g, g.runChunks(r.Context(), as), as.prefix, include, usageChunk)
}

// audioFrames is the prompt tokens of seconds of audio: ceil(seconds × 100).
func audioFrames(seconds float64) int {
	return int(math.Ceil(seconds * audioFramesPerSecond))
}

// audioChunks plans the engine requests of an audio file of dur seconds:
// one per 30 s, each with its decoder prompt plus its own frames, its
// natural length (X-Sim-Length, else 2.5 words a second, at least one) cut
// at limit ("length"), and a seed from the file's hash.
func (s *Server) audioChunks(file []byte, task string, dur float64, decoder, limit int, ov simOverrides) []choice {
	n := max(int(math.Ceil(dur/audioChunkSeconds)), 1)
	h := fnv.New64a()
	_, _ = h.Write(file)
	x := h.Sum64()
	if task == "translate" {
		x ^= 0x5851F42D4C957F2D
	}
	chunks := make([]choice, n)
	for i := range chunks {
		d := min(dur-float64(i*audioChunkSeconds), audioChunkSeconds)
		natural := ov.length
		if natural == 0 {
			natural = max(int(math.Round(d*audioWordsPerSecond)), 1)
		}
		length, finish := natural, "stop"
		if limit <= natural {
			length, finish = limit, "length"
		}
		y := x + uint64(i)*0x9E3779B97F4A7C15
		y ^= y >> 31
		y *= 0xBF58476D1CE4E5B9
		y ^= y >> 29
		chunks[i] = choice{
			index:  i,
			prompt: decoder + audioFrames(d),
			length: length,
			finish: finish,
			seed:   int(y % uint64(len(vocab))),
		}
	}
	return chunks
}

// runChunks is run for the audio chunks: vLLM iterates their result
// generators in turn, so each chunk's engine request starts when the one
// before it finished, with its own TTFT, and its tokens follow at TPS. The
// usage's prompt counts once, at the first token; each chunk's engine
// prompt when it starts. On an early end, the chunks never started are
// dropped from g.choices: they were never sent to the engine.
func (g *generation) runChunks(ctx context.Context, out sink) outcome {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	wait := func(d time.Duration) bool {
		if d <= 0 {
			return ctx.Err() == nil
		}
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		}
	}
	for i := range g.choices {
		c := &g.choices[i]
		start := time.Now()
		end := func(o outcome) outcome {
			g.choices = g.choices[:i+1]
			return o
		}
		for !c.done() {
			if g.failAfter >= 0 && g.generated >= g.failAfter {
				return end(g.fail)
			}
			step := g.chunk
			if c.emitted == 0 {
				step = 1
			}
			step = min(step, c.length-c.emitted)
			if g.failAfter >= 0 {
				step = min(step, g.failAfter-g.generated)
			}
			due := g.ttft
			if g.tps > 0 {
				due += time.Duration(float64(c.emitted+step-1) * float64(time.Second) / g.tps)
			}
			if !wait(due - time.Since(start)) {
				return end(outcomeAborted)
			}
			if c.emitted == 0 {
				if !g.prefilled {
					g.prefilled = true
					g.s.promptTokens.Add(int64(g.prompt))
					if out.first() != nil {
						return end(outcomeAborted)
					}
				}
				g.s.enginePromptTokens.Add(int64(c.prompt))
				g.model.promptTokens.Add(int64(c.prompt))
			}
			from := c.emitted
			c.emitted += step
			g.generated += step
			if out.emit(c, from, c.emitted) != nil {
				return end(outcomeAborted)
			}
		}
	}
	if g.failAfter >= 0 {
		return g.fail
	}
	return outcomeDone
}

// audioStream writes transcription.chunk / translation.chunk events
// (spec §3): one per engine output, the last of each audio chunk with its
// finish_reason and "stop_reason":null, continuous usage when asked.
type audioStream struct {
	s          *Server
	sw         *streamWriter
	prefix     []byte
	continuous bool
	prompt     int
	sent       int
}

func (as *audioStream) first() error { return nil }

func (as *audioStream) emit(c *choice, from, to int) error {
	b := append(as.sw.buf[:0], as.prefix...)
	b = append(b, `{"delta":{"content":"`...)
	b = c.appendText(b, from, to)
	b = append(b, `"}`...)
	if c.done() {
		b = append(b, `,"finish_reason":"`...)
		b = append(b, c.finish...)
		b = append(b, `","stop_reason":null`...)
	}
	b = append(b, "}]"...)
	as.sent += to - from
	if as.continuous {
		b = append(b, `,"usage":`...)
		b = as.s.appendUsage(b, as.prompt, as.sent, usageChunk)
	}
	return as.sw.send(append(b, "}\n\n"...))
}

// writeAudioBody writes a non-streaming answer in the request's format.
func (s *Server) writeAudioBody(w http.ResponseWriter, g *generation, task string, q *audioRequest, dur float64) {
	texts := make([]string, len(g.choices))
	total := 0
	for i := range g.choices {
		c := &g.choices[i]
		texts[i] = string(c.appendText(nil, 0, c.emitted))
		total += len(texts[i])
	}
	text := strings.Join(texts, "")
	switch q.format {
	case "text":
		writePlain(w, text)
	case "srt", "vtt":
		writePlain(w, subtitles(q.format, texts, dur))
	case "verbose_json":
		lang := q.language
		if lang == "" {
			lang = "en" // Whisper's language detection
		}
		b := make([]byte, 0, 256+2*total+len(g.choices)*(256+8*g.choices[0].length))
		b = append(b, `{"duration":`...)
		b = append(b, pyFloatString(dur)...)
		b = append(b, `,"language":`...)
		b = appendString(b, lang)
		b = append(b, `,"text":`...)
		b = appendString(b, text)
		b = append(b, `,"segments":[`...)
		for i := range g.choices {
			c := &g.choices[i]
			if i > 0 {
				b = append(b, ',')
			}
			start := float64(i * audioChunkSeconds)
			b = append(b, `{"id":`...)
			b = appendInt(b, i)
			b = append(b, `,"avg_logprob":`...)
			b = append(b, pyFloatString(-float64(15+c.seed%16)/100)...)
			b = append(b, `,"compression_ratio":`...)
			b = append(b, pyFloatString(compressionRatio(texts[i]))...)
			b = append(b, `,"end":`...)
			b = append(b, pyFloatString(min(start+audioChunkSeconds, dur))...)
			b = append(b, `,"no_speech_prob":null,"seek":`...)
			b = appendInt(b, int(start))
			b = append(b, `,"start":`...)
			b = append(b, pyFloatString(start)...)
			b = append(b, `,"temperature":0.0,"text":`...)
			b = appendString(b, texts[i])
			b = append(b, `,"tokens":[`...)
			for t := 0; t < c.emitted; t++ {
				if t > 0 {
					b = append(b, ',')
				}
				b = appendInt(b, wordID(c.seed, t))
			}
			b = append(b, "]}"...)
		}
		writeJSON(w, http.StatusOK, append(b, `],"words":null}`...))
	default: // json
		b := make([]byte, 0, 64+len(text))
		b = appendString(append(b, `{"text":`...), text)
		if task == "transcribe" {
			b = append(b, `,"usage":{"type":"duration","seconds":`...)
			b = appendInt(b, int(math.Ceil(dur)))
			b = append(b, '}')
		}
		writeJSON(w, http.StatusOK, append(b, '}'))
	}
}

// writePlain sends a PlainTextResponse.
func writePlain(w http.ResponseWriter, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body)
}

// subtitles renders one SRT or VTT cue per audio chunk, as vLLM's
// subtitle_formats does: the text stripped, "-->" turned into "->", and
// for VTT & and < escaped.
func subtitles(format string, texts []string, dur float64) string {
	var sb strings.Builder
	sep := ","
	if format == "vtt" {
		sep = "."
		sb.WriteString("WEBVTT\n")
	}
	for i, text := range texts {
		if i > 0 || format == "vtt" {
			sb.WriteByte('\n')
		}
		if format == "srt" {
			sb.WriteString(strconv.Itoa(i + 1))
			sb.WriteByte('\n')
		}
		start := float64(i * audioChunkSeconds)
		sb.WriteString(subtitleTime(start, sep))
		sb.WriteString(" --> ")
		sb.WriteString(subtitleTime(min(start+audioChunkSeconds, dur), sep))
		sb.WriteByte('\n')
		text = strings.ReplaceAll(strings.TrimSpace(text), "-->", "->")
		if format == "vtt" {
			text = strings.NewReplacer("&", "&amp;", "<", "&lt;").Replace(text)
		}
		sb.WriteString(text)
		sb.WriteByte('\n')
	}
	return sb.String()
}

// subtitleTime formats seconds as HH:MM:SS<sep>mmm, rounded to the
// millisecond.
func subtitleTime(seconds float64, sep string) string {
	ms := int64(math.RoundToEven(seconds * 1000))
	h, m, sec := ms/3600000, ms/60000%60, ms/1000%60
	pad := func(n int64, w int) string {
		s := strconv.FormatInt(n, 10)
		return strings.Repeat("0", max(w-len(s), 0)) + s
	}
	return pad(h, 2) + ":" + pad(m, 2) + ":" + pad(sec, 2) + sep + pad(ms%1000, 3)
}

// compressionRatio is Whisper's: the text's bytes over their zlib size.
func compressionRatio(text string) float64 {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	_, _ = io.WriteString(zw, text)
	if err := zw.Close(); err != nil || buf.Len() == 0 {
		return 1
	}
	return float64(len(text)) / float64(buf.Len())
}
