package meter

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidForm is wrapped by every error ParseForm returns: the body is
// not a multipart form, or a field the gate reads is malformed.
var ErrInvalidForm = errors.New("invalid form body")

// Audio reports whether the endpoint is one of vLLM's speech-to-text
// endpoints, whose requests are multipart forms (see ParseForm).
func (e Endpoint) Audio() bool {
	return e == EndpointTranscriptions || e == EndpointTranslations
}

// AudioTokensPerSecond is what vLLM counts as the prompt of a second of
// audio: Whisper's log-mel frames (ceil(seconds × 16000 / 160)). Other
// speech models count otherwise; the gate estimates with this.
const AudioTokensPerSecond = 100

// audioDecoderPrompt is Whisper's decoder prompt (start of transcript,
// language, task, no timestamps), which vLLM counts with the audio.
const audioDecoderPrompt = 4

// compressedBytesPerSecond is the rate the gate assumes for an audio file
// that is not PCM WAV (mp3, m4a, ogg, flac…) to estimate its duration:
// 16 kbit/s, low for music and high for speech codecs (Opus voice runs
// at 6 to 32), so that it rarely reserves, or charges where vLLM reports
// no duration, less than vLLM counts.
const compressedBytesPerSecond = 2000

// maxFormField bounds a text field of a form the gate reads.
const maxFormField = 1 << 20

// ParseForm reads the fields the gate needs from a speech-to-text request:
// a multipart form (contentType is the request's Content-Type). It reads
// model, stream, stream_include_usage, stream_continuous_usage_stats,
// max_completion_tokens and prompt as vLLM does (booleans as pydantic
// reads form strings; a repeated field takes its last value, the file
// too), and the audio's duration: exactly from a PCM WAV file, else
// estimated from the file's size.
//
// The gate and vLLM (Starlette and python-multipart) must read the same
// form, or a client could have the gate check one model and one file and
// vLLM run another: a form that the two parsers could read differently is
// refused (see splitForm).
func (r *Request) ParseForm(ep Endpoint, body []byte, contentType string) error {
	*r = Request{Endpoint: ep, N: 1, Prompts: 1}
	boundary, err := formBoundary(contentType)
	if err != nil {
		return err
	}
	parts, end, err := splitForm(body, boundary)
	if err != nil {
		return err
	}
	r.boundary, r.formEnd = boundary, end
	var file []byte
	haveFile := false
	var include, continuous, stream string
	var maxTokens []byte
	for _, p := range parts {
		switch p.name {
		case "file":
			if !p.isFile {
				return fmt.Errorf("%w: the file field is not a file upload", ErrInvalidForm)
			}
			file, haveFile = p.body, true
			continue
		case "model", "stream", "stream_include_usage", "stream_continuous_usage_stats", "max_completion_tokens", "prompt":
		default:
			continue
		}
		if p.isFile {
			return fmt.Errorf("%w: field %s is a file upload", ErrInvalidForm, p.name)
		}
		if len(p.body) > maxFormField {
			return fmt.Errorf("%w: field %s is longer than %d bytes", ErrInvalidForm, p.name, maxFormField)
		}
		if !utf8.Valid(p.body) {
			return fmt.Errorf("%w: field %s is not UTF-8", ErrInvalidForm, p.name)
		}
		switch p.name {
		case "model":
			r.Model = string(p.body)
		case "stream":
			stream = string(p.body)
		case "stream_include_usage":
			include = string(p.body)
		case "stream_continuous_usage_stats":
			continuous = string(p.body)
		case "max_completion_tokens":
			maxTokens = p.body
		case "prompt":
			r.prompt = p.body
		}
	}
	if !haveFile {
		return fmt.Errorf("%w: the form has no file", ErrInvalidForm)
	}
	r.AudioSeconds, r.AudioExact = audioDuration(file)
	// One call each, not a loop over a table: the table, with its error's
	// strings, would go to the heap and take r (the caller's, on its
	// stack, for every request of every endpoint) with it.
	if err := setFormBool(&r.Stream, "stream", stream); err != nil {
		return err
	}
	if err := setFormBool(&r.IncludeUsage, "stream_include_usage", include); err != nil {
		return err
	}
	if err := setFormBool(&r.ContinuousUsage, "stream_continuous_usage_stats", continuous); err != nil {
		return err
	}
	if maxTokens != nil {
		n, err := strconv.ParseInt(string(maxTokens), 10, 64)
		if err != nil || n < 1 || n > math.MaxInt32 {
			return fmt.Errorf("%w: max_completion_tokens must be a positive integer, not %q", ErrInvalidForm, maxTokens)
		}
		// vLLM applies it to each 30 s of audio, one after the other.
		chunks := max(int64(math.Ceil(r.AudioSeconds/audioChunkSeconds)), 1)
		r.MaxTokens, r.MaxTokensField = satMul(n, chunks), "max_completion_tokens"
	}
	return nil
}

