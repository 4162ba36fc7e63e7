package meter

// Decoys (found reviewing the speech-to-text commits; each failed then):
// each test builds a form that vLLM's server (FastAPI/Starlette +
// python-multipart, audio decoded to samples by soundfile/libsndfile) read
// differently from ParseForm. Each asserts what vLLM reads; a gate that
// refuses the form (ErrInvalidForm) passes as well.
//
// The Starlette readings were checked by feeding the same bytes to
// starlette.formparsers.MultiPartParser (Starlette 0.26.1, python-multipart
// 0.0.5; the current python-multipart skips every "key*" parameter, see
// parse_options_header) and the WAV readings with soundfile 0.12 /
// libsndfile 1.2.

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// rawPart is one part of a multipart body, headers given verbatim.
func rawPart(boundary string, headers []string, body []byte) []byte {
	b := []byte("--" + boundary + "\r\n")
	for _, h := range headers {
		b = append(b, h+"\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	return append(b, "\r\n"...)
}

func rawClose(boundary string) []byte { return []byte("--" + boundary + "--\r\n") }

const decoyBoundary = "decoyBoundary0123"

// decoyForm is: model=sim-model, a 1 s file, then the parts given.
func decoyForm(parts ...[]byte) (body []byte, contentType string) {
	b := rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="model"`}, []byte("sim-model"))
	b = append(b, rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="file"; filename="a.wav"`}, testWAV(1))...)
	for _, p := range parts {
		b = append(b, p...)
	}
	return append(b, rawClose(decoyBoundary)...), "multipart/form-data; boundary=" + decoyBoundary
}

// checkDecoy fails unless ParseForm refuses the form or reads what vLLM
// reads: the model and (if seconds > 0) the audio's length.
func checkDecoy(t *testing.T, body []byte, ct, model string, seconds float64) {
	t.Helper()
	var r Request
	err := r.ParseForm(EndpointTranscriptions, body, ct)
	if err != nil {
		return // refused: vLLM never sees it
	}
	if r.Model != model {
		t.Errorf("the gate admits model %q; vLLM transcribes with model %q", r.Model, model)
	}
	if seconds > 0 && r.AudioSeconds < seconds {
		t.Errorf("the gate reserves %v s of audio (exact %v, %d prompt tokens); vLLM transcribes %v s (%d prompt tokens)",
			r.AudioSeconds, r.AudioExact, AudioPromptTokens(r.AudioSeconds, 0), seconds, AudioPromptTokens(seconds, 0))
	}
}

// TestAudioDecoyDuplicateContentDisposition: a part with two
// Content-Disposition headers. Go's textproto (Header.Get) takes the
// first, Starlette's parser keeps the last (on_header_end overwrites
// content_disposition). The gate reads a field "x" and ignores it; vLLM
// reads model=forbidden (the last "model" wins), and the file that is
// 300 s long, not the 1 s decoy.
func TestAudioDecoyDuplicateContentDisposition(t *testing.T) {
	body, ct := decoyForm(
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="x"`, `Content-Disposition: form-data; name="model"`}, []byte("forbidden")),
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="y"; filename="y.wav"`, `Content-Disposition: form-data; name="file"; filename="big.wav"`}, testWAV(300)),
	)
	checkDecoy(t, body, ct, "forbidden", 300)
}

// TestAudioDecoyDispositionNotFormData: Go's Part.FormName is "" unless
// the disposition is form-data; Starlette never looks at the disposition
// type, only at its name parameter.
func TestAudioDecoyDispositionNotFormData(t *testing.T) {
	body, ct := decoyForm(
		rawPart(decoyBoundary, []string{`Content-Disposition: attachment; name="model"`}, []byte("forbidden")),
		rawPart(decoyBoundary, []string{`Content-Disposition: inline; name="file"; filename="big.wav"`}, testWAV(300)),
	)
	checkDecoy(t, body, ct, "forbidden", 300)
}

