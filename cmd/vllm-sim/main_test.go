package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	addr, cfg, err := parseFlags(nil, env(nil))
	if err != nil || addr != "127.0.0.1:8000" || len(cfg.ModelNames) != 1 || cfg.ModelNames[0] != "sim-model" ||
		cfg.DefaultLength != 16 || cfg.TokensPerChunk != 1 || cfg.APIKey != "" {
		t.Fatalf("defaults: %q %+v %v", addr, cfg, err)
	}
	addr, cfg, err = parseFlags([]string{
		"-addr", ":9", "-model", "a, b,", "-max-model-len", "100", "-ttft", "250ms", "-tps", "12.5",
		"-chunk", "4", "-length", "30", "-force-include-usage", "-legacy-force-include-usage",
		"-legacy-include-usage-default", "-legacy-errors", "-legacy-fields", "-completions-omit-nulls",
		"-legacy-rerank", "-anthropic-validation-errors", "-batch-rejects-stream-and-tools",
		"-long-request-ids", "-omit-eos", "-enable-prompt-tokens-details", "-enable-request-id-headers",
		"-response-role", "bot", "-embedding-dim", "4", "-version", "1.0", "-record-limit", "-1",
	}, env(map[string]string{"VLLM_API_KEY": "envkey"}))
	if err != nil {
		t.Fatal(err)
	}
	if addr != ":9" || strings.Join(cfg.ModelNames, "|") != "a|b" || cfg.MaxModelLen != 100 || cfg.TTFT != 250*time.Millisecond ||
		cfg.TokensPerSecond != 12.5 || cfg.TokensPerChunk != 4 || cfg.DefaultLength != 30 || !cfg.ForceIncludeUsage ||
		!cfg.LegacyForceIncludeUsage || !cfg.LegacyIncludeUsageDefault || !cfg.LegacyErrors || !cfg.LegacyFields ||
		!cfg.CompletionsOmitNulls || !cfg.LongRequestIDs || !cfg.OmitEOS || !cfg.EnablePromptTokensDetails ||
		!cfg.EnableRequestIDHeaders || cfg.ResponseRole != "bot" || cfg.EmbeddingDim != 4 || cfg.Version != "1.0" ||
		cfg.RecordLimit != -1 || cfg.APIKey != "envkey" || !cfg.LegacyRerank || !cfg.AnthropicValidationErrors || !cfg.BatchRejectsStreamAndTools {
		t.Fatalf("parsed %q %+v", addr, cfg)
	}
	if _, cfg, _ := parseFlags([]string{"-api-key", "flag", "-api-key", "second"}, env(map[string]string{"VLLM_API_KEY": "envkey"})); cfg.APIKey != "flag" || len(cfg.APIKeys) != 1 || cfg.APIKeys[0] != "second" {
		t.Errorf("flags must win over the environment: %q %q", cfg.APIKey, cfg.APIKeys)
	}
	for _, args := range [][]string{{"-tps", "fast"}, {"extra"}, {"-nope"}, {"-keep-alive", "-1s"}} {
		if _, _, err := parseFlags(args, env(nil)); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, _, err := parseFlags([]string{"-h"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// serve answers on its listener and returns nil after a graceful stop.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, cfg, _ := parseFlags([]string{"-length", "3"}, func(string) string { return "" })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, cfg) }()
	resp, err := http.Post("http://"+ln.Addr().String()+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"completion_tokens":3`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestRunBadAddress(t *testing.T) {
	if err := run([]string{"-addr", "256.0.0.1:1"}, func(string) string { return "" }); err == nil {
		t.Fatal("listening on a bad address succeeded")
	}
	if err := run([]string{"-bogus"}, func(string) string { return "" }); err == nil {
		t.Fatal("bad flag accepted")
	}
}

// TestServeClosesIdle: as vLLM's server does, the emulator closes a
// keep-alive connection left idle for its keep-alive timeout, and keeps it
// while requests follow each other sooner.
func TestServeClosesIdle(t *testing.T) {
	defer func(d time.Duration) { vllmKeepAlive = d }(vllmKeepAlive)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, cfg, _ := parseFlags([]string{"-length", "3", "-keep-alive", "300ms"}, func(string) string { return "" })
	if vllmKeepAlive != 300*time.Millisecond {
		t.Fatalf("-keep-alive 300ms: %v", vllmKeepAlive)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serve(ctx, ln, cfg)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	ask := func() {
		t.Helper()
		body := `{"prompt":"hi"}`
		fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
		}
	}
	ask()
	time.Sleep(vllmKeepAlive / 3)
	ask() // the same connection, still open
	idle := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("reading the idle connection: %v, want EOF", err)
	}
	if waited := time.Since(idle); waited < vllmKeepAlive/2 {
		t.Fatalf("closed after %v idle, before the keep-alive timeout %v", waited, vllmKeepAlive)
	}
}
