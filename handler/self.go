package handler

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/gate"
)

// SelfWindow is one window of the self-service answer.
type SelfWindow struct {
	Window    string    `json:"window"`
	Kind      string    `json:"kind"`
	Limit     int64     `json:"limit"`
	Used      int64     `json:"used"`
	Reserved  int64     `json:"reserved"`
	Remaining int64     `json:"remaining"`
	ResetsAt  time.Time `json:"resets_at,omitzero"`
}

// serveSelf shows callers their own plan, usage and remaining budget.
func (h *Handler) serveSelf(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		(&apiError{Status: 405, Type: "invalid_request_error", Code: "method_not_allowed", Message: "Use GET."}).write(w, r)
		return nil
	}
	st, err := h.state.Engine.Status(c.user.ID, c.eff.Limits)
	if err != nil {
		errInternal().write(w, r)
		return nil
	}
	out := struct {
		User        string       `json:"user"`
		Plan        string       `json:"plan"`
		KeyID       string       `json:"key_id,omitempty"`
		Models      []string     `json:"models,omitempty"`
		MaxParallel int          `json:"max_parallel,omitempty"`
		InFlight    int          `json:"in_flight"`
		Windows     []SelfWindow `json:"windows"`
	}{User: c.user.ID, Plan: c.eff.Plan, KeyID: c.keyID(), Models: c.eff.Models,
		MaxParallel: c.eff.Limits.MaxParallel, InFlight: h.state.Engine.InFlight(c.user.ID), Windows: []SelfWindow{}}
	for _, s := range st {
		out.Windows = append(out.Windows, SelfWindow{Window: s.Window.String(), Kind: s.Kind, Limit: s.Limit,
			Used: s.Used, Reserved: s.Reserved, Remaining: s.Remaining, ResetsAt: s.ResetsAt})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(out)
}

// serveModels answers GET /v1/models with only the models the caller's plan
// allows. The list is small, so it is buffered and filtered.
//
// The list is asked for uncompressed, since it is read here, and a list
// that cannot be read is not passed on: unfiltered, it would show the models
// the plan leaves out.
func (h *Handler) serveModels(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, c *caller) error {
	var buf bytes.Buffer
	r.Header.Del("Accept-Encoding")
	rec := caddyhttp.NewResponseRecorder(w, &buf, func(status int, _ http.Header) bool { return status == http.StatusOK })
	if err := next.ServeHTTP(rec, r); err != nil {
		if rec.Status() == 0 { // no answer at all: say so as the metered paths do
			h.logger.Warn("upstream failed", zap.Error(err))
			upstreamFailure(err).write(w, r)
			return nil
		}
		return err
	}
	if !rec.Buffered() {
		return nil
	}
	var list struct {
		Object string            `json:"object"`
		Data   []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		h.logger.Error("the upstream's model list is not JSON; not passed on", zap.Error(err))
		errUpstream(http.StatusBadGateway).write(w, r)
		return nil
	}
	kept := list.Data[:0]
	for _, m := range list.Data {
		var id struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(m, &id) == nil && gate.ModelAllowed(c.eff.Models, id.ID) {
			kept = append(kept, m)
		}
	}
	list.Data = kept
	body, err := json.Marshal(list)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body)
	return err
}
