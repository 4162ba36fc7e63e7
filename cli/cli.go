// Package cli adds the `caddy llm-gate` command: an operator's client of the
// llm_gate admin API (users, keys, usage, records, plans), and a minter of
// test JWTs.
//
// The admin subcommands find the admin listener the way `caddy reload` does
// (--address, else the admin address of --config, else localhost:2019) and
// print the API's JSON indented, or CSV as it comes.
package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "llm-gate",
		Usage: "<subcommand> [flags]",
		Short: "Manages llm_gate users, API keys and usage, and mints test JWTs",
		Long: `
Manages the llm_gate plugin of a running Caddy through its admin API
(routes under /llm_gate/), and mints JWTs for testing.

The admin API is reached at --address, else at the admin address of the
--config file, else at localhost:2019, exactly as 'caddy reload' does.

Examples:
  caddy llm-gate user set alice --plan pro --token-limit 500000 --period day
  caddy llm-gate keys create alice --name laptop --expires-in 720h
  caddy llm-gate usage --since 2025-06-01 --group-by user,day --format csv
  caddy llm-gate token --secret-env LLM_GATE_JWT_SECRET --user alice --ttl 1h
`,
		CobraFunc: Build,
	})
}

// Build adds the llm-gate subcommands to cmd (the `llm-gate` command).
func Build(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.String("address", "", "The admin API's address (default: from --config, else localhost:2019)")
	pf.StringP("config", "c", "", "Config file to read the admin address from, when --address is not given")
	pf.StringP("adapter", "a", "", "Name of the adapter of --config")
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }

	cmd.AddCommand(usersCmd(), userCmd(), keysCmd(), usageCmd(), requestsCmd(), plansCmd(), tokenCmd())
}

// Error is an error answer of the admin API.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("admin API answered HTTP %d: %s", e.Status, e.Message)
}

// client talks to the admin API.
type client struct {
	addr string
}

// clientOf resolves the admin address from the command's flags.
func clientOf(cmd *cobra.Command) (*client, error) {
	flag := func(name string) string {
		if f := cmd.Flag(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(flag("address"), nil, flag("config"), flag("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin API's address: %w", err)
	}
	return &client{addr: addr}, nil
}

// do sends a request with body (nil, or a value sent as JSON) and returns
// the answer's body. An error answer becomes an *Error carrying the API's
// message.
func (c *client) do(method, uri string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	resp, err := caddycmd.AdminAPIRequest(c.addr, method, uri, nil, rd)
	if err != nil {
		return nil, asAPIError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &Error{Status: resp.StatusCode, Message: errorMessage(data)}
	}
	return data, nil
}

// asAPIError recovers status and message from caddycmd.AdminAPIRequest's
// error for answers >= 400, which it renders as
// "caddy responded with error: HTTP <status>: <body>".
func asAPIError(err error) error {
	rest, ok := strings.CutPrefix(err.Error(), "caddy responded with error: HTTP ")
	if !ok {
		return err
	}
	code, body, _ := strings.Cut(rest, ": ")
	status, convErr := strconv.Atoi(code)
	if convErr != nil {
		return err
	}
	return &Error{Status: status, Message: errorMessage([]byte(body))}
}

// errorMessage is the "error" of Caddy's {"error":"…"}, or the body itself.
func errorMessage(body []byte) string {
	var m struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &m) == nil && m.Error != "" {
		return m.Error
	}
	return strings.TrimSpace(string(body))
}

// isStatus reports whether err is an API answer with status.
func isStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// printJSON writes a JSON answer indented.
func printJSON(cmd *cobra.Command, data []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(data), "", "  "); err != nil {
		// Not JSON after all: show it as it came.
		buf.Reset()
		buf.Write(data)
	}
	if buf.Len() == 0 || buf.Bytes()[buf.Len()-1] != '\n' {
		buf.WriteByte('\n')
	}
	_, err := cmd.OutOrStdout().Write(buf.Bytes())
	return err
}

// getAndPrint GETs uri and prints the answer.
func getAndPrint(cmd *cobra.Command, uri string) error {
	c, err := clientOf(cmd)
	if err != nil {
		return err
	}
	data, err := c.do(http.MethodGet, uri, nil)
	if err != nil {
		return err
	}
	return printJSON(cmd, data)
}