// audioChunkSeconds is the length of the pieces vLLM cuts long audio into,
// each transcribed as a request of its own (Whisper's 30 s window).
const audioChunkSeconds = 30

func satMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// formBoundary reads the boundary of a multipart/form-data Content-Type.
// Only a plain boundary parameter is taken: Go's MIME parser merges RFC
// 2231 parameters (boundary*=…) that python-multipart skips, and a charset
// would have Starlette decode the field names differently.
func formBoundary(contentType string) (string, error) {
	mt, rest, _ := strings.Cut(contentType, ";")
	if mt != "multipart/form-data" { // as Starlette compares it
		return "", fmt.Errorf("%w: the request must be multipart/form-data, not %q", ErrInvalidForm, contentType)
	}
	params, ok := formParams(rest)
	if !ok || len(params) != 1 || params[0].key != "boundary" || params[0].val == "" || len(params[0].val) > 200 {
		return "", fmt.Errorf("%w: the Content-Type must be multipart/form-data with a boundary and nothing else, not %q", ErrInvalidForm, contentType)
	}
	return params[0].val, nil
}

// formPart is one part of a multipart form.
type formPart struct {
	name   string
	isFile bool // it has a filename: Starlette makes it an UploadFile
	body   []byte
}

// maxFormParts is Starlette's bound on a form's fields and files.
const maxFormParts = 1000

// splitForm splits a multipart/form-data body into its parts, and returns
// the offset of its closing delimiter. It takes a strict form: the first
// delimiter at the start (no preamble), nothing but an optional CRLF after
// the closing one (no epilogue), each part with exactly one
// Content-Disposition of type form-data with a quoted or plain name and
// an optional filename, and nothing else in it. Anything else may be read
// one way by Go and another by python-multipart (duplicate headers, RFC
// 2231 or duplicate parameters, an epilogue that hides a part the gate
// adds) and is refused.
func splitForm(body []byte, boundary string) (parts []formPart, end int, err error) {
	delim := []byte("--" + boundary)
	if !bytes.HasPrefix(body, delim) || !bytes.HasPrefix(body[len(delim):], []byte("\r\n")) {
		return nil, 0, fmt.Errorf("%w: the form does not start with its boundary", ErrInvalidForm)
	}
	sep := append([]byte("\r\n"), delim...)
	pos := len(delim) + 2
	for {
		i := bytes.Index(body[pos:], sep)
		if i < 0 {
			return nil, 0, fmt.Errorf("%w: the form has no closing boundary", ErrInvalidForm)
		}
		if len(parts) == maxFormParts {
			return nil, 0, fmt.Errorf("%w: more than %d parts", ErrInvalidForm, maxFormParts)
		}
		p, err := readPart(body[pos : pos+i])
		if err != nil {
			return nil, 0, err
		}
		parts = append(parts, p)
		next := pos + i + len(sep)
		switch after := body[next:]; {
		case bytes.HasPrefix(after, []byte("--")):
			if tail := after[2:]; len(tail) != 0 && string(tail) != "\r\n" {
				return nil, 0, fmt.Errorf("%w: data after the form's closing boundary", ErrInvalidForm)
			}
			return parts, pos + i + 2, nil
		case bytes.HasPrefix(after, []byte("\r\n")):
			pos = next + 2
		default:
			return nil, 0, fmt.Errorf("%w: a boundary is followed by neither CRLF nor --", ErrInvalidForm)
		}
	}
}