// TestAudioDecoyDuplicateNameParam: name given twice in one header. Go's
// mime.ParseMediaType fails ("duplicate parameter name"), so FormName is
// "" and the gate skips the part; python-multipart keeps the last value.
func TestAudioDecoyDuplicateNameParam(t *testing.T) {
	body, ct := decoyForm(
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="x"; name="model"`}, []byte("forbidden")),
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="y"; name="file"; filename="big.wav"`}, testWAV(300)),
	)
	checkDecoy(t, body, ct, "forbidden", 300)
}

// TestAudioDecoyBareParameter: a parameter without a value after the
// filename. Go's ParseMediaType fails, the gate skips the part; for
// python-multipart it is just another option, and the part is the last
// "file" upload.
func TestAudioDecoyBareParameter(t *testing.T) {
	body, ct := decoyForm(
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="file"; filename="big.wav"; x`}, testWAV(300)),
	)
	checkDecoy(t, body, ct, "sim-model", 300)
}

// TestAudioDecoyRFC2231Name: name*= (RFC 2231). Go decodes it and lets it
// override name; python-multipart ignores every "key*" parameter (RFC 7578
// forbids them) and keeps the plain name.
func TestAudioDecoyRFC2231Name(t *testing.T) {
	body, ct := decoyForm(
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="model"; name*=utf-8''x`}, []byte("forbidden")),
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="file"; name*=utf-8''y; filename="big.wav"`}, testWAV(300)),
	)
	checkDecoy(t, body, ct, "forbidden", 300)
}

// TestAudioDecoyRFC2231Boundary: the Content-Type says boundary=B1;
// boundary*=utf-8”B2. Go's mime.ParseMediaType takes B2, python-multipart
// (and so Starlette) B1. The body is two forms: vLLM's (B1) first, which
// python-multipart reads and ends at its closing delimiter, then the
// gate's (B2), which Go's reader finds after skipping vLLM's as preamble.
// The gate checks model sim-model and a 1 s file; vLLM transcribes 300 s
// with model forbidden. (Go's reader refuses a preamble line over 4 KiB:
// the audio has line feeds here, as any real recording has.)
func TestAudioDecoyRFC2231Boundary(t *testing.T) {
	big := testWAV(300)
	for i := 100; i < len(big); i += 1000 {
		big[i] = '\n'
	}
	var body []byte
	body = append(body, rawPart("B1", []string{`Content-Disposition: form-data; name="model"`}, []byte("forbidden"))...)
	body = append(body, rawPart("B1", []string{`Content-Disposition: form-data; name="file"; filename="big.wav"`}, big)...)
	body = append(body, rawClose("B1")...)
	body = append(body, rawPart("B2", []string{`Content-Disposition: form-data; name="model"`}, []byte("sim-model"))...)
	body = append(body, rawPart("B2", []string{`Content-Disposition: form-data; name="file"; filename="a.wav"`}, testWAV(1))...)
	body = append(body, rawClose("B2")...)
	checkDecoy(t, body, "multipart/form-data; boundary=B1; boundary*=utf-8''B2", "forbidden", 300)
}

// TestAudioDecoyCharsetUTF7: Starlette decodes every field name (and
// value) with the charset of the request's Content-Type
// (_user_safe_decode(options[b"name"], charset)). In UTF-7 "+AG0-odel" is
// "model" and "+AGY-ile" is "file"; the gate compares raw bytes.
func TestAudioDecoyCharsetUTF7(t *testing.T) {
	body, ct := decoyForm(
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="+AG0-odel"`}, []byte("forbidden")),
		rawPart(decoyBoundary, []string{`Content-Disposition: form-data; name="+AGY-ile"; filename="big.wav"`}, testWAV(300)),
	)
	checkDecoy(t, body, ct+"; charset=utf-7", "forbidden", 300)
}

// TestAudioDecoyWAVByteRate: audioDuration divides by the header's byte
// rate field and calls the result exact. Decoders ignore that field
// (libsndfile logs "Bytes/sec : 2147483647 (should be 32000)" and reads
// 60.000 s: frames = data bytes / block align, at the sample rate); vLLM's
// duration is the count of decoded samples over the sample rate. As the
// answer's duration is not read back for an "exact" WAV, the
// under-reservation is also what is charged for a non-streaming request.
func TestAudioDecoyWAVByteRate(t *testing.T) {
	wav := testWAV(60)
	binary.LittleEndian.PutUint32(wav[28:], 0x7fffffff) // byte rate: a lie
	body, ct := form(t, wav, "model", "sim-model")
	checkDecoy(t, body, ct, "sim-model", 60)
	if !bytes.Equal(wav[24:28], []byte{0x80, 0x3e, 0, 0}) {
		t.Fatal("the sample rate is 16 kHz")
	}
}