// userPath is the admin path of a user, escaped.
func userPath(id string, rest ...string) string {
	p := "/llm_gate/users/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// queryOf builds a query string from the flags that were set.
func queryOf(cmd *cobra.Command, params map[string]string) string {
	q := url.Values{}
	for flag, param := range params {
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			q.Set(param, f.Value.String())
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func usersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users [--limit N] [--cursor C | --all]",
		Short: "Lists users, one page at a time (or all with --all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all, _ := cmd.Flags().GetBool("all")
			if !all {
				return getAndPrint(cmd, "/llm_gate/users"+queryOf(cmd, map[string]string{"limit": "limit", "cursor": "cursor"}))
			}
			return listAllUsers(cmd)
		},
	}
	cmd.Flags().Int("limit", 100, "Users per page (at most 1000)")
	cmd.Flags().String("cursor", "", "Page to show: the next_cursor of the previous page")
	cmd.Flags().Bool("all", false, "Follow next_cursor and list every user")
	cmd.MarkFlagsMutuallyExclusive("cursor", "all")
	return cmd
}

func listAllUsers(cmd *cobra.Command) error {
	c, err := clientOf(cmd)
	if err != nil {
		return err
	}
	limit, _ := cmd.Flags().GetInt("limit")
	if !cmd.Flags().Changed("limit") {
		limit = 1000
	}
	all := []json.RawMessage{}
	cursor := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		data, err := c.do(http.MethodGet, "/llm_gate/users?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		var page struct {
			Users      []json.RawMessage `json:"users"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(data, &page); err != nil {
			return fmt.Errorf("decoding the users page: %w", err)
		}
		all = append(all, page.Users...)
		if page.NextCursor == "" || page.NextCursor == cursor {
			break
		}
		cursor = page.NextCursor
	}
	data, err := json.Marshal(struct {
		Users      []json.RawMessage `json:"users"`
		NextCursor string            `json:"next_cursor"`
	}{Users: all})
	if err != nil {
		return err
	}
	return printJSON(cmd, data)
}

func userCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user <get|set|delete|reset> ID",
		Short: "Shows, creates, changes, deletes or resets one user",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Shows a user: plan, overrides, effective limits, usage per window, keys",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return getAndPrint(cmd, userPath(args[0])) },
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Deletes a user and revokes its keys (its usage records stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendAndPrint(cmd, http.MethodDelete, userPath(args[0]), nil)
		},
	}
	reset := &cobra.Command{
		Use:   "reset ID",
		Short: "Zeroes a user's usage in every window",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendAndPrint(cmd, http.MethodPost, userPath(args[0], "reset"), nil)
		},
	}
	cmd.AddCommand(get, userSetCmd(), del, reset)
	return cmd
}

// sendAndPrint sends a request and prints the answer.
func sendAndPrint(cmd *cobra.Command, method, uri string, body any) error {
	c, err := clientOf(cmd)
	if err != nil {
		return err
	}
	data, err := c.do(method, uri, body)
	if err != nil {
		return err
	}
	return printJSON(cmd, data)
}

// userSetFlags maps `user set` flags to the API's fields.
var userSetFlags = []struct{ flag, field string }{
	{"plan", "plan"},
	{"token-limit", "token_limit"},
	{"period", "period"},
	{"tokens-per-minute", "tokens_per_minute"},
	{"requests-per-minute", "requests_per_minute"},
	{"max-parallel", "max_parallel"},
	{"models", "models"},
	{"disabled", "disabled"},
}

func userSetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set ID [flags]",
		Short: "Changes the given settings of a user, creating it if needed",
		Long: `
Changes only the settings given (PATCH); a user that does not exist is
created with them (PUT). Settings not given inherit from the user's plan.
--clear takes fields back to the plan's value (token_limit,models,...).
A limit of 0 means no limit in that window.`,
		Args: cobra.ExactArgs(1),
		RunE: runUserSet,
	}
	f := cmd.Flags()
	f.String("plan", "", "Plan name (empty: the site's or the default plan)")
	f.Int64("token-limit", 0, "Token budget of --period (or of the plan's largest budget window)")
	f.String("period", "", "Window of --token-limit: hour, day, week, month or total")
	f.Int64("tokens-per-minute", 0, "Token rate limit per sliding minute")
	f.Int64("requests-per-minute", 0, "Request rate limit per sliding minute")
	f.Int("max-parallel", 0, "Requests that may run at once")
	f.StringSlice("models", nil, "Allowed models or globs, comma-separated (llama-*,qwen-*)")
	f.Bool("disabled", false, "Refuse the user's requests (--disabled=false enables)")
	f.StringSlice("clear", nil, "Fields to take back to the plan's value, comma-separated")
	return cmd
}

func runUserSet(cmd *cobra.Command, args []string) error {
	body := map[string]any{}
	f := cmd.Flags()
	for _, s := range userSetFlags {
		if !f.Changed(s.flag) {
			continue
		}
		var v any
		switch s.flag {
		case "plan", "period":
			v, _ = f.GetString(s.flag)
		case "max-parallel":
			v, _ = f.GetInt(s.flag)
		case "models":
			v, _ = f.GetStringSlice(s.flag)
		case "disabled":
			v, _ = f.GetBool(s.flag)
		default:
			v, _ = f.GetInt64(s.flag)
		}
		body[s.field] = v
	}
	clear, _ := f.GetStringSlice("clear")
	for _, field := range clear {
		field = strings.ReplaceAll(strings.TrimSpace(field), "-", "_")
		if _, set := body[field]; set {
			return fmt.Errorf("--clear %s contradicts the value given for it", field)
		}
		body[field] = nil
	}

	c, err := clientOf(cmd)
	if err != nil {
		return err
	}
	data, err := c.do(http.MethodPatch, userPath(args[0]), body)
	if isStatus(err, http.StatusNotFound) {
		// A new user: create it with what was given. Cleared fields are
		// simply absent.
		put := map[string]any{}
		for k, v := range body {
			if v != nil {
				put[k] = v
			}
		}
		data, err = c.do(http.MethodPut, userPath(args[0]), put)
	}
	if err != nil {
		return err
	}
	return printJSON(cmd, data)
}

func keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys <create|list|revoke>",
		Short: "Creates, lists or revokes API keys",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	create := &cobra.Command{
		Use:   "create USER [--name NAME] [--expires-in DURATION] [--quiet]",
		Short: "Creates an API key for a user; its secret is shown only now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]string{}
			if v, _ := cmd.Flags().GetString("name"); v != "" {
				body["name"] = v
			}
			if v, _ := cmd.Flags().GetString("expires-in"); v != "" {
				body["expires_in"] = v
			}
			c, err := clientOf(cmd)
			if err != nil {
				return err
			}
			data, err := c.do(http.MethodPost, userPath(args[0], "keys"), body)
			if err != nil {
				return err
			}
			if quiet, _ := cmd.Flags().GetBool("quiet"); quiet {
				var k struct {
					Key string `json:"key"`
				}
				if err := json.Unmarshal(data, &k); err != nil || k.Key == "" {
					return fmt.Errorf("the admin API's answer holds no key: %s", data)
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), k.Key)
				return err
			}
			return printJSON(cmd, data)
		},
	}
	create.Flags().String("name", "", "A name to tell the key apart (laptop, ci)")
	create.Flags().String("expires-in", "", "Lifetime such as 720h or 30d (default: never expires)")
	create.Flags().BoolP("quiet", "q", false, "Print only the secret key, for scripts")
	list := &cobra.Command{
		Use:   "list USER",
		Short: "Lists a user's keys (never their secrets)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getAndPrint(cmd, userPath(args[0], "keys"))
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke KEYID",
		Short: "Revokes a key at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return sendAndPrint(cmd, http.MethodDelete, "/llm_gate/keys/"+url.PathEscape(args[0]), nil)
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func usageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage [--user U] [--model M] [--since T] [--until T] [--group-by user,model,day,hour] [--format csv]",
		Short: "Reports tokens and requests, summed and grouped",
		Long: `
Reports tokens and requests from the hourly aggregates. Times are RFC 3339
(2025-06-01T00:00:00Z) or dates (2025-06-01, UTC); a date as --until
includes that day.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := clientOf(cmd)
			if err != nil {
				return err
			}
			data, err := c.do(http.MethodGet, "/llm_gate/usage"+queryOf(cmd, map[string]string{
				"user": "user", "model": "model", "since": "since", "until": "until",
				"group-by": "group_by", "format": "format",
			}), nil)
			if err != nil {
				return err
			}
			if format, _ := cmd.Flags().GetString("format"); strings.EqualFold(format, "csv") {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			return printJSON(cmd, data)
		},
	}
	f := cmd.Flags()
	f.String("user", "", "Only this user")
	f.String("model", "", "Only this model")
	f.String("since", "", "From this time or date")
	f.String("until", "", "Up to this time (exclusive) or date (inclusive)")
	f.String("group-by", "", "Group by any of user, model, day, hour (comma-separated, in sort order)")
	f.String("format", "json", "json or csv")
	return cmd
}

func requestsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "requests [--user U] [--since T] [--until T] [--limit N] [--cursor C]",
		Short: "Lists per-request records, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return getAndPrint(cmd, "/llm_gate/requests"+queryOf(cmd, map[string]string{
				"user": "user", "since": "since", "until": "until", "limit": "limit", "cursor": "cursor",
			}))
		},
	}
	f := cmd.Flags()
	f.String("user", "", "Only this user's requests")
	f.String("since", "", "From this time or date")
	f.String("until", "", "Up to this time (exclusive) or date (inclusive)")
	f.Int("limit", 100, "Records per page (at most 1000)")
	f.String("cursor", "", "Page to show: the next_cursor of the previous page")
	return cmd
}

func plansCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plans",
		Short: "Lists the configured plans",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return getAndPrint(cmd, "/llm_gate/plans") },
	}
}
