package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Path names: the columns of most tables.
const (
	pathPlain  = "plain"
	pathGate   = "gate"
	pathDirect = "direct"
)

// Bench is one benchmark run: its child processes, their addresses, and
// the tables measured so far.
type Bench struct {
	o      Options
	sup    Supervisor
	dir    string // temp dir: Caddyfiles, logs, data dirs, bbolt files
	errs   ErrorLog
	secret string // HS256 secret shared by the gate and the JWT minting
	log    func(format string, args ...any)
	// settle is the pause between a forced GC and the idle memory sample;
	// flushWait how long to wait for the store's flush_interval 1s.
	settle, flushWait time.Duration

	sim     *Child
	simBase string // http://127.0.0.1:<port>

	caddy     *Child // plain + gate sites, flush_interval 1s
	admin     *Admin
	plainBase string
	gateBase  string

	caddy0    *Child // second process: gate only, flush_interval 0
	admin0    *Admin
	gate0Base string

	split []*Child // the split scenario's processes, one per path

	tables []*Table
	chart  *BarChart
}

// NewBench prepares a run: a temp dir and a fresh JWT secret.
func NewBench(o Options) (*Bench, error) {
	dir, err := os.MkdirTemp("", "llm-bench-")
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	b := &Bench{
		o: o, dir: dir, secret: hex.EncodeToString(secret),
		log:    func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
		settle: time.Second, flushWait: 1500 * time.Millisecond,
	}
	if o.settle > 0 {
		b.settle = o.settle
	}
	if o.flushWait > 0 {
		b.flushWait = o.flushWait
	}
	return b, nil
}

// Close stops every child and removes the temp dir (unless -keep).
func (b *Bench) Close() {
	b.sup.StopAll()
	if b.o.Keep {
		b.log("kept %s", b.dir)
		return
	}
	_ = os.RemoveAll(b.dir)
}

// Token mints an HS256 JWT for user, valid for a day.
func (b *Bench) Token(user string) string {
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user,
		"iat": now.Unix(),
		"exp": now.Add(24 * time.Hour).Unix(),
	}).SignedString([]byte(b.secret))
	if err != nil {
		panic(err) // HS256 with a []byte key cannot fail
	}
	return s
}

// startSim runs the emulator: as fast as possible by default (streaming
// requests set their own pace with X-Sim-* headers), with a context long
// enough for the bigprompt scenario, and without request recording, which
// would only cost it memory.
func (b *Bench) startSim(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	maxLen := max(131072, b.o.PromptTokens+8192)
	b.sim, err = b.sup.Start("vllm-sim", b.dir, nil, b.o.SimBin,
		"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-model", b.o.Model,
		"-max-model-len", fmt.Sprint(maxLen), "-length", "16", "-record-limit", "-1",
		// Connections stay open between rounds, as every site keeps them
		// (keepalive 2m): no round starts with a storm of dials.
		"-keep-alive", "0")
	if err != nil {
		return err
	}
	b.simBase = fmt.Sprintf("http://127.0.0.1:%d", port)
	return WaitReady(ctx, b.sim, b.simBase+"/v1/models", 20*time.Second)
}

// startCaddy writes cfg's Caddyfile and runs Caddy (-caddy) on it, waiting
// until the admin listener and every site answer.
func (b *Bench) startCaddy(ctx context.Context, name string, cfg CaddyConfig) (*Child, *Admin, error) {
	return b.startCaddyBin(ctx, name, b.o.CaddyBin, cfg)
}

// startCaddyBin is startCaddy with the Caddy binary bin.
func (b *Bench) startCaddyBin(ctx context.Context, name, bin string, cfg CaddyConfig) (*Child, *Admin, error) {
	path := filepath.Join(b.dir, name+".Caddyfile")
	if err := os.WriteFile(path, []byte(cfg.Caddyfile()), 0o600); err != nil {
		return nil, nil, err
	}
	env := []string{
		"XDG_DATA_HOME=" + filepath.Join(b.dir, name+"-data"),
		"XDG_CONFIG_HOME=" + filepath.Join(b.dir, name+"-config"),
	}
	c, err := b.sup.Start(name, b.dir, env, bin, "run", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		return nil, nil, err
	}
	admin := NewAdmin(fmt.Sprintf("http://127.0.0.1:%d", cfg.AdminPort))
	if err := WaitReady(ctx, c, admin.Base+"/config/", 30*time.Second); err != nil {
		return nil, nil, err
	}
	for _, port := range []int{cfg.PlainPort, cfg.GatePort} {
		if port == 0 {
			continue
		}
		if err := WaitReady(ctx, c, fmt.Sprintf("http://127.0.0.1:%d/v1/models", port), 10*time.Second); err != nil {
			return nil, nil, err
		}
	}
	return c, admin, nil
}