// readPart reads one part: its headers, then a blank line, then its body.
func readPart(b []byte) (formPart, error) {
	var p formPart
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return p, fmt.Errorf("%w: a part has no end of headers", ErrInvalidForm)
	}
	p.body = body
	disposition := 0
	for line := range strings.SplitSeq(string(head), "\r\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || strings.Trim(name, "-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" || name == "" {
			return p, fmt.Errorf("%w: a part has a malformed header line %q", ErrInvalidForm, line)
		}
		if strings.ToLower(name) != "content-disposition" { // ASCII only: EqualFold takes ſ for s
			continue // Content-Type and others: neither side reads them
		}
		if disposition++; disposition > 1 {
			return p, fmt.Errorf("%w: a part has two Content-Disposition headers", ErrInvalidForm)
		}
		typ, rest, _ := strings.Cut(val, ";")
		params, ok := formParams(rest)
		if !ok || strings.ToLower(strings.Trim(typ, " \t")) != "form-data" {
			return p, fmt.Errorf("%w: a part's Content-Disposition is not form-data with plain parameters: %q", ErrInvalidForm, val)
		}
		haveName := false
		for _, kv := range params {
			switch {
			case kv.key == "name" && !haveName:
				p.name, haveName = kv.val, true
			case kv.key == "filename" && !p.isFile:
				p.isFile = true
			default:
				return p, fmt.Errorf("%w: a part's Content-Disposition has the parameter %q more than once or unknown", ErrInvalidForm, kv.key)
			}
		}
		if !haveName {
			return p, fmt.Errorf("%w: a part has no name", ErrInvalidForm)
		}
	}
	if disposition == 0 {
		return p, fmt.Errorf("%w: a part has no Content-Disposition", ErrInvalidForm)
	}
	return p, nil
}

type formParam struct{ key, val string }

// formParams reads "; key=value; key=\"quoted value\"" parameters. ok is
// false for anything else, which python-multipart may read otherwise: a
// key that is not a lower-case token (it matches keys as written; key* is
// RFC 2231's), a plain value that is not an RFC 7230 token (it stops at
// some separators, and keeps the whitespace Go would trim), a quoted value
// with an escape, a line break or no end.
func formParams(s string) (params []formParam, ok bool) {
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return params, true
		}
		key, rest, found := strings.Cut(s, "=")
		key = strings.TrimRight(key, " \t")
		if !found || !isToken(key) || key != strings.ToLower(key) || strings.Contains(key, "*") {
			return nil, false
		}
		rest = strings.TrimLeft(rest, " \t")
		var val string
		if strings.HasPrefix(rest, "\"") {
			q := strings.IndexByte(rest[1:], '"')
			if q < 0 {
				return nil, false
			}
			val, rest = rest[1:1+q], rest[2+q:]
			if strings.ContainsAny(val, "\\\r\n") {
				return nil, false
			}
		} else {
			val, rest, _ = strings.Cut(rest, ";")
			val = strings.TrimRight(val, " \t")
			rest = ";" + rest
			if !isToken(val) {
				return nil, false
			}
		}
		params = append(params, formParam{key, val})
		rest = strings.TrimLeft(rest, " \t")
		switch {
		case rest == "" || rest == ";":
			return params, true
		case rest[0] == ';':
			s = rest[1:]
		default:
			return nil, false
		}
	}
}

