package vllmsim

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Scoring: POST /v1/rerank and /v1/score (and the unguarded /rerank and
// /score), as vLLM serves them for a cross-encoder model
// (vllm/entrypoints/pooling/scoring/{protocol,serving}.py; see
// /tmp/pooling.md for the versions read).
//
// Every query–document pair is one engine prompt. A cross-encoder's
// tokenizer encodes a pair as tokenizer(text=query, text_pair=document),
// BERT-style [CLS] query [SEP] document [SEP], so the emulator counts a
// pair as count(query) + count(document) + pairSpecialTokens in cl100k, and
// usage.prompt_tokens is the sum over the pairs: with one query and N
// documents the query is counted N times, as in vLLM. truncate_prompt_tokens
// caps each pair's count (-1: at max_model_len). Scores are deterministic
// sigmoid-like numbers in [0.001, 0.999] derived from the pair's text.

// pairSpecialTokens is what a BERT tokenizer adds to a text pair
// ([CLS], [SEP], [SEP]); XLM-R rerankers (bge-reranker) add 4.
const pairSpecialTokens = 3

// scoreArchitecture is the emulated model's architecture, named by vLLM's
// error for multimodal input to a text-only model.
const scoreArchitecture = "BertForSequenceClassification"

// poolingFields are the request fields of the scoring routes; apiRequest
// embeds them. They stay raw so that an odd value here cannot break the
// decoding of other routes' requests, where vLLM ignores them.
type poolingFields struct {
	Query                json.RawMessage `json:"query"`
	Documents            json.RawMessage `json:"documents"`
	TopN                 json.RawMessage `json:"top_n"`
	Queries              json.RawMessage `json:"queries"`
	Items                json.RawMessage `json:"items"`
	Data1                json.RawMessage `json:"data_1"`
	Data2                json.RawMessage `json:"data_2"`
	Text1                json.RawMessage `json:"text_1"`
	Text2                json.RawMessage `json:"text_2"`
	TruncatePromptTokens json.RawMessage `json:"truncate_prompt_tokens"`
}

func absent(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// scoreInputs parses a ScoreInput (a string, or {"content": [parts]} for
// multimodal models) or, when list is true, also a list of them. A
// multimodal input is a ValueError in vLLM for a text-only model.
func (s *Server) scoreInputs(name string, raw json.RawMessage, list bool) ([]string, *apiError) {
	raw = bytes.TrimSpace(raw)
	if absent(raw) {
		e := s.validationError("Field required: " + name)
		return nil, &e
	}
	items := []json.RawMessage{raw}
	if raw[0] == '[' && list {
		if err := json.Unmarshal(raw, &items); err != nil {
			e := s.validationError("Invalid " + name + ": " + err.Error())
			return nil, &e
		}
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var str string
		if json.Unmarshal(it, &str) == nil {
			out = append(out, str)
			continue
		}
		var mm struct {
			Content json.RawMessage `json:"content"`
		}
		if it = bytes.TrimSpace(it); len(it) > 0 && it[0] == '{' && json.Unmarshal(it, &mm) == nil && !absent(mm.Content) {
			e := badRequest("MultiModalParam is not supported for "+scoreArchitecture, "")
			return nil, &e
		}
		e := s.validationError("Invalid " + name + ": must be a string or {\"content\": [...]}")
		return nil, &e
	}
	return out, nil
}

// scorePairs returns the score request's two sides, trying vLLM's union
// of request shapes in its order; op names the operation in vLLM's
// context-length message, which misses ScoreQueriesItemsRequest.
func (s *Server) scorePairs(p *poolingFields) (d1, d2 []string, op string, aerr *apiError) {
	for _, sh := range []struct {
		n1, n2 string
		r1, r2 json.RawMessage
		op     string
	}{
		{"queries", "documents", p.Queries, p.Documents, "score"},
		{"queries", "items", p.Queries, p.Items, "embedding generation"},
		{"data_1", "data_2", p.Data1, p.Data2, "score"},
		{"text_1", "text_2", p.Text1, p.Text2, "score"},
	} {
		if absent(sh.r1) || absent(sh.r2) {
			continue
		}
		if d1, aerr = s.scoreInputs(sh.n1, sh.r1, true); aerr != nil {
			return
		}
		d2, aerr = s.scoreInputs(sh.n2, sh.r2, true)
		return d1, d2, sh.op, aerr
	}
	e := s.validationError("Field required: text_1 and text_2 (or queries and documents, queries and items, data_1 and data_2)")
	return nil, nil, "", &e
}

// relevance is the pair's deterministic score: a float32, as a model's
// output is, kept within [0.001, 0.999] so that it prints the same in Go's
// 'f' format as in Python's repr.
func relevance(q, d string) float32 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(q))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(d))
	u := float64(h.Sum64()>>11) / (1 << 53)
	return float32(0.001 + 0.998*u)
}

func appendScore(b []byte, f float32) []byte {
	return strconv.AppendFloat(b, float64(f), 'f', -1, 64)
}