// newCaddyConfig picks free ports for a Caddy process.
func (b *Bench) newCaddyConfig(name, flush string, plain bool) (CaddyConfig, error) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return CaddyConfig{}, err
		}
		ports[i] = p
	}
	cfg := CaddyConfig{
		AdminPort: ports[0], GatePort: ports[1],
		Upstream:         b.simBase[len("http://"):],
		DB:               filepath.Join(b.dir, name+".db"),
		FlushInterval:    flush,
		Secret:           b.secret,
		H2C:              true,
		IdleConnsPerHost: max(b.o.Streams, 1024),
		GateTransport:    b.o.GateTransport,
	}
	if plain {
		cfg.PlainPort = ports[2]
	}
	return cfg, nil
}

// startMain starts the emulator and the main Caddy (plain and gate sites,
// flush_interval 1s).
func (b *Bench) startMain(ctx context.Context) error {
	if err := b.startSim(ctx); err != nil {
		return err
	}
	cfg, err := b.newCaddyConfig("caddy", "1s", true)
	if err != nil {
		return err
	}
	b.caddy, b.admin, err = b.startCaddy(ctx, "caddy", cfg)
	if err != nil {
		return err
	}
	b.plainBase = fmt.Sprintf("http://127.0.0.1:%d", cfg.PlainPort)
	b.gateBase = fmt.Sprintf("http://127.0.0.1:%d", cfg.GatePort)
	return nil
}

// startFlush0 starts the second Caddy, whose app commits every request
// before answering (flush_interval is a global option, so it needs a
// process of its own).
func (b *Bench) startFlush0(ctx context.Context) error {
	if b.caddy0 != nil {
		return nil
	}
	cfg, err := b.newCaddyConfig("caddy-flush0", "0", false)
	if err != nil {
		return err
	}
	b.caddy0, b.admin0, err = b.startCaddy(ctx, "caddy-flush0", cfg)
	if err != nil {
		return err
	}
	b.gate0Base = fmt.Sprintf("http://127.0.0.1:%d", cfg.GatePort)
	return nil
}

// target builds a Target for base+"/v1/chat/completions" with its own
// client; auth may be nil.
func target(name, base string, conns int, h2c bool, auth func() string, hdr http.Header) *Target {
	return &Target{Name: name, URL: base + "/v1/chat/completions", Client: NewClient(conns, h2c), Auth: auth, Header: hdr}
}

// bearer returns an Auth func that always sends token.
func bearer(token string) func() string {
	v := "Bearer " + token
	return func() string { return v }
}

// Run starts the processes and runs the selected scenarios in order. When
// a scenario fails, Run returns the report of the scenarios done so far
// along with the error, so that a long run is not lost entirely.
func (b *Bench) Run(ctx context.Context) (*Report, error) {
	rep := &Report{Machine: DetectMachine(b.o.CaddyBin), Errors: &b.errs, Settings: b.settings()}
	b.log("llm-bench: %s, %d cores, %s, Caddy %s", rep.Machine.CPU, rep.Machine.Cores, rep.Machine.Go, rep.Machine.Caddy)
	if err := b.startMain(ctx); err != nil {
		return nil, err
	}
	if err := b.sanity(ctx); err != nil {
		return nil, err
	}
	scenarios := map[string]func(context.Context) error{
		"nonstream":    b.scenarioNonStream,
		"h2":           b.scenarioH2,
		"stream":       b.scenarioStream,
		"bigprompt":    b.scenarioBigPrompt,
		"conversation": b.scenarioConversation,
		"users":        b.scenarioUsers,
		"store":        b.scenarioStore,
		"split":        b.scenarioSplit,
	}
	var runErr error
	for _, name := range b.o.Scenarios {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b.log("== scenario %s", name)
		if err := scenarios[name](ctx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			runErr = fmt.Errorf("scenario %s: %w", name, err)
			break
		}
		if b.caddy.Exited() || (b.caddy0 != nil && b.caddy0.Exited()) || b.sim.Exited() || slices.ContainsFunc(b.split, (*Child).Exited) {
			runErr = fmt.Errorf("a child process died during scenario %s; rerun with -keep and see the logs", name)
			break
		}
	}
	rep.Tables = b.tables
	if runErr != nil {
		rep.Failure = runErr.Error()
	}
	if b.chart != nil {
		if err := writeChart(filepath.Join(b.o.Out, "latency.png"), b.chart); err != nil {
			return rep, errors.Join(runErr, err)
		}
		rep.Chart = "latency.png"
	}
	return rep, runErr
}