// isToken reports whether s is an RFC 7230 token: letters, digits and
// !#$%&'*+-.^_`|~, nothing else.
func isToken(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// formBool reads a boolean form value as pydantic does; "" (absent) is
// false.
func formBool(v string) (b, ok bool) {
	switch strings.ToLower(v) {
	case "", "0", "false", "f", "n", "no", "off":
		return false, true
	case "1", "true", "t", "y", "yes", "on":
		return true, true
	}
	return false, false
}

// audioDuration reads an audio file's length in seconds: exactly for a
// PCM WAV file, as libsndfile (which vLLM decodes with) reads it (the data
// chunk's frames over the sample rate; its byte rate field is not
// trusted); from the headers of FLAC and MP3 (compressedDuration); else
// estimated at compressedBytesPerSecond.
func audioDuration(f []byte) (seconds float64, exact bool) {
	if len(f) >= 12 && string(f[:4]) == "RIFF" && string(f[8:12]) == "WAVE" {
		var rate, align int64
		for off := int64(12); off+8 <= int64(len(f)); {
			size := int64(binary.LittleEndian.Uint32(f[off+4:]))
			body := off + 8
			switch string(f[off : off+4]) {
			case "fmt ":
				if size < 16 || body+16 > int64(len(f)) {
					break
				}
				switch binary.LittleEndian.Uint16(f[body:]) {
				case 1, 3, 6, 7, 0xFFFE: // PCM, float, A-law, µ-law, extensible
					rate = int64(binary.LittleEndian.Uint32(f[body+4:]))
					align = int64(binary.LittleEndian.Uint16(f[body+12:]))
				}
			case "data":
				if rate > 0 && align > 0 {
					frames := min(size, int64(len(f))-body) / align
					return float64(frames) / float64(rate), true
				}
			}
			off = body + size + size&1 // chunks are padded to an even size
		}
	}
	if d, ok := compressedDuration(f); ok {
		return d, false // from headers a file may not keep to (VBR without a frame count)
	}
	return float64(len(f)) / compressedBytesPerSecond, false
}

// AudioPromptTokens is the prompt vLLM counts for seconds of audio and the
// request's text prompt of promptTokens: the decoder prompt, the text
// prompt and the audio's frames.
func AudioPromptTokens(seconds float64, promptTokens int64) int64 {
	return audioDecoderPrompt + promptTokens + int64(math.Ceil(seconds*AudioTokensPerSecond))
}

// estimateAudio is EstimatePrompt for a speech-to-text request.
func (r *Request) estimateAudio(c Counter) int64 {
	return AudioPromptTokens(r.AudioSeconds, countText(c, string(r.prompt)))
}

// TextPromptTokens is the count of the request's text prompt (a
// speech-to-text request's "prompt" field).
func (r *Request) TextPromptTokens(c Counter) int64 { return countText(c, string(r.prompt)) }

// rewriteForm asks vLLM for a speech-to-text stream's usage chunk: a
// stream_include_usage field is added after the others, so that it is the
// last of its name, which vLLM reads; and, as vLLM sends the running usage
// only with the final one, stream_continuous_usage_stats is turned off if
// the client asked for it alone (it would get usage vLLM would not send).
func rewriteForm(body []byte, r *Request) ([]byte, error) {
	if r.boundary == "" || r.formEnd <= 0 || r.formEnd > len(body) || !bytes.HasPrefix(body[r.formEnd:], []byte("--"+r.boundary+"--")) {
		return nil, fmt.Errorf("%w: no closing boundary", ErrInvalidForm)
	}
	field := func(b []byte, name, val string) []byte {
		b = append(b, "--"+r.boundary+"\r\nContent-Disposition: form-data; name=\""+name+"\"\r\n\r\n"+val+"\r\n"...)
		return b
	}
	out := make([]byte, 0, len(body)+256)
	out = append(out, body[:r.formEnd]...)
	out = field(out, "stream_include_usage", "true")
	if r.ContinuousUsage {
		out = field(out, "stream_continuous_usage_stats", "false")
	}
	return append(out, body[r.formEnd:]...), nil
}

// Transcript reads a non-streaming speech-to-text answer, which reports no
// tokens: it returns the count of its text (JSON's "text", or a text body,
// or an SRT or VTT body without its cue numbers and timings) and the audio
// seconds it tells, if any: a transcription's usage ({"type":"duration",
// "seconds":N}), verbose_json's duration, or where the last subtitle ends.
func Transcript(body []byte, c Counter) (tokens int64, seconds float64, haveSeconds bool) {
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '{' {
		var v struct {
			Text     string          `json:"text"`
			Duration json.RawMessage `json:"duration"` // verbose_json: "16.0", or 16.0
			Usage    struct {
				Seconds *float64 `json:"seconds"`
			} `json:"usage"`
		}
		if json.Unmarshal(b, &v) == nil {
			if v.Usage.Seconds != nil {
				seconds, haveSeconds = *v.Usage.Seconds, true
			} else if d, err := strconv.ParseFloat(strings.Trim(string(v.Duration), `"`), 64); err == nil {
				seconds, haveSeconds = d, true
			}
			return countGenerated(c, v.Text), seconds, haveSeconds && seconds >= 0 && seconds < 1e7
		}
	}
	text := string(body)
	if !strings.Contains(text, "-->") {
		return countGenerated(c, text), 0, false
	}
	var cues strings.Builder
	for line := range strings.Lines(text) {
		l := strings.TrimSpace(line)
		if _, end, ok := strings.Cut(l, "-->"); ok {
			if t, ok := cueTime(strings.TrimSpace(end)); ok {
				seconds, haveSeconds = max(seconds, t), true
			}
			continue
		}
		if l == "WEBVTT" || isDigits(l) {
			continue
		}
		cues.WriteString(line)
	}
	return countGenerated(c, cues.String()), seconds, haveSeconds
}

// cueTime reads a subtitle time: [hh:]mm:ss,mmm (SRT) or .mmm (VTT), and
// whatever follows it (VTT cue settings).
func cueTime(s string) (float64, bool) {
	s, _, _ = strings.Cut(s, " ")
	s = strings.Replace(s, ",", ".", 1)
	var t float64
	for f := range strings.SplitSeq(s, ":") {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v < 0 {
			return 0, false
		}
		t = t*60 + v
	}
	return t, true
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// setFormBool sets *dst to a form's boolean field, or says why it cannot.
func setFormBool(dst *bool, name, v string) error {
	b, ok := formBool(v)
	if !ok {
		return fmt.Errorf("%w: %s must be a boolean, not %q", ErrInvalidForm, name, v)
	}
	*dst = b
	return nil
}
