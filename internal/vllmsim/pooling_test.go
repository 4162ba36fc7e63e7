package vllmsim

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/tokenizer"
)

const (
	rerankQuery = "What is the capital of France?"
	rerankBody  = `{"model":"sim-model","query":"What is the capital of France?","documents":["Paris is the capital of France.","Berlin is in Germany.","The capital of France is Paris."]`
)

var rerankDocs = []string{"Paris is the capital of France.", "Berlin is in Germany.", "The capital of France is Paris."}

// pairTokens is the emulator's count of one query–document pair:
// [CLS] query [SEP] document [SEP] with cl100k for the texts.
func pairTokens(t *testing.T, q, d string) int {
	t.Helper()
	tok, err := tokenizer.Get("cl100k_base")
	if err != nil {
		t.Fatal(err)
	}
	return tok.Count(q) + tok.Count(d) + 3
}

func TestRerankExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	resp := call(t, ts, http.MethodPost, "/v1/rerank", rerankBody+`,"top_n":2}`, "X-Request-Id", "r1")
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	body := string(raw)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	want := `{"id":"score-r1","model":"sim-model","usage":{"prompt_tokens":49,"total_tokens":49},"results":[` +
		`{"index":1,"document":{"text":"Berlin is in Germany.","multi_modal":null},"relevance_score":0.6946210265159607},` +
		`{"index":0,"document":{"text":"Paris is the capital of France.","multi_modal":null},"relevance_score":0.607071578502655}]}`
	if body != want {
		t.Errorf("body:\n%s\nwant:\n%s", body, want)
	}
	// usage counts every pair, also those top_n leaves out.
	sum := 0
	for _, d := range rerankDocs {
		sum += pairTokens(t, rerankQuery, d)
	}
	if p := int(decode(t, body)["usage"].(map[string]any)["prompt_tokens"].(float64)); p != sum {
		t.Errorf("prompt_tokens %d, pairs sum to %d", p, sum)
	}

	// Without top_n (or with 0, or more than the documents) every document
	// comes back, sorted by relevance_score.
	for _, extra := range []string{`}`, `,"top_n":0}`, `,"top_n":-1}`, `,"top_n":9}`} {
		_, body := post(t, ts, "/rerank", rerankBody+extra)
		res := decode(t, body)["results"].([]any)
		if len(res) != 3 {
			t.Fatalf("%s: %s", extra, body)
		}
		var idx []int
		last := 2.0
		for _, r := range res {
			r := r.(map[string]any)
			idx = append(idx, int(r["index"].(float64)))
			if s := r["relevance_score"].(float64); s > last || s <= 0 || s >= 1 {
				t.Errorf("score %v after %v", s, last)
			} else {
				last = s
			}
		}
		if idx[0] != 1 || idx[1] != 0 || idx[2] != 2 {
			t.Errorf("%s: order %v", extra, idx)
		}
	}

	// Equal scores keep the documents' order (Python's stable sort); a
	// bare string is one document.
	_, body = post(t, ts, "/v1/rerank", `{"query":"q","documents":["b","a","b"]}`)
	res := decode(t, body)["results"].([]any)
	var bs []int
	for _, r := range res {
		if r := r.(map[string]any); r["document"].(map[string]any)["text"] == "b" {
			bs = append(bs, int(r["index"].(float64)))
		}
	}
	if len(bs) != 2 || bs[0] != 0 || bs[1] != 2 {
		t.Errorf("ties %v in %s", bs, body)
	}
	_, body = post(t, ts, "/v1/rerank", `{"query":"q","documents":"a"}`, "X-Request-Id", "r2")
	if want := `{"id":"score-r2","model":"sim-model","usage":{"prompt_tokens":5,"total_tokens":5},"results":[{"index":0,"document":{"text":"a","multi_modal":null},"relevance_score":` +
		string(appendScore(nil, relevance("q", "a"))) + `}]}`; body != want {
		t.Errorf("bare string:\n%s\nwant:\n%s", body, want)
	}
}

func TestRerankLegacy(t *testing.T) {
	_, ts := start(t, Config{LegacyRerank: true})
	_, body := post(t, ts, "/v1/rerank", rerankBody+`,"top_n":1}`, "X-Request-Id", "old")
	want := `{"id":"rerank-old","model":"sim-model","usage":{"total_tokens":49},"results":[` +
		`{"index":1,"document":{"text":"Berlin is in Germany.","multi_modal":null},"relevance_score":0.6946210265159607}]}`
	if body != want {
		t.Errorf("body:\n%s\nwant:\n%s", body, want)
	}
	_, body = post(t, ts, "/v1/rerank", rerankBody+`}`)
	if got := normalize(body); !strings.HasPrefix(got, `{"id":"rerank-X","model":"sim-model","usage":{"total_tokens":49},"results":[{"index":1,`) {
		t.Errorf("random id: %s", body)
	}
}

