package vllmsim

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"time"
)

// handleEmbeddings answers /v1/embeddings with deterministic unit vectors
// derived from each input. Only prompt tokens are counted.
func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	inputs, err := parsePrompts(req.Input)
	if err != nil {
		s.writeError(w, s.validationError(err.Error()))
		return
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		s.writeError(w, s.validationError("encoding_format must be 'float' or 'base64'"))
		return
	}
	m, aerr := s.lookupModel(req.Model)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	choices := make([]choice, len(inputs))
	total := 0
	for i, in := range inputs {
		n := in.count(s.tok)
		if n >= s.cfg.MaxModelLen {
			s.writeError(w, badRequest("This model's maximum context length is "+strconv.Itoa(s.cfg.MaxModelLen)+" tokens. However, your request has "+strconv.Itoa(n)+" input tokens. Please reduce the length of the input.", "input_tokens"))
			return
		}
		choices[i] = choice{index: i, prompt: n, finish: "stop"}
		total += n
	}
	s.runPooling(w, r, m, choices, total, ov, func() {
		dim := s.cfg.EmbeddingDim
		b := make([]byte, 0, 256+len(inputs)*(dim*24+64))
		b = append(b, `{"id":`...)
		b = appendString(b, s.requestID("embd-", r))
		b = append(b, `,"object":"list","created":`...)
		b = strconv.AppendInt(b, time.Now().Unix(), 10)
		b = append(b, `,"model":`...)
		b = appendString(b, m.name)
		b = append(b, `,"data":[`...)
		vec := make([]float32, dim)
		raw := make([]byte, 4*dim)
		for i, in := range inputs {
			if i > 0 {
				b = append(b, ',')
			}
			embed(vec, in)
			b = append(b, `{"index":`...)
			b = appendInt(b, i)
			b = append(b, `,"object":"embedding","embedding":`...)
			if req.EncodingFormat == "base64" {
				for j, f := range vec {
					binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
				}
				b = append(b, '"')
				b = base64.StdEncoding.AppendEncode(b, raw)
				b = append(b, '"')
			} else {
				b = append(b, '[')
				for j, f := range vec {
					if j > 0 {
						b = append(b, ',')
					}
					b = strconv.AppendFloat(b, float64(f), 'g', -1, 64)
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		b = append(b, `],"usage":`...)
		b = s.appendUsage(b, total, 0, usageBody)
		b = append(b, '}')
		writeJSON(w, http.StatusOK, b)
	})
}

// embed fills vec with a unit vector that depends only on the input.
func embed(vec []float32, in promptInput) {
	h := fnv.New64a()
	if in.isIDs {
		var buf [8]byte
		for _, id := range in.ids {
			binary.LittleEndian.PutUint64(buf[:], uint64(id))
			_, _ = h.Write(buf[:])
		}
	} else {
		_, _ = h.Write([]byte(in.text))
	}
	x := h.Sum64() | 1
	var norm float64
	for i := range vec {
		// xorshift64*: cheap, deterministic, good enough to look random.
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		v := float64(int64(x*2685821657736338717)) / math.MaxInt64
		vec[i] = float32(v)
		norm += v * v
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	for i := range vec {
		vec[i] = float32(float64(vec[i]) / norm)
	}
}
