package vllmsim

import (
	"net/http"
	"strconv"
	"time"
)

// The Responses API (VLLM.md §2.3, §3.9). Objects follow the field order of
// the OpenAI SDK types vLLM serialises (alphabetical within an event, with
// sequence_number and type near the end). Streams are framed
// "event: <type>\ndata: <json>\n\n" and end with response.completed, never
// [DONE].

// responseInfo is what a Responses answer repeats in every object.
type responseInfo struct {
	id           string
	itemID       string
	model        string
	created      int64
	instructions *string
	maxOutput    *int
	role         string
}

func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request, req *apiRequest, ov simOverrides) {
	msgs, err := responsesMessages(req.Instructions, req.Input)
	if err != nil {
		s.writeError(w, s.validationError(err.Error()))
		return
	}
	m, aerr := s.lookupModel(req.Model)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	pb := promptBuilder{tok: s.tok, bos: s.cfg.ChatBOS}
	if err := renderChat(&pb, msgs, req.Tools, true, false, s.cfg.ResponseRole); err != nil {
		s.writeError(w, badRequest(err.Error(), "input"))
		return
	}
	length, finish, aerr := s.outputBudget(pb.n, req.MaxOutputTokens, 0, ov)
	if aerr != nil {
		s.writeError(w, *aerr)
		return
	}
	ri := &responseInfo{
		id:           s.requestID("resp_", r),
		itemID:       "msg_" + s.hexID(16),
		model:        m.name,
		created:      time.Now().Unix(),
		instructions: req.Instructions,
		maxOutput:    req.MaxOutputTokens,
		role:         s.cfg.ResponseRole,
	}
	g := s.newGeneration(m, []choice{s.newChoice(0, pb.n, length, finish)}, pb.n, ov)

	if !req.stream() {
		o := g.run(r.Context(), discard{})
		s.endJSON(w, g, o, func() {
			writeJSON(w, http.StatusOK, s.appendResponse(nil, ri, g, true))
		})
		return
	}
	sw, err := startStream(w)
	if err != nil {
		g.finish(outcomeAborted)
		return
	}
	rs := &responsesStream{s: s, sw: sw, g: g, ri: ri}
	if rs.sendResponse("response.created") != nil || rs.sendResponse("response.in_progress") != nil {
		g.finish(outcomeAborted)
		return
	}
	o := g.run(r.Context(), rs)
	g.finish(o)
	switch o {
	case outcomeAborted:
	case outcomeCrash:
		panic(http.ErrAbortHandler)
	case outcomeError:
		b := rs.begin("error")
		b = append(b, `{"code":"InternalServerError","message":"Internal server error","param":null`...)
		_ = rs.end(b, "error")
	default:
		_ = rs.finishEvents()
	}
}