func TestScoreExactBytes(t *testing.T) {
	_, ts := start(t, Config{})
	want := `{"id":"score-s1","object":"list","created":0,"model":"sim-model","data":[` +
		`{"index":0,"object":"score","score":0.607071578502655},` +
		`{"index":1,"object":"score","score":0.6946210265159607}],` +
		`"usage":{"prompt_tokens":32,"total_tokens":32,"completion_tokens":0,"prompt_tokens_details":null,"completion_tokens_details":null}}`
	sum := pairTokens(t, rerankQuery, rerankDocs[0]) + pairTokens(t, rerankQuery, rerankDocs[1])
	// Every request shape of vLLM's ScoreRequest union, 1:N.
	for _, names := range [][2]string{{"text_1", "text_2"}, {"queries", "documents"}, {"queries", "items"}, {"data_1", "data_2"}} {
		body := `{"` + names[0] + `":"What is the capital of France?","` + names[1] + `":["Paris is the capital of France.","Berlin is in Germany."]}`
		status, got := post(t, ts, "/v1/score", body, "X-Request-Id", "s1")
		if status != 200 || normalize(got) != want {
			t.Errorf("%v: %d\n%s\nwant:\n%s", names, status, got, want)
		}
		if p, c := usageOf(t, decode(t, got)["usage"]); p != sum || c != 0 {
			t.Errorf("usage %d/%d, pairs sum to %d", p, c, sum)
		}
	}
	// N:N pairs the lists index by index, and a list of one is 1:1.
	_, got := post(t, ts, "/score", `{"text_1":["q1","q2"],"text_2":["d1","d2"]}`)
	data := decode(t, got)["data"].([]any)
	for i, pair := range [][2]string{{"q1", "d1"}, {"q2", "d2"}} {
		want := string(appendScore(nil, relevance(pair[0], pair[1])))
		if s := string(appendScore(nil, float32(data[i].(map[string]any)["score"].(float64)))); s != want {
			t.Errorf("pair %d: %s, want %s", i, s, want)
		}
	}
	if p, _ := usageOf(t, decode(t, got)["usage"]); p != pairTokens(t, "q1", "d1")+pairTokens(t, "q2", "d2") {
		t.Errorf("N:N usage %d", p)
	}
}

func TestScoringValidation(t *testing.T) {
	sim, ts := start(t, Config{MaxModelLen: 64})
	long := strings.Repeat(" a", 70)
	for _, tc := range []struct {
		path, body string
		status     int
		typ, msg   string
	}{
		{"/v1/rerank", `{"documents":["a"]}`, 400, "Bad Request", "Field required: query"},
		{"/v1/rerank", `{"query":"q"}`, 400, "Bad Request", "Field required: documents"},
		{"/v1/rerank", `{"query":["q"],"documents":["a"]}`, 400, "Bad Request", ""},
		{"/v1/rerank", `{"query":"q","documents":[1]}`, 400, "Bad Request", ""},
		{"/v1/rerank", `{"query":"q","documents":["a"],"top_n":"x"}`, 400, "Bad Request", ""},
		{"/v1/rerank", `{"query":"q","documents":["a"],"truncate_prompt_tokens":-2}`, 400, "Bad Request", ""},
		{"/v1/rerank", `{"query":"q","documents":[]}`, 400, "BadRequestError", "At least one text_pair element must be given"},
		{"/v1/rerank", `{"query":{"content":[{"type":"text","text":"q"}]},"documents":["a"]}`, 400, "BadRequestError", "MultiModalParam is not supported for BertForSequenceClassification"},
		{"/v1/rerank", `{"query":"q","documents":["a"],"model":"nope"}`, 404, "NotFoundError", "The model `nope` does not exist."},
		{"/v1/rerank", `{"query":"q","documents":["a"],"truncate_prompt_tokens":65}`, 400, "BadRequestError", "truncate_prompt_tokens value is greater than max_model_len. Please, select a smaller truncation size."},
		{"/v1/rerank", `{"query":"q","documents":["` + long + `"]}`, 400, "BadRequestError", "This model's maximum context length is 64 tokens. However, you requested 74 tokens in the input for embedding generation. Please reduce the length of the input."},
		{"/v1/score", `{"text_1":"q","text_2":["` + long + `"]}`, 400, "BadRequestError", "This model's maximum context length is 64 tokens. However, you requested 74 tokens in the input for score. Please reduce the length of the input."},
		{"/v1/score", `{"text_1":"q"}`, 400, "Bad Request", "Field required: text_1 and text_2 (or queries and documents, queries and items, data_1 and data_2)"},
		{"/v1/score", `{"text_1":["a","b"],"text_2":["a","b","c"]}`, 400, "BadRequestError", "Input lengths must be either 1:1, 1:N or N:N"},
		{"/v1/score", `{"text_1":[],"text_2":["a"]}`, 400, "BadRequestError", "At least one text element must be given"},
		{"/v1/score", `{"queries":"q","documents":[]}`, 400, "BadRequestError", "At least one text_pair element must be given"},
		{"/v1/score", `{"text_1":"q","text_2":"a"}`, 400, "Bad Request", "Unsupported Media Type: Only 'application/json' is allowed"},
	} {
		hdr := []string{}
		if strings.HasPrefix(tc.msg, "Unsupported") {
			hdr = []string{"Content-Type", "text/plain"}
		}
		status, body := post(t, ts, tc.path, tc.body, hdr...)
		if status != tc.status {
			t.Errorf("%s %.60s: %d %s", tc.path, tc.body, status, body)
			continue
		}
		e := decode(t, body)["error"].(map[string]any)
		if e["type"] != tc.typ || int(e["code"].(float64)) != tc.status || (tc.msg != "" && e["message"] != tc.msg) {
			t.Errorf("%s %.60s: %s", tc.path, tc.body, body)
		}
	}
	// truncate_prompt_tokens caps each pair; -1 caps at max_model_len.
	_, body := post(t, ts, "/v1/rerank", `{"query":"q","documents":["`+long+`","a"],"truncate_prompt_tokens":10}`)
	if p := decode(t, body)["usage"].(map[string]any)["prompt_tokens"].(float64); p != 10+5 {
		t.Errorf("truncated usage %v: %s", p, body)
	}
	_, body = post(t, ts, "/v1/score", `{"text_1":"q","text_2":"`+long+`","truncate_prompt_tokens":-1}`)
	if p, _ := usageOf(t, decode(t, body)["usage"]); p != 64 {
		t.Errorf("truncated usage %v: %s", p, body)
	}
	if c := sim.Counters(); c.Requests != 2 || c.PromptTokens != 15+64 {
		t.Errorf("failed validations counted: %+v", c)
	}
}

