package vllmsim

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/tokenizer"
)

// maxBodyBytes bounds a request body; vLLM has no such limit, but a test
// fixture should not be made to buffer gigabytes.
const maxBodyBytes = 64 << 20

// Server is the emulated vLLM server. It is an http.Handler: serve it with
// httptest.NewServer or an http.Server. It is safe for concurrent use.
type Server struct {
	cfg     Config
	tok     *tokenizer.Tokenizer
	models  []*modelStats
	byName  map[string]*modelStats
	keys    [][sha256.Size]byte
	created int64

	unhealthy atomic.Bool

	recMu sync.Mutex
	recs  []Recorded

	promptTokens       atomic.Int64
	enginePromptTokens atomic.Int64
	generationTokens   atomic.Int64
	requests           atomic.Int64
	aborted            atomic.Int64
	errored            atomic.Int64
}

// Counters are the emulator's own totals since New or the last Reset.
type Counters struct {
	// PromptTokens is the sum of the usage.prompt_tokens the server
	// reported, plus the prompts of aborted and failed requests that got
	// past prefill (the first token). Prompt tokens are counted once per
	// request, as in usage, even with n > 1.
	PromptTokens int64
	// GenerationTokens is the sum of the usage completion_tokens reported,
	// plus every token generated for requests that were aborted or failed
	// and so reported no usage, or that reported only part of it (a batch
	// chat request with stream, see lastDelta): what
	// vllm:generation_tokens_total shows.
	GenerationTokens int64
	// Requests counts inference requests that started generating (they
	// passed validation), whatever their outcome; a batch chat request
	// counts once.
	Requests int64
	// Aborted counts requests whose client went away before the end.
	Aborted int64
	// Errored counts requests ended by X-Sim-Error-After or
	// X-Sim-Crash-After.
	Errored int64
	// EnginePromptTokens is what vllm:prompt_tokens_total shows: like
	// PromptTokens but counted per sequence, n × prompt for n > 1.
	EnginePromptTokens int64
}

// New returns a server for cfg; zero fields take DefaultConfig's values.
// It loads the cl100k_base tokenizer and panics if that fails, which only a
// broken build can cause.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	tok, err := tokenizer.Get("cl100k_base")
	if err != nil {
		panic(fmt.Sprintf("vllmsim: %v", err))
	}
	s := &Server{
		cfg:     cfg,
		tok:     tok,
		byName:  make(map[string]*modelStats, len(cfg.ModelNames)),
		created: time.Now().Unix(),
	}
	for _, name := range cfg.ModelNames {
		if _, dup := s.byName[name]; dup {
			continue
		}
		m := newModelStats(name, cfg.MaxModelLen)
		s.models = append(s.models, m)
		s.byName[name] = m
	}
	for _, k := range append([]string{cfg.APIKey}, cfg.APIKeys...) {
		if k != "" {
			s.keys = append(s.keys, sha256.Sum256([]byte(k)))
		}
	}
	return s
}

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// SetHealthy makes GET /health answer 200 (true, the default) or 503, as
// vLLM does when its engine died.
func (s *Server) SetHealthy(ok bool) { s.unhealthy.Store(!ok) }

// Counters returns the current totals.
func (s *Server) Counters() Counters {
	return Counters{
		PromptTokens:       s.promptTokens.Load(),
		GenerationTokens:   s.generationTokens.Load(),
		Requests:           s.requests.Load(),
		Aborted:            s.aborted.Load(),
		Errored:            s.errored.Load(),
		EnginePromptTokens: s.enginePromptTokens.Load(),
	}
}

// Reset forgets the recorded requests and zeroes every counter, including
// those /metrics shows. Requests in flight keep running and count into the
// new totals when they finish.
func (s *Server) Reset() {
	s.recMu.Lock()
	s.recs = nil
	s.recMu.Unlock()
	s.promptTokens.Store(0)
	s.enginePromptTokens.Store(0)
	s.generationTokens.Store(0)
	s.requests.Store(0)
	s.aborted.Store(0)
	s.errored.Store(0)
	for _, m := range s.models {
		m.reset()
	}
}

// StreamOptions is a request's stream_options object as received.
type StreamOptions struct {
	IncludeUsage         *bool `json:"include_usage,omitempty"`
	ContinuousUsageStats *bool `json:"continuous_usage_stats,omitempty"`
}