// TestAudioFormRefusesAmbiguousParameters: parameter spellings whose
// reading by python-multipart is not certain are refused: a key in capitals,
// a line break or an escape in a value.
func TestAudioFormRefusesAmbiguousParameters(t *testing.T) {
	for _, h := range []string{
		`Content-Disposition: form-data; NAME="model"`,
		`Content-Disposition: form-data; name="mo\"del"`,
		"Content-Disposition: form-data; name=model\rx",
	} {
		body, ct := decoyForm(rawPart(decoyBoundary, []string{h}, []byte("forbidden")))
		var r Request
		if err := r.ParseForm(EndpointTranscriptions, body, ct); err == nil {
			t.Errorf("%q: read as model %q", h, r.Model)
		}
	}
	for _, ct := range []string{"multipart/form-data; BOUNDARY=" + decoyBoundary, "multipart/form-data; boundary=" + decoyBoundary + "; charset=utf-8"} {
		body, _ := decoyForm()
		var r Request
		if err := r.ParseForm(EndpointTranscriptions, body, ct); err == nil {
			t.Errorf("%q: parsed", ct)
		}
	}
}

// TestAudioDecoyPlainParameterValues: a plain (unquoted) parameter value
// was taken up to the next ";" and trimmed of any Unicode space, where
// python-multipart stops at separators such as / : @ = and keeps the
// spaces Go trimmed: "name=model/x" was an unknown field to the gate and
// the model to vLLM, "name=model\v" the model to the gate and an unknown
// field to vLLM. Found by a differential run against Starlette 0.26.1 and
// python-multipart 0.0.5 (27,581 accepted forms, 816 read otherwise);
// plain values must be RFC 7230 tokens now.
func TestAudioDecoyPlainParameterValues(t *testing.T) {
	for _, disposition := range []string{
		"form-data; name=model/x", "form-data; name=model:", "form-data; name=model@x", "form-data; name=stream_continuous_usage_stats=",
		"form-data; name=model\v", "form-data; name=model\f", "form-data; name=\u00a0model", "form-data; name=prompt\u0085",
		"form-data; name=max_completion_tokens\u2028", "form-data; name=file@x; filename=\"b.wav\"", "form-data; name=\u2028file; filename=b.wav",
	} {
		body, ct := decoyForm(rawPart(decoyBoundary, []string{"Content-Disposition: " + disposition}, []byte("forbidden")))
		var r Request
		if err := r.ParseForm(EndpointTranscriptions, body, ct); err == nil {
			t.Errorf("%q: accepted (model %q)", disposition, r.Model)
		}
	}
	// Header names and the media type as Starlette compares them.
	for _, h := range []string{"Content-Di\u017fposition: form-data; name=\"model\"", "Content_Disposition: form-data; name=\"model\""} {
		body, ct := decoyForm(rawPart(decoyBoundary, []string{h}, []byte("forbidden")))
		var r Request
		if err := r.ParseForm(EndpointTranscriptions, body, ct); err == nil {
			t.Errorf("%q: accepted (model %q)", h, r.Model)
		}
	}
	body, _ := decoyForm()
	var r Request
	if err := r.ParseForm(EndpointTranscriptions, body, "Multipart/Form-Data; boundary="+decoyBoundary); err == nil {
		t.Error("a media type in capitals, which Starlette does not take for a form, was parsed")
	}
	// Plain tokens still are fine.
	plain := rawPart(decoyBoundary, []string{"Content-Disposition: form-data; name=stream"}, []byte("true"))
	body, ct := decoyForm(plain)
	if err := r.ParseForm(EndpointTranscriptions, body, ct); err != nil || !r.Stream || r.Model != "sim-model" {
		t.Errorf("plain token name: %+v %v", r, err)
	}
}
