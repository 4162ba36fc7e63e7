package itest

// Decoys of speech to text: requests shaped so that the gate charged less
// than the emulator (vLLM) reports, or answered differently from vLLM, when
// it first metered these endpoints (found by a review; each failed then).

import (
	"bytes"
	le "encoding/binary"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// TestAudioDecoyUsageInEpilogue: rewriteForm put its stream_include_usage
// part before the LAST "--boundary--" in the body. A client that added a
// copy of the closing delimiter after the real one (the epilogue, which
// RFC 2046 says to ignore, and which Go's reader, the emulator's, and
// python-multipart, which stops in its END state, all ignore) got the
// gate's part written into the epilogue: vLLM never saw it and sent no
// usage chunk, and the stream the gate counts exactly was an estimate. A
// form with an epilogue is refused now; the part goes before the closing
// delimiter the gate read.
func TestAudioDecoyUsageInEpilogue(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 5000}, global: bigPlan, site: "plan big"})
	body, ct := audioForm(t, vllmsim.WAV(70, 3), "model", "sim-model", "stream", "true")
	_, params, _ := strings.Cut(ct, "boundary=")
	refused := mustStatus(t, e.post("/v1/audio/transcriptions", token(t, "epi", nil), append(body, "\r\n--"+params+"--"...), "Content-Type", ct), 400)
	if !bytes.Contains(refused, []byte(`"code":"invalid_form"`)) || e.sim.Counters().Requests != 0 {
		t.Fatalf("a form with an epilogue: %s", refused)
	}
	b := mustStatus(t, e.post("/v1/audio/transcriptions", token(t, "epi", nil), body, "Content-Type", ct), 200)
	if !bytes.HasSuffix(b, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream %.300s", b)
	}
	r := e.waitRecords("epi", 1)[0]
	c := e.sim.Counters()
	if r.Estimated || r.PromptTokens != c.PromptTokens || r.CompletionTokens != c.GenerationTokens {
		t.Errorf("record %+v (estimated %v); the emulator counted %d + %d: vLLM never got the gate's stream_include_usage",
			r, r.Estimated, c.PromptTokens, c.GenerationTokens)
	}
}

// lowRateWAV is a valid WAV that the gate's exact reader does not take: a
// LIST chunk before fmt (as many encoders write it), 8-bit mono PCM at
// rate Hz, so rate bytes a second. libsndfile and the emulator read its
// true length; the gate falls back to 8,000 bytes a second.
func lowRateWAV(seconds float64, rate int) []byte {
	n := int(seconds * float64(rate))
	var b []byte
	b = append(b, "RIFF"...)
	b = le.LittleEndian.AppendUint32(b, uint32(4+12+24+8+n))
	b = append(b, "WAVE"...)
	b = append(b, "LIST"...)
	b = le.LittleEndian.AppendUint32(b, 4)
	b = append(b, "INFO"...)
	b = append(b, "fmt "...)
	b = le.LittleEndian.AppendUint32(b, 16)
	b = le.LittleEndian.AppendUint16(b, 1) // PCM
	b = le.LittleEndian.AppendUint16(b, 1) // mono
	b = le.LittleEndian.AppendUint32(b, uint32(rate))
	b = le.LittleEndian.AppendUint32(b, uint32(rate)) // byte rate
	b = le.LittleEndian.AppendUint16(b, 1)
	b = le.LittleEndian.AppendUint16(b, 8)
	b = append(b, "data"...)
	b = le.LittleEndian.AppendUint32(b, uint32(n))
	x := uint32(7)
	for range n {
		x = x*1664525 + 1013904223
		b = append(b, byte(x>>24))
	}
	return b
}

// TestAudioDecoyLowByteRateBudget: TestAudioPlans shows a 10 s WAV (1,004
// prompt tokens) refused against a budget of 500. The same 10 s at 1 kHz
// 8-bit, with its fmt chunk after a LIST chunk, is 10 KB: the gate, which
// read a WAV only with fmt first, estimated 1.26 s (130 tokens) and
// admitted it.
func TestAudioDecoyLowByteRateBudget(t *testing.T) {
	e := newEnv(t, envOpts{global: "plan small {\n\t\t\ttokens 500 per day\n\t\t}", site: "plan small"})
	body, ct := audioForm(t, lowRateWAV(10, 1000), "model", "sim-model")
	resp := e.post("/v1/audio/transcriptions", token(t, "poor", nil), body, "Content-Type", ct)
	b := readAll(t, resp.Body)
	if resp.StatusCode != 429 {
		t.Errorf("status %d (%.200s): 10 s of audio admitted against a budget of 500 tokens; the emulator counted a prompt of %d",
			resp.StatusCode, b, e.sim.Counters().PromptTokens)
	}
}

// TestAudioDecoyLowByteRateCharged: where vLLM's answer reports no
// duration (a translation, verbose_json, srt, vtt), the gate's estimate
// from the size is what it charges: it was 8 times less than vLLM's prompt
// for such a WAV, which it now reads exactly.
func TestAudioDecoyLowByteRateCharged(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 5000}, global: bigPlan, site: "plan big"})
	for _, c := range []struct{ path, format, user string }{
		{"/v1/audio/translations", "json", "lowtr"},
		{"/v1/audio/transcriptions", "verbose_json", "lowverbose"},
		{"/v1/audio/transcriptions", "srt", "lowsrt"},
	} {
		before := e.sim.Counters()
		body, ct := audioForm(t, lowRateWAV(60, 1000), "model", "sim-model", "response_format", c.format)
		mustStatus(t, e.post(c.path, token(t, c.user, nil), body, "Content-Type", ct), 200)
		prompt := e.sim.Counters().PromptTokens - before.PromptTokens
		r := e.waitRecords(c.user, 1)[0]
		if r.PromptTokens < prompt*9/10 {
			t.Errorf("%s %s: charged a prompt of %d; the emulator counted %d", c.path, c.format, r.PromptTokens, prompt)
		}
	}
}

// TestAudioDecoyContinuousUsageLeaks: a client streams with
// stream_continuous_usage_stats=true but without stream_include_usage.
// vLLM alone sends no usage at all (continuous stats need include_usage,
// spec §3). The gate added stream_include_usage=true and, unlike its chat
// rewrite (which turns continuous_usage_stats off for exactly this
// reason), left the continuous option on: every content chunk carried a
// "usage" the client did not get from vLLM.
func TestAudioDecoyContinuousUsageLeaks(t *testing.T) {
	e := newEnv(t, envOpts{sim: vllmsim.Config{TokensPerSecond: 5000}, global: bigPlan, site: "plan big"})
	body, ct := audioForm(t, vllmsim.WAV(5, 4), "model", "sim-model", "stream", "true", "stream_continuous_usage_stats", "true")
	direct := postForm(t, e.simURL+"/v1/audio/transcriptions", body, ct)
	if bytes.Contains(direct, []byte(`"usage"`)) {
		t.Fatalf("vLLM sent usage: %.300s", direct)
	}
	b := mustStatus(t, e.post("/v1/audio/transcriptions", token(t, "cont", nil), body, "Content-Type", ct), 200)
	if n := bytes.Count(b, []byte(`"usage"`)); n > 0 {
		t.Errorf("%d events through the gate carry a usage vLLM would not have sent:\n%.400s", n, b)
	}
}
