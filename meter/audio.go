package meter

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
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
// that is not WAV (mp3, m4a, ogg…) to estimate its duration: 64 kbit/s.
const compressedBytesPerSecond = 8000

// maxFormField bounds a text field of a form the gate reads.
const maxFormField = 1 << 20

// ParseForm reads the fields the gate needs from a speech-to-text request:
// a multipart form (contentType is the request's Content-Type). It reads
// model, stream, stream_include_usage, stream_continuous_usage_stats,
// max_completion_tokens and prompt as vLLM does (booleans as pydantic
// reads form strings; a repeated field takes its last value), and
// estimates the audio's duration: exactly from a WAV header, else from the
// file's size.
func (r *Request) ParseForm(ep Endpoint, body []byte, contentType string) error {
	*r = Request{Endpoint: ep, N: 1, Prompts: 1}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return fmt.Errorf("%w: the request must be multipart/form-data with a boundary, not %q", ErrInvalidForm, contentType)
	}
	r.boundary = params["boundary"]
	mr := multipart.NewReader(bytes.NewReader(body), r.boundary)
	haveFile := false
	var include, continuous, stream string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidForm, err)
		}
		name := p.FormName()
		if name == "file" {
			var head [64]byte
			n, _ := io.ReadFull(p, head[:])
			rest, err := io.Copy(io.Discard, p)
			if err != nil {
				return fmt.Errorf("%w: file: %v", ErrInvalidForm, err)
			}
			haveFile = true
			r.AudioSeconds, r.AudioExact = audioDuration(head[:n], int64(n)+rest)
			continue
		}
		switch name {
		case "model", "stream", "stream_include_usage", "stream_continuous_usage_stats", "max_completion_tokens", "prompt":
		default:
			continue
		}
		v, err := io.ReadAll(io.LimitReader(p, maxFormField+1))
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidForm, name, err)
		}
		if len(v) > maxFormField {
			return fmt.Errorf("%w: field %s is longer than %d bytes", ErrInvalidForm, name, maxFormField)
		}
		switch name {
		case "model":
			r.Model = string(v)
		case "stream":
			stream = string(v)
		case "stream_include_usage":
			include = string(v)
		case "stream_continuous_usage_stats":
			continuous = string(v)
		case "max_completion_tokens":
			r.MaxTokens, r.MaxTokensField = 0, ""
			if s := strings.TrimSpace(string(v)); s != "" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < 0 {
					return fmt.Errorf("%w: max_completion_tokens must be a non-negative integer, not %q", ErrInvalidForm, v)
				}
				r.MaxTokens, r.MaxTokensField = n, "max_completion_tokens"
			}
		case "prompt":
			r.prompt = v
		}
	}
	if !haveFile {
		return fmt.Errorf("%w: the form has no file", ErrInvalidForm)
	}
	for _, f := range []struct {
		name, v string
		dst     *bool
	}{{"stream", stream, &r.Stream}, {"stream_include_usage", include, &r.IncludeUsage}, {"stream_continuous_usage_stats", continuous, &r.ContinuousUsage}} {
		b, ok := formBool(f.v)
		if !ok {
			return fmt.Errorf("%w: %s must be a boolean, not %q", ErrInvalidForm, f.name, f.v)
		}
		*f.dst = b
	}
	return nil
}

// formBool reads a boolean form value as pydantic does; "" (absent) is
// false.
func formBool(v string) (b, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "false", "f", "n", "no", "off":
		return false, true
	case "1", "true", "t", "y", "yes", "on":
		return true, true
	}
	return false, false
}

// audioDuration estimates an audio file's length in seconds from its first
// bytes and its size: exactly for PCM WAV, whose header gives its byte
// rate, else at compressedBytesPerSecond.
func audioDuration(head []byte, size int64) (seconds float64, exact bool) {
	if len(head) >= 44 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WAVE" && string(head[12:16]) == "fmt " {
		rate := binary.LittleEndian.Uint32(head[28:32]) // bytes per second
		fmtLen := int64(binary.LittleEndian.Uint32(head[16:20]))
		if rate > 0 && fmtLen >= 16 && fmtLen < 1<<16 {
			data := size - 20 - fmtLen - 8 // the data chunk, or what follows fmt
			return max(float64(data), 0) / float64(rate), true
		}
	}
	return float64(size) / compressedBytesPerSecond, false
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
// last of its name, which vLLM reads.
func rewriteForm(body []byte, r *Request) ([]byte, error) {
	end := []byte("--" + r.boundary + "--")
	i := bytes.LastIndex(body, end)
	if r.boundary == "" || i < 0 {
		return nil, fmt.Errorf("%w: no closing boundary", ErrInvalidForm)
	}
	part := "--" + r.boundary + "\r\nContent-Disposition: form-data; name=\"stream_include_usage\"\r\n\r\ntrue\r\n"
	out := make([]byte, 0, len(body)+len(part))
	out = append(out, body[:i]...)
	out = append(out, part...)
	return append(out, body[i:]...), nil
}

// Transcript reads a non-streaming speech-to-text answer, which reports no
// tokens: it returns the count of its text (JSON's "text", or a text, SRT
// or VTT body without its cue numbers and timings) and the audio seconds
// its usage reports ({"type":"duration","seconds":N}), if any.
func Transcript(body []byte, c Counter) (tokens int64, seconds float64, haveSeconds bool) {
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '{' {
		var v struct {
			Text  string `json:"text"`
			Usage struct {
				Seconds *float64 `json:"seconds"`
			} `json:"usage"`
		}
		if json.Unmarshal(b, &v) == nil {
			if v.Usage.Seconds != nil && *v.Usage.Seconds >= 0 {
				seconds, haveSeconds = *v.Usage.Seconds, true
			}
			return countGenerated(c, v.Text), seconds, haveSeconds
		}
	}
	var text strings.Builder
	for line := range strings.Lines(string(body)) {
		l := strings.TrimSpace(line)
		if l == "WEBVTT" || strings.Contains(l, "-->") || isDigits(l) {
			continue
		}
		text.WriteString(line)
	}
	return countGenerated(c, text.String()), 0, false
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