// appendResponse appends a Response object: in progress (no output, usage
// null) or final (status completed, or incomplete when max_output_tokens
// cut the answer).
func (s *Server) appendResponse(b []byte, ri *responseInfo, g *generation, final bool) []byte {
	c := &g.choices[0]
	b = append(b, `{"id":`...)
	b = appendString(b, ri.id)
	b = append(b, `,"created_at":`...)
	b = strconv.AppendInt(b, ri.created, 10)
	b = append(b, `,"incomplete_details":`...)
	status := "in_progress"
	if final {
		status = "completed"
		if c.finish == "length" && c.done() {
			status = "incomplete"
		}
	}
	if status == "incomplete" {
		b = append(b, `{"reason":"max_output_tokens"}`...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"instructions":`...)
	if ri.instructions != nil {
		b = appendString(b, *ri.instructions)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"metadata":null,"model":`...)
	b = appendString(b, ri.model)
	b = append(b, `,"object":"response","output":[`...)
	if final {
		b = s.appendOutputItem(b, ri, c, "completed")
	}
	b = append(b, `],"parallel_tool_calls":true,"temperature":null,"tool_choice":"auto","tools":[],"top_p":null,"background":false,"max_output_tokens":`...)
	if ri.maxOutput != nil {
		b = appendInt(b, *ri.maxOutput)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"max_tool_calls":null,"previous_response_id":null,"prompt":null,"reasoning":null,"service_tier":"auto","status":"`...)
	b = append(b, status...)
	b = append(b, `","text":null,"top_logprobs":null,"truncation":"disabled","usage":`...)
	if final {
		b = append(b, `{"input_tokens":`...)
		b = appendInt(b, g.prompt)
		b = append(b, `,"input_tokens_details":{"cached_tokens":0},"output_tokens":`...)
		b = appendInt(b, g.completionTokens())
		b = append(b, `,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":`...)
		b = appendInt(b, g.prompt+g.completionTokens())
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	return append(b, `,"user":null}`...)
}

// appendOutputItem appends the message output item; an in-progress item
// has no content yet.
func (s *Server) appendOutputItem(b []byte, ri *responseInfo, c *choice, status string) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, ri.itemID)
	b = append(b, `,"content":[`...)
	if status == "completed" {
		b = appendOutputText(b, c)
	}
	b = append(b, `],"role":`...)
	b = appendString(b, ri.role)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	return append(b, `","type":"message"}`...)
}

// appendOutputText appends an output_text content part holding the text
// generated so far.
func appendOutputText(b []byte, c *choice) []byte {
	b = append(b, `{"annotations":[],"text":`...)
	b = appendJSONText(b, "", c)
	return append(b, `,"type":"output_text","logprobs":null}`...)
}

// responsesStream writes the Responses API's typed events.
type responsesStream struct {
	s   *Server
	sw  *streamWriter
	g   *generation
	ri  *responseInfo
	seq int
}

// begin starts an event; the caller appends the JSON object up to (not
// including) sequence_number and calls end.
func (rs *responsesStream) begin(typ string) []byte {
	b := append(rs.sw.buf[:0], "event: "...)
	b = append(b, typ...)
	return append(b, "\ndata: "...)
}

// end appends sequence_number and type, closes the object and sends it.
func (rs *responsesStream) end(b []byte, typ string) error {
	b = append(b, `,"sequence_number":`...)
	b = appendInt(b, rs.seq)
	rs.seq++
	b = append(b, `,"type":"`...)
	b = append(b, typ...)
	b = append(b, "\"}\n\n"...)
	return rs.sw.send(b)
}

func (rs *responsesStream) sendResponse(typ string) error {
	b := rs.begin(typ)
	b = append(b, `{"response":`...)
	b = rs.s.appendResponse(b, rs.ri, rs.g, typ == "response.completed")
	return rs.end(b, typ)
}

func (rs *responsesStream) itemEvent(typ, status string) error {
	b := rs.begin(typ)
	b = append(b, `{"item":`...)
	b = rs.s.appendOutputItem(b, rs.ri, &rs.g.choices[0], status)
	b = append(b, `,"output_index":0`...)
	return rs.end(b, typ)
}

func (rs *responsesStream) partEvent(typ string, final bool) error {
	b := rs.begin(typ)
	b = append(b, `{"content_index":0,"item_id":`...)
	b = appendString(b, rs.ri.itemID)
	b = append(b, `,"output_index":0,"part":`...)
	if final {
		b = appendOutputText(b, &rs.g.choices[0])
	} else {
		b = append(b, `{"annotations":[],"text":"","type":"output_text","logprobs":null}`...)
	}
	return rs.end(b, typ)
}

func (rs *responsesStream) first() error {
	if err := rs.itemEvent("response.output_item.added", "in_progress"); err != nil {
		return err
	}
	return rs.partEvent("response.content_part.added", false)
}

func (rs *responsesStream) emit(c *choice, from, to int) error {
	if c.eos && from == c.length-1 {
		return nil // an EOS alone has no text to send
	}
	const typ = "response.output_text.delta"
	b := rs.begin(typ)
	b = append(b, `{"content_index":0,"delta":"`...)
	b = c.appendText(b, from, to)
	b = append(b, `","item_id":`...)
	b = appendString(b, rs.ri.itemID)
	b = append(b, `,"logprobs":[],"output_index":0`...)
	return rs.end(b, typ)
}

// finishEvents closes the text, the part and the item, then sends
// response.completed with the usage.
func (rs *responsesStream) finishEvents() error {
	const typ = "response.output_text.done"
	b := rs.begin(typ)
	b = append(b, `{"content_index":0,"item_id":`...)
	b = appendString(b, rs.ri.itemID)
	b = append(b, `,"logprobs":[],"output_index":0,"sequence_number":`...)
	b = appendInt(b, rs.seq)
	rs.seq++
	b = append(b, `,"text":`...)
	b = appendJSONText(b, "", &rs.g.choices[0])
	b = append(b, `,"type":"`+typ+"\"}\n\n"...)
	if err := rs.sw.send(b); err != nil {
		return err
	}
	if err := rs.partEvent("response.content_part.done", true); err != nil {
		return err
	}
	if err := rs.itemEvent("response.output_item.done", "completed"); err != nil {
		return err
	}
	return rs.sendResponse("response.completed")
}