// Recorded is one request as the server received it. The parsed fields are
// zero when the body is not a JSON object or lacks them.
type Recorded struct {
	Time                time.Time      `json:"time"`
	Method              string         `json:"method"`
	Path                string         `json:"path"`
	RawQuery            string         `json:"raw_query,omitempty"`
	Header              http.Header    `json:"header"`
	Body                []byte         `json:"-"`
	Model               string         `json:"model,omitempty"`
	Stream              bool           `json:"stream"`
	StreamOptions       *StreamOptions `json:"stream_options,omitempty"`
	MaxTokens           *int           `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int           `json:"max_completion_tokens,omitempty"`
	MaxOutputTokens     *int           `json:"max_output_tokens,omitempty"`
	N                   *int           `json:"n,omitempty"`
}

// MarshalJSON writes the body as a string, which is how GET /sim/requests
// shows it (a []byte would turn into base64).
func (r Recorded) MarshalJSON() ([]byte, error) {
	type plain Recorded
	return json.Marshal(struct {
		plain
		Body string `json:"body"`
	}{plain(r), string(r.Body)})
}

// Requests returns the recorded requests, oldest first (at most
// Config.RecordLimit of the newest). Requests to /sim/ are not recorded.
func (s *Server) Requests() []Recorded {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	recs := s.recs
	if lim := s.cfg.RecordLimit; lim > 0 && len(recs) > lim {
		recs = recs[len(recs)-lim:]
	}
	return append([]Recorded(nil), recs...)
}

func (s *Server) record(r *http.Request, body []byte, req *apiRequest) {
	lim := s.cfg.RecordLimit
	if lim < 0 {
		return
	}
	rec := Recorded{
		Time:     time.Now(),
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     body,
	}
	if req != nil {
		rec.Model = req.Model
		rec.Stream = req.Stream != nil && *req.Stream
		rec.MaxTokens = req.MaxTokens
		rec.MaxCompletionTokens = req.MaxCompletionTokens
		rec.MaxOutputTokens = req.MaxOutputTokens
		rec.N = req.N
		if so, err := req.streamOptions(); err == nil {
			rec.StreamOptions = so
		}
	}
	s.recMu.Lock()
	// Keep up to twice the limit so trimming copies once per lim requests.
	if len(s.recs) >= 2*lim {
		s.recs = append(s.recs[:0], s.recs[len(s.recs)-lim+1:]...)
	}
	s.recs = append(s.recs, rec)
	s.recMu.Unlock()
}

// apiRequest is the union of the request fields the emulator reads.
type apiRequest struct {
	Model                string          `json:"model"`
	Messages             json.RawMessage `json:"messages"`
	Prompt               json.RawMessage `json:"prompt"`
	Input                json.RawMessage `json:"input"`
	Instructions         *string         `json:"instructions"`
	Stream               *bool           `json:"stream"`
	StreamOptionsRaw     json.RawMessage `json:"stream_options"`
	MaxTokens            *int            `json:"max_tokens"`
	MaxTokensNull        bool            `json:"-"` // given as null: None to pydantic, unlike absence
	MaxCompletionTokens  *int            `json:"max_completion_tokens"`
	MaxOutputTokens      *int            `json:"max_output_tokens"`
	N                    *int            `json:"n"`
	Echo                 bool            `json:"echo"`
	AddGenerationPrompt  *bool           `json:"add_generation_prompt"`
	ContinueFinalMessage bool            `json:"continue_final_message"`
	Tools                json.RawMessage `json:"tools"`
	System               json.RawMessage `json:"system"`      // Anthropic Messages
	ToolChoice           json.RawMessage `json:"tool_choice"` // Anthropic Messages, chat batch
	UseBeamSearch        json.RawMessage `json:"use_beam_search"`
	EncodingFormat       string          `json:"encoding_format"`
	ReturnTokenStrs      bool            `json:"return_token_strs"`
	Tokens               []int           `json:"tokens"`
	poolingFields                        // /v1/rerank, /v1/score
}

func (q *apiRequest) stream() bool { return q.Stream != nil && *q.Stream }

// streamOptions parses stream_options; nil when absent or null.
func (q *apiRequest) streamOptions() (*StreamOptions, error) {
	raw := bytes.TrimSpace(q.StreamOptionsRaw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var so StreamOptions
	if raw[0] != '{' {
		return nil, errors.New("stream_options must be an object")
	}
	if err := json.Unmarshal(raw, &so); err != nil {
		return nil, err
	}
	// An explicit null is None to pydantic, which is falsy, where an
	// absent include_usage takes the default.
	var nulls struct {
		IncludeUsage json.RawMessage `json:"include_usage"`
	}
	if json.Unmarshal(raw, &nulls) == nil && string(nulls.IncludeUsage) == "null" {
		no := false
		so.IncludeUsage = &no
	}
	return &so, nil
}

// pyTruthy reports whether a JSON value is truthy in Python. vLLM's check
// is `if data.get("stream_options") and not data.get("stream")`, so an
// empty stream_options object passes without stream.
func pyTruthy(raw json.RawMessage) bool {
	v := string(bytes.TrimSpace(raw))
	switch v {
	case "", "null", "false", "0", `""`, "{}", "[]", "0.0":
		return false
	}
	if len(v) > 1 && (v[0] == '{' || v[0] == '[') {
		inner := strings.TrimSpace(v[1 : len(v)-1])
		return inner != ""
	}
	return true
}

// ServeHTTP routes a request the way vLLM's FastAPI app does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if strings.HasPrefix(path, "/sim/") {
		s.serveSim(w, r)
		return
	}
	h := w.Header()
	h.Set("Server", "uvicorn")
	if s.cfg.EnableRequestIDHeaders {
		id := r.Header.Get("X-Request-Id")
		if id == "" {
			id = s.hexID(32)
		}
		h.Set("X-Request-Id", id)
	}

	var body []byte
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			s.record(r, body, nil)
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeDetail(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
				return
			}
			s.writeError(w, s.validationError("Could not read the request body: "+err.Error()))
			return
		}
	}
	var req *apiRequest
	var parseErr error
	var form *audioForm
	task := audioTask(path)
	if task != "" && r.Method == http.MethodPost {
		// multipart/form-data, not JSON (audio.go)
		form = s.parseAudioForm(r.Header.Get("Content-Type"), body)
		req = form.recorded()
	} else if len(body) > 0 {
		req = new(apiRequest)
		if parseErr = json.Unmarshal(body, req); parseErr != nil {
			req = nil
		} else {
			var nulls struct {
				MaxTokens json.RawMessage `json:"max_tokens"`
			}
			if json.Unmarshal(body, &nulls) == nil {
				req.MaxTokensNull = string(nulls.MaxTokens) == "null"
			}
		}
	}
	s.record(r, body, req)

	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, []byte(`{"error":"Unauthorized"}`))
		return
	}

	var handle func(http.ResponseWriter, *http.Request, *apiRequest, simOverrides)
	method := http.MethodPost
	fail := s.writeError
	switch path {
	case "/v1/chat/completions":
		handle = s.handleChat
	case "/v1/chat/completions/batch":
		handle = s.handleChatBatch
	case "/v1/messages":
		handle, fail = s.handleMessages, s.writeMessagesError
	case "/v1/messages/count_tokens":
		handle, fail = s.handleCountTokens, s.writeMessagesError
	case "/v1/completions":
		handle = s.handleCompletions
	case "/v1/responses":
		handle = s.handleResponses
	case "/v1/embeddings":
		handle = s.handleEmbeddings
	case "/v1/rerank", "/rerank":
		handle = s.handleRerank
	case "/v1/score", "/score":
		handle = s.handleScore
	case "/tokenize":
		handle = s.handleTokenize
	case "/detokenize":
		handle = s.handleDetokenize
	case "/v1/audio/transcriptions", "/v1/audio/translations":
		// Form routes: no application/json check.
		if allowMethod(w, r, http.MethodPost) {
			s.handleAudio(w, r, task, form)
		}
		return
	case "/v1/models":
		if !allowMethod(w, r, http.MethodGet) {
			return
		}
		s.handleModels(w)
		return
	case "/health":
		if !allowMethod(w, r, http.MethodGet) {
			return
		}
		if s.unhealthy.Load() {
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	case "/version":
		if !allowMethod(w, r, http.MethodGet) {
			return
		}
		writeJSON(w, http.StatusOK, append(appendString([]byte(`{"version":`), s.cfg.Version), '}'))
		return
	case "/metrics":
		if !allowMethod(w, r, http.MethodGet) {
			return
		}
		s.handleMetrics(w)
		return
	default:
		writeDetail(w, http.StatusNotFound, "Not Found")
		return
	}
	if !allowMethod(w, r, method) {
		return
	}
	// vLLM's validate_json_request dependency.
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(mt) != "application/json" {
		fail(w, s.validationError("Unsupported Media Type: Only 'application/json' is allowed"))
		return
	}
	ov, err := parseOverrides(r.Header)
	if err != nil {
		fail(w, s.validationError(err.Error()))
		return
	}
	if ov.status != 0 {
		fail(w, apiError{status: ov.status, typ: errorTypeForStatus(ov.status), msg: "Simulated error (X-Sim-Status)"})
		return
	}
	if req == nil {
		msg := "JSON decode error"
		if parseErr != nil {
			msg += ": " + parseErr.Error()
		}
		fail(w, s.validationError(msg))
		return
	}
	handle(w, r, req, ov)
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	writeDetail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
	return false
}

// authorized applies vLLM's --api-key middleware: only paths starting with
// /v1 are guarded, OPTIONS never is, and the scheme is "bearer" in any case.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.keys) == 0 || r.Method == http.MethodOptions || !strings.HasPrefix(r.URL.Path, "/v1") {
		return true
	}
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(key))
	match := 0
	for _, k := range s.keys {
		match |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	return match == 1
}

// lookupModel resolves a request's model: empty means the first one.
func (s *Server) lookupModel(name string) (*modelStats, *apiError) {
	if name == "" {
		return s.models[0], nil
	}
	if m, ok := s.byName[name]; ok {
		return m, nil
	}
	return nil, &apiError{status: http.StatusNotFound, typ: "NotFoundError", msg: "The model `" + name + "` does not exist.", param: "model"}
}

// hexID returns n random hex digits.
func (s *Server) hexID(n int) string {
	b := make([]byte, 0, n)
	for len(b) < n {
		u := rand.Uint64()
		for i := 0; i < 16 && len(b) < n; i++ {
			b = append(b, hexDigits[u&0xF])
			u >>= 4
		}
	}
	return string(b)
}

// requestID is vLLM's response id: prefix + the client's X-Request-Id, or
// + a random hex id (16 digits, 32 with LongRequestIDs).
func (s *Server) requestID(prefix string, r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" {
		return prefix + id
	}
	n := 16
	if s.cfg.LongRequestIDs {
		n = 32
	}
	return prefix + s.hexID(n)
}

func (s *Server) handleModels(w http.ResponseWriter) {
	b := make([]byte, 0, 512)
	b = append(b, `{"object":"list","data":[`...)
	for i, m := range s.models {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, m.name)
		b = append(b, `,"object":"model","created":`...)
		b = strconv.AppendInt(b, s.created, 10)
		b = append(b, `,"owned_by":"vllm","root":`...)
		b = appendString(b, m.name)
		b = append(b, `,"parent":null,"max_model_len":`...)
		b = appendInt(b, s.cfg.MaxModelLen)
		b = append(b, `,"permission":[{"id":"modelperm-`...)
		b = append(b, s.hexID(32)...)
		b = append(b, `","object":"model_permission","created":`...)
		b = strconv.AppendInt(b, s.created, 10)
		b = append(b, `,"allow_create_engine":false,"allow_sampling":true,"allow_logprobs":true,"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,"organization":"*","group":null,"is_blocking":false}]}`...)
	}
	b = append(b, "]}"...)
	writeJSON(w, http.StatusOK, b)
}

// serveSim answers the emulator's control routes.
func (s *Server) serveSim(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/sim/requests":
		if !allowMethod(w, r, http.MethodGet) {
			return
		}
		recs := s.Requests()
		if recs == nil {
			recs = []Recorded{}
		}
		b, err := json.Marshal(recs)
		if err != nil {
			writeDetail(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, b)
	case "/sim/reset":
		if !allowMethod(w, r, http.MethodPost) {
			return
		}
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	case "/sim/counters":
		if !allowMethod(w, r, http.MethodGet) {
			return
		}
		b, _ := json.Marshal(s.Counters())
		writeJSON(w, http.StatusOK, b)
	default:
		writeDetail(w, http.StatusNotFound, "Not Found")
	}
}

// writeJSON sends a complete JSON body with a Content-Length, as Starlette's
// JSONResponse does.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeDetail sends FastAPI's default error body, {"detail": "..."}.
func writeDetail(w http.ResponseWriter, status int, detail string) {
	b := appendString([]byte(`{"detail":`), detail)
	writeJSON(w, status, append(b, '}'))
}