// handleScoring answers /v1/rerank (rerank true) and /v1/score.
func (s *Server) handleScoring(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides, rerank bool) {
	var queries, docs []string
	var aerr *apiError
	op := "embedding generation" // vLLM's message for RerankRequest
	topN := 0
	if rerank {
		if queries, aerr = s.scoreInputs("query", req.Query, false); aerr == nil {
			docs, aerr = s.scoreInputs("documents", req.Documents, true)
		}
		if aerr == nil && !absent(req.TopN) && json.Unmarshal(req.TopN, &topN) != nil {
			e := s.validationError("Invalid top_n: must be an integer")
			aerr = &e
		}
	} else {
		queries, docs, op, aerr = s.scorePairs(&req.poolingFields)
	}
	truncate := 0
	if aerr == nil && !absent(req.TruncatePromptTokens) {
		if json.Unmarshal(req.TruncatePromptTokens, &truncate) != nil || truncate < -1 {
			e := s.validationError("Invalid truncate_prompt_tokens: must be an integer >= -1")
			aerr = &e
		}
	}
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	m, aerr := s.lookupModel(req.Model)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	switch {
	case truncate > s.cfg.MaxModelLen:
		s.writeError(w, badRequest("truncate_prompt_tokens value is greater than max_model_len. Please, select a smaller truncation size.", ""))
		return
	case truncate == -1:
		truncate = s.cfg.MaxModelLen
	}
	// vLLM's _validate_score_input_lens.
	switch {
	case len(queries) > 1 && len(queries) != len(docs):
		s.writeError(w, badRequest("Input lengths must be either 1:1, 1:N or N:N", ""))
		return
	case len(queries) == 0:
		s.writeError(w, badRequest("At least one text element must be given", ""))
		return
	case len(docs) == 0:
		s.writeError(w, badRequest("At least one text_pair element must be given", ""))
		return
	}
	choices := make([]choice, len(docs))
	total := 0
	for i, d := range docs {
		q := queries[min(i, len(queries)-1)]
		n := s.tok.Count(q) + s.tok.Count(d) + pairSpecialTokens
		if truncate > 0 {
			n = min(n, truncate)
		}
		if n > s.cfg.MaxModelLen {
			s.writeError(w, badRequest("This model's maximum context length is "+strconv.Itoa(s.cfg.MaxModelLen)+" tokens. However, you requested "+strconv.Itoa(n)+" tokens in the input for "+op+". Please reduce the length of the input.", "input_tokens"))
			return
		}
		choices[i] = choice{index: i, prompt: n, finish: "stop"}
		total += n
	}
	s.runPooling(w, r, m, choices, total, ov, func() {
		scores := make([]float32, len(docs))
		for i, d := range docs {
			scores[i] = relevance(queries[min(i, len(queries)-1)], d)
		}
		b := make([]byte, 0, 256+len(docs)*64)
		if rerank {
			b = s.appendRerank(b, r, m.name, docs, scores, topN, total)
		} else {
			b = append(b, `{"id":`...)
			b = appendString(b, s.requestID("score-", r))
			b = append(b, `,"object":"list","created":`...)
			b = strconv.AppendInt(b, time.Now().Unix(), 10)
			b = append(b, `,"model":`...)
			b = appendString(b, m.name)
			b = append(b, `,"data":[`...)
			for i, f := range scores {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"index":`...)
				b = appendInt(b, i)
				b = append(b, `,"object":"score","score":`...)
				b = appendScore(b, f)
				b = append(b, '}')
			}
			b = append(b, `],"usage":`...)
			b = s.appendUsage(b, total, 0, usageBody)
			b = append(b, '}')
		}
		writeJSON(w, http.StatusOK, b)
	})
}

// appendRerank appends a RerankResponse: results sorted by relevance
// (stable, so ties keep the documents' order), cut to top_n when
// 0 < top_n < len(documents).
func (s *Server) appendRerank(b []byte, r *http.Request, model string, docs []string, scores []float32, topN, total int) []byte {
	order := make([]int, len(docs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		switch {
		case scores[i] > scores[j]:
			return -1
		case scores[i] < scores[j]:
			return 1
		}
		return 0
	})
	if topN > 0 && topN < len(order) {
		order = order[:topN]
	}
	prefix := "score-" // ServingScores.request_id_prefix, 2026
	if s.cfg.LegacyRerank {
		prefix = "rerank-"
	}
	b = append(b, `{"id":`...)
	b = appendString(b, s.requestID(prefix, r))
	b = append(b, `,"model":`...)
	b = appendString(b, model)
	b = append(b, `,"usage":{`...)
	if !s.cfg.LegacyRerank {
		b = append(b, `"prompt_tokens":`...)
		b = appendInt(b, total)
		b = append(b, ',')
	}
	b = append(b, `"total_tokens":`...)
	b = appendInt(b, total)
	b = append(b, `},"results":[`...)
	for k, i := range order {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = appendInt(b, i)
		b = append(b, `,"document":{"text":`...)
		b = appendString(b, docs[i])
		b = append(b, `,"multi_modal":null},"relevance_score":`...)
		b = appendScore(b, scores[i])
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// runPooling runs a request that generates nothing (embeddings, scoring):
// it waits the TTFT, counts the prompts as prefilled and, unless the
// request was aborted or made to fail by X-Sim-*, calls write.
func (s *Server) runPooling(w http.ResponseWriter, r *http.Request, m *modelStats, choices []choice, total int, ov simOverrides, write func()) {
	g := s.newGeneration(m, choices, total, ov)
	ttft := s.cfg.TTFT
	if ov.hasTTFT {
		ttft = ov.ttft
	}
	if ttft > 0 {
		t := time.NewTimer(ttft)
		select {
		case <-r.Context().Done():
			t.Stop()
			g.finish(outcomeAborted)
			return
		case <-t.C:
		}
	}
	g.prefill()
	o := outcomeDone
	if g.failAfter >= 0 {
		o = g.fail
	}
	s.endJSON(w, g, o, write)
}

func (s *Server) handleRerank(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	s.handleScoring(w, r, req, ov, true)
}

func (s *Server) handleScore(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	s.handleScoring(w, r, req, ov, false)
}