// Scoring requests count like embeddings: one request, one engine prompt
// per pair, prompt tokens only.
func TestScoringCounters(t *testing.T) {
	sim, ts := start(t, Config{})
	_, a := post(t, ts, "/v1/rerank", rerankBody+`,"top_n":1}`)
	_, b := post(t, ts, "/v1/score", `{"text_1":"x","text_2":["y","z"]}`)
	pa := int(decode(t, a)["usage"].(map[string]any)["total_tokens"].(float64))
	pb, _ := usageOf(t, decode(t, b)["usage"])
	if status, body := post(t, ts, "/v1/score", `{"text_1":"x","text_2":"y"}`, "X-Sim-Error-After", "0"); status != 500 || !strings.Contains(body, `"type":"InternalServerError"`) {
		t.Errorf("error after: %d %s", status, body)
	}
	pc := pairTokens(t, "x", "y")
	c := sim.Counters()
	if c.Requests != 3 || c.Errored != 1 || c.PromptTokens != int64(pa+pb+pc) || c.EnginePromptTokens != c.PromptTokens || c.GenerationTokens != 0 {
		t.Errorf("counters %+v, usage %d+%d+%d", c, pa, pb, pc)
	}
	m := metrics(t, ts)
	if m[`vllm:prompt_tokens_total{`+modelLabels+`}`] != float64(pa+pb+pc) ||
		m[`vllm:request_success_total{`+modelLabels+`,finished_reason="stop"}`] != 3+2+1 ||
		m[`vllm:request_prompt_tokens_count{`+modelLabels+`}`] != 3+2+1 {
		t.Errorf("metrics %v", m)
	}
	// The X-Sim-Error-After pair was processed: "stop", as for embeddings.
	recs := sim.Requests()
	if len(recs) != 4 || recs[0].Path != "/v1/rerank" || recs[0].Model != "sim-model" || recs[1].Path != "/v1/score" {
		t.Errorf("recorded %+v", recs)
	}
	// Same request, same bytes but the id (and created).
	_, a2 := post(t, ts, "/v1/rerank", rerankBody+`,"top_n":1}`)
	if a2 == a || normalize(a2) != normalize(a) {
		t.Errorf("not deterministic:\n%s\n%s", a, a2)
	}
}

// Only the /v1 forms are guarded by --api-key.
func TestScoringAPIKey(t *testing.T) {
	_, ts := start(t, Config{APIKey: "k"})
	for path, want := range map[string]int{"/v1/rerank": 401, "/rerank": 200, "/v1/score": 401, "/score": 200} {
		body := `{"query":"q","documents":["a"]}`
		if strings.HasSuffix(path, "score") {
			body = `{"text_1":"q","text_2":"a"}`
		}
		if status, got := post(t, ts, path, body); status != want {
			t.Errorf("%s: %d %s", path, status, got)
		}
		if status, _ := post(t, ts, path, body, "Authorization", "Bearer k"); status != 200 {
			t.Errorf("%s with key: %d", path, status)
		}
	}
}