// writeChart writes c as a PNG file.
func writeChart(path string, c *BarChart) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = c.WritePNG(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sanity sends one request down every path, so that a broken setup fails
// at once with the server's answer instead of as a table of errors.
func (b *Bench) sanity(ctx context.Context) error {
	body := chatBody(b.o.Model, smallPrompt, 16, false)
	auth := bearer(b.Token("bench"))
	for _, t := range []*Target{
		target(pathPlain, b.plainBase, 1, false, auth, nil),
		target(pathGate, b.gateBase, 1, false, auth, nil),
		target(pathDirect, b.simBase, 1, false, auth, nil),
	} {
		if _, err := t.do(ctx, body); err != nil {
			return fmt.Errorf("sanity request via %s (%s): %w", t.Name, t.URL, err)
		}
	}
	return nil
}

// settings lists the run's parameters for the report.
func (b *Bench) settings() []string {
	o := b.o
	mode := "full"
	if o.Quick {
		mode = "quick"
	}
	return []string{
		fmt.Sprintf("mode: %s; scenarios: %v", mode, o.Scenarios),
		fmt.Sprintf("closed-loop scenarios: %d rounds × %v per path (after %v of warm-up per path); then %d rounds side by side, each as long as a round of windows: "+
			"at concurrency 1 interleaved, one request to each path in turn; under load sliced, the workers moving from path to path every 25 median latencies (0.1 to 1 s)",
			o.Rounds, o.Window, o.Warmup, o.Rounds),
		fmt.Sprintf("stream scenario: %d streams × %d tokens at %g tokens/s, chunks of %v tokens, started over %v, %d rounds per path, then %d mixed rounds (plain's and gate's streams side by side), then %d split mixed rounds (the same, plain and gate in two Caddy processes of their own); the gate's streams belong to %d JWT user(s)",
			o.Streams, o.StreamTokens, o.StreamTPS, o.Chunks, o.Ramp, o.StreamRounds, o.StreamRounds, o.StreamRounds, o.StreamUsers),
		fmt.Sprintf("bigprompt: %d-token prompt, %d requests per path and round; conversation: %d turns at concurrency %d; users: %d API keys at concurrency %d; store: concurrency %d; split: concurrency %d",
			o.PromptTokens, o.PromptReqs, o.ConvTurns, o.ConvConc, o.Users, o.UsersConc, o.StoreConc, o.SplitConc),
		"emulator: internal/vllmsim (cmd/vllm-sim), no recording, idle connections kept open (-keep-alive 0, where vLLM closes them after 5 s); Caddy: access log off, error-level logging, reverse_proxy keeps up to " +
			fmt.Sprint(max(o.Streams, 1024)) + " idle upstream connections for 2 minutes on both sites (keepalive 2m)",
		fmt.Sprintf("reverse_proxy transport: plain http, gate %s", o.GateTransport) + transportNote(o.GateTransport),
		"requests: every path of a scenario gets the same requests, Authorization header included (an OpenAI SDK always sends one): " +
			"plain reverse_proxy passes it on to the emulator, the gate checks it and strips it",
	}
}

// transportNote says what the gate's transport changes, for the report.
func transportNote(t string) string {
	if t != "llm_gate" {
		return " (the same as plain's)"
	}
	return " (http's options; sends the request body the gate has read with its headers in one write, where reverse_proxy's readers make http write them in two)"
}
