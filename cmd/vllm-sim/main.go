// Command vllm-sim serves the vLLM emulator (internal/vllmsim) on a TCP
// address, for manual tests and as the upstream of load tests.
//
//	vllm-sim -addr 127.0.0.1:8000 -model my-model -ttft 200ms -tps 50
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Printf("vllm-sim: %v", err)
		os.Exit(1)
	}
}

// parseFlags turns the command line into a listen address and a Config.
func parseFlags(args []string, getenv func(string) string) (string, vllmsim.Config, error) {
	d := vllmsim.DefaultConfig()
	fs := flag.NewFlagSet("vllm-sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "listen address")
	models := fs.String("model", strings.Join(d.ModelNames, ","), "served model names, comma-separated; the first is the default")
	cfg := d
	fs.IntVar(&cfg.MaxModelLen, "max-model-len", d.MaxModelLen, "context length in tokens")
	fs.DurationVar(&cfg.TTFT, "ttft", 0, "time to first token")
	fs.Float64Var(&cfg.TokensPerSecond, "tps", 0, "tokens per second per choice (0 = as fast as possible)")
	fs.IntVar(&cfg.TokensPerChunk, "chunk", d.TokensPerChunk, "tokens per streamed chunk (--stream-interval)")
	fs.IntVar(&cfg.DefaultLength, "length", d.DefaultLength, "natural answer length in tokens")
	fs.BoolVar(&cfg.ForceIncludeUsage, "force-include-usage", false, "emulate --enable-force-include-usage")
	var keys []string
	fs.Func("api-key", "require this bearer key on /v1 paths; repeat for several (default $VLLM_API_KEY)", func(k string) error {
		keys = append(keys, k)
		return nil
	})
	fs.BoolVar(&cfg.LegacyForceIncludeUsage, "legacy-force-include-usage", false, "force-include-usage as before vLLM PR #37923 (final usage chunk only)")
	fs.BoolVar(&cfg.LegacyIncludeUsageDefault, "legacy-include-usage-default", false, "stream_options.include_usage defaults to false (2024)")
	fs.BoolVar(&cfg.LegacyErrors, "legacy-errors", false, "flat error envelope of vLLM <= 0.10.0")
	fs.BoolVar(&cfg.LegacyFields, "legacy-fields", false, "no token_ids / completion_tokens_details, reasoning_content (mid-2025 shapes)")
	fs.BoolVar(&cfg.CompletionsOmitNulls, "completions-omit-nulls", false, "omit null keys from /v1/completions chunks")
	fs.BoolVar(&cfg.LegacyRerank, "legacy-rerank", false, `/v1/rerank usage as {"total_tokens":N} and rerank- ids (before 2026)`)
	fs.BoolVar(&cfg.AnthropicValidationErrors, "anthropic-validation-errors", false, "/v1/messages body validation failures in Anthropic's error envelope (vLLM PR #58023)")
	fs.BoolVar(&cfg.BatchRejectsStreamAndTools, "batch-rejects-stream-and-tools", false, "/v1/chat/completions/batch refuses stream and tools (vLLM PRs #50027/#50042)")
	fs.BoolVar(&cfg.LongRequestIDs, "long-request-ids", false, "32-hex-digit ids (2025) instead of 16")
	fs.BoolVar(&cfg.OmitEOS, "omit-eos", false, "do not count an EOS token at the end of stopped answers")
	fs.BoolVar(&cfg.EnablePromptTokensDetails, "enable-prompt-tokens-details", false, "emulate --enable-prompt-tokens-details")
	fs.BoolVar(&cfg.EnableRequestIDHeaders, "enable-request-id-headers", false, "emulate --enable-request-id-headers")
	fs.StringVar(&cfg.ResponseRole, "response-role", d.ResponseRole, "role of generated chat messages")
	fs.IntVar(&cfg.EmbeddingDim, "embedding-dim", d.EmbeddingDim, "length of embedding vectors")
	fs.StringVar(&cfg.Version, "version", d.Version, "version reported by GET /version")
	fs.IntVar(&cfg.RecordLimit, "record-limit", d.RecordLimit, "requests kept for /sim/requests (negative disables recording)")
	fs.DurationVar(&vllmKeepAlive, "keep-alive", 5*time.Second, "close a connection without a request for this long, as vLLM's server does (0: never)")
	if err := fs.Parse(args); err != nil {
		return "", cfg, err
	}
	if fs.NArg() > 0 {
		return "", cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if vllmKeepAlive < 0 {
		return "", cfg, fmt.Errorf("-keep-alive %v: must be 0 (never close) or more", vllmKeepAlive)
	}
	cfg.ModelNames = nil
	for _, m := range strings.Split(*models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.ModelNames = append(cfg.ModelNames, m)
		}
	}
	if len(keys) == 0 {
		if k := getenv("VLLM_API_KEY"); k != "" {
			keys = []string{k}
		}
	}
	if len(keys) > 0 {
		cfg.APIKey, cfg.APIKeys = keys[0], keys[1:]
	}
	return *addr, cfg, nil
}

func run(args []string, getenv func(string) string) error {
	addr, cfg, err := parseFlags(args, getenv)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, ln, cfg)
}

// vllmKeepAlive is how long the emulator keeps a connection without a
// request open (-keep-alive; 0: for ever).
var vllmKeepAlive = 5 * time.Second

// serve runs the emulator on ln until ctx ends, then shuts down gracefully:
// streams in flight get a few seconds to finish.
func serve(ctx context.Context, ln net.Listener, cfg vllmsim.Config) error {
	sim := vllmsim.New(cfg)
	eff := sim.Config()
	// vLLM's server (uvicorn) closes a connection that carries no request
	// for 5 s (timeout_keep_alive, VLLM_HTTP_TIMEOUT_KEEP_ALIVE), the first
	// one included: a proxy that keeps idle connections longer meets that
	// close here as it would there. -keep-alive 0 closes none.
	srv := &http.Server{Handler: sim}
	if vllmKeepAlive > 0 {
		srv.ReadHeaderTimeout, srv.IdleTimeout = vllmKeepAlive, vllmKeepAlive
	}
	log.Printf("vllm-sim listening on http://%s (models %s, max_model_len %d, ttft %s, tps %g, chunk %d, length %d)",
		ln.Addr(), strings.Join(eff.ModelNames, ","), eff.MaxModelLen, eff.TTFT, eff.TokensPerSecond, eff.TokensPerChunk, eff.DefaultLength)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
