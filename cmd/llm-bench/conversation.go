package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// conversationMark numbers a conversation in each of its messages, so that
// no two conversations share a message but the system prompt: the gate's
// text cache can then answer only for what a real conversation resends.
const conversationMark = "Conversation 00000000"

// conversationSystem is the system prompt every conversation shares, as
// the conversations of one application do.
const conversationSystem = "You are the support assistant of a company that sells project-planning software. " +
	"Answer in plain English, in a friendly and concise tone. When a question is about billing, " +
	"say that the billing team will follow up by email. Never invent features; when you are not " +
	"sure whether the product can do something, say so and suggest contacting support."

// conversationQuestions and conversationAnswers are the turns of every
// conversation, each a chat message of ordinary length.
var (
	conversationQuestions = []string{
		"How do I move a task from one project to another without losing its comments and attachments?",
		"Thanks. Can I also move a whole milestone, with every task under it, in one step?",
		"What happens to the time already logged on those tasks when they change project?",
		"Our finance team wants a monthly export of logged hours per project. Is there a way to schedule it?",
		"Can the export include the hourly rate of each person, or only the hours?",
		"We were charged twice this month for the same seats. Who should we talk to about that?",
		"Is there a limit to how many guests we can invite to a project on our current plan?",
		"How do guests see the project: can they edit tasks, or only comment on them?",
		"Last question: can I get notified in our chat tool when a task in a given project is overdue?",
		"Great, thank you for your help. Could you summarise the steps for the export once more?",
	}
	conversationAnswers = []string{
		"Open the task, choose Move in its menu and pick the target project. Comments, attachments, " +
			"subtasks and the activity history travel with it; only project-specific custom fields are " +
			"dropped if the target project does not define them, and the dialog lists those before you confirm.",
		"Yes: open the milestone, choose Move milestone, and every task under it moves with it, keeping " +
			"dependencies between those tasks. Dependencies on tasks that stay behind are kept too and shown " +
			"as cross-project links, so your schedule does not change.",
		"Logged time stays with the task, so it moves to the new project and appears in its reports from " +
			"then on. Reports already exported are not changed; if you need last month's figures per old " +
			"project, export them before moving the tasks.",
		"Yes. In Reports, build the timesheet view you need (grouped by project, one month), then choose " +
			"Schedule export. You can send it as CSV or XLSX to any email address on the first day of every " +
			"month, and change or stop the schedule from the same menu.",
		"The export can include rates if your role can see them: add the Rate and Cost columns to the view " +
			"before scheduling it. People without access to rates receive the same export without those " +
			"columns, so it is safe to send it to a wider list.",
		"I am sorry about that. The billing team will follow up by email to sort out the double charge; " +
			"you can also reply to your last invoice email, which reaches them directly with your account " +
			"details attached.",
		"Your current plan allows up to fifty guests per workspace, shared across projects. Guests who have " +
			"not been active for ninety days can be removed from the Members page to free their places.",
		"Guests see only the projects they are invited to. By default they can comment and upload files; a " +
			"project owner can also let them edit tasks assigned to them, but guests can never create " +
			"projects or see reports and rates.",
		"Yes. Connect your chat tool under Integrations, then in the project's notification settings choose " +
			"Overdue tasks and the channel to post to. You can limit it to tasks of certain people or labels.",
		"Build the timesheet view in Reports, grouped by project and limited to one month; add the Rate and " +
			"Cost columns if needed; then choose Schedule export, pick CSV or XLSX, the recipients and the " +
			"first day of the month.",
	}
)

// conversation returns the bodies of a conversation's requests, turn 1 to
// turns: each resends the system prompt and every earlier question and
// answer, then asks the next question, as a chat client does.
func conversation(model string, turns int) ([]Turn, error) {
	if turns < 1 || turns > len(conversationQuestions) {
		return nil, fmt.Errorf("a conversation has 1 to %d turns, not %d", len(conversationQuestions), turns)
	}
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	msgs := []message{{"system", conversationSystem}}
	out := make([]Turn, 0, turns)
	mark := []byte(conversationMark)
	for k := range turns {
		msgs = append(msgs, message{"user", fmt.Sprintf("%s, question %d: %s", conversationMark, k+1, conversationQuestions[k])})
		body, err := json.Marshal(map[string]any{"model": model, "messages": msgs, "max_tokens": 16})
		if err != nil {
			return nil, err
		}
		t := Turn{Body: body}
		for i := 0; ; {
			j := bytes.Index(body[i:], mark)
			if j < 0 {
				break
			}
			t.Offs = append(t.Offs, i+j+len(mark)-varyDigits)
			i += j + len(mark)
		}
		if len(t.Offs) != 2*k+1 {
			return nil, fmt.Errorf("turn %d: %d conversation numbers in the body, want %d", k+1, len(t.Offs), 2*k+1)
		}
		out = append(out, t)
		msgs = append(msgs, message{"assistant", fmt.Sprintf("%s, answer %d: %s", conversationMark, k+1, conversationAnswers[k])})
	}
	return out, nil
}

// scenarioConversation: chat conversations of several turns, each request
// resending the conversation so far, at -conv-conc concurrent conversations.
func (b *Bench) scenarioConversation(ctx context.Context) error {
	turns, err := conversation(b.o.Model, b.o.ConvTurns)
	if err != nil {
		return err
	}
	conc := b.o.ConvConc
	auth := bearer(b.Token("bench-conversation"))
	runs := []pathRun{
		{target(pathPlain, b.plainBase, conc, false, auth, nil), b.caddy.Pid()},
		{target(pathGate, b.gateBase, conc, false, auth, nil), b.caddy.Pid()},
		{target(pathDirect, b.simBase, conc, false, auth, nil), 0},
	}
	for _, r := range runs {
		r.t.Converse(turns)
	}
	res, err := b.closedRounds(ctx, fmt.Sprintf("conversation c=%d", conc), runs, nil, conc, 0, b.o.Warmup)
	if err != nil {
		return err
	}
	total := 0
	for _, t := range turns {
		total += len(t.Body)
	}
	t := closedTable(fmt.Sprintf("Conversations of %d turns, non-streaming, concurrency %d", len(turns), conc), names(runs), res, pathPlain, pathGate,
		[]string{pathPlain, pathGate})
	t.Notes = []string{fmt.Sprintf("Each request resends the conversation so far: the shared system prompt, then every earlier question and answer "+
		"(bodies of %.1f to %.1f KiB, %.1f KiB on average), and asks the next question; every conversation's messages are its own. "+
		"The gate counts each message once, when it first arrives, and answers for resent ones from its text cache. No target: this shows the common case next to the worst one (a new small prompt every request).",
		float64(len(turns[0].Body))/1024, float64(len(turns[len(turns)-1].Body))/1024, float64(total)/float64(len(turns))/1024)}
	b.tables = append(b.tables, t)
	return nil
}
