package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/llmgate/llmgate/internal/vllmsim"
)

// The test binary doubles as the two programs llm-bench runs, so that the
// whole tool can be tested end to end without building Caddy: with
// LLM_BENCH_FAKE=1 in its environment it is either the emulator (when its
// first argument is a flag) or a stand-in for Caddy (`run --config …`,
// `version`) that understands just the Caddyfile llm-bench generates.

func TestMain(m *testing.M) {
	if os.Getenv("LLM_BENCH_FAKE") == "1" && len(os.Args) > 1 {
		var err error
		if strings.HasPrefix(os.Args[1], "-") && !strings.HasPrefix(os.Args[1], "-test.") {
			err = fakeSim(os.Args[1:])
		} else if os.Args[1] == "run" || os.Args[1] == "version" {
			err = fakeCaddy(os.Args[1:])
		} else {
			os.Exit(m.Run())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// untilSignal serves until SIGTERM/SIGINT (Kill needs no handling).
func untilSignal() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

// fakeSim serves vllmsim with the flags llm-bench passes.
func fakeSim(args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	addr := fs.String("addr", "", "")
	model := fs.String("model", "sim-model", "")
	cfg := vllmsim.Config{}
	fs.IntVar(&cfg.MaxModelLen, "max-model-len", 0, "")
	fs.IntVar(&cfg.DefaultLength, "length", 0, "")
	fs.IntVar(&cfg.RecordLimit, "record-limit", 0, "")
	keep := fs.Duration("keep-alive", 5*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keep != 0 {
		return fmt.Errorf("-keep-alive %v: the bench's emulator must keep idle connections", *keep)
	}
	cfg.ModelNames = []string{*model}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	go http.Serve(ln, vllmsim.New(cfg))
	untilSignal()
	return nil
}

// fakeSite is one site block of the generated Caddyfile.
type fakeSite struct {
	port     string
	gate     bool
	secret   string
	upstream string
}

// fakeGate is the fake's llm_gate state: keys and per-user request counts.
type fakeGate struct {
	mu    sync.Mutex
	keys  map[string]string // key → user
	users map[string]bool
	count map[string]int64
}

func fakeCaddy(args []string) error {
	if args[0] == "version" {
		fmt.Println("v2.11.9-fake h1:abc")
		return nil
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	config := fs.String("config", "", "")
	fs.String("adapter", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	f, err := os.Open(*config)
	if err != nil {
		return err
	}
	defer f.Close()
	var admin string
	h2c := false
	var sites []*fakeSite
	var cur *fakeSite
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		switch {
		case len(w) == 0:
		case w[0] == "admin":
			admin = w[1]
		case w[0] == "protocols" && strings.Contains(sc.Text(), "h2c"):
			h2c = true
		case strings.HasPrefix(w[0], "http://"):
			cur = &fakeSite{port: w[0][strings.LastIndexByte(w[0], ':')+1:]}
			sites = append(sites, cur)
		case cur != nil && w[0] == "llm_gate":
			cur.gate = true
		case cur != nil && w[0] == "secret":
			cur.secret = w[1]
		case cur != nil && w[0] == "reverse_proxy":
			cur.upstream = w[1]
		}
	}
	g := &fakeGate{keys: map[string]string{}, users: map[string]bool{}, count: map[string]int64{}}
	serve := func(addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h}
		if h2c {
			var p http.Protocols
			p.SetHTTP1(true)
			p.SetUnencryptedHTTP2(true)
			srv.Protocols = &p
		}
		go srv.Serve(ln)
		return nil
	}
	if err := serve(admin, g.adminHandler()); err != nil {
		return err
	}
	for _, s := range sites {
		if err := serve("127.0.0.1:"+s.port, g.siteHandler(s)); err != nil {
			return err
		}
	}
	untilSignal()
	return nil
}

func (g *fakeGate) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "{}") })
	mux.HandleFunc("PUT /llm_gate/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.users[r.PathValue("id")] = true
		g.mu.Unlock()
		fmt.Fprint(w, `{}`)
	})
	mux.HandleFunc("POST /llm_gate/users/{id}/keys", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		g.mu.Lock()
		defer g.mu.Unlock()
		if !g.users[id] || os.Getenv("LLM_BENCH_FAKE_NO_KEYS") == "1" {
			http.Error(w, `{"error":"no such user"}`, http.StatusNotFound)
			return
		}
		key := "sk-" + id
		g.keys[key] = id
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"k%s","key":%q}`, id, key)
	})
	mux.HandleFunc("GET /llm_gate/usage", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		g.mu.Lock()
		n := g.count[user]
		g.mu.Unlock()
		fmt.Fprintf(w, `{"rows":[{"user":%q,"requests":%d}]}`, user, n)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Fprintf(w, "# HELP go_goroutines x\ngo_goroutines %d\ngo_memstats_heap_inuse_bytes %d\ngo_memstats_stack_inuse_bytes %d\n",
			runtime.NumGoroutine(), m.HeapInuse, m.StackInuse)
	})
	mux.HandleFunc("GET /debug/pprof/heap", func(w http.ResponseWriter, r *http.Request) { runtime.GC() })
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "fake profile of %s seconds", r.URL.Query().Get("seconds"))
	})
	return mux
}

func (g *fakeGate) siteHandler(s *fakeSite) http.Handler {
	up, _ := url.Parse("http://" + s.upstream)
	proxy := httputil.NewSingleHostReverseProxy(up)
	proxy.FlushInterval = -1
	// The fake reads each request body before proxying it: Go's HTTP/1
	// server may close an unread request body once the handler has begun
	// its response, which httputil's streaming copy can race with.
	buffered := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		proxy.ServeHTTP(w, r)
	})
	if !s.gate {
		// Every path must get the same requests: plain too carries the
		// caller's credential, as from an OpenAI SDK.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				http.Error(w, `{"error":{"message":"plain got no Authorization header"}}`, http.StatusBadRequest)
				return
			}
			buffered.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		g.mu.Lock()
		user, ok := g.keys[cred]
		g.mu.Unlock()
		if !ok {
			tok, err := jwt.Parse(cred, func(*jwt.Token) (any, error) { return []byte(s.secret), nil }, jwt.WithValidMethods([]string{"HS256"}))
			if err != nil {
				w.WriteHeader(http.StatusUnauthorized)
				json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": err.Error()}})
				return
			}
			user, _ = tok.Claims.GetSubject()
		}
		r.Header.Del("Authorization")
		buffered.ServeHTTP(w, r)
		if r.URL.Path == "/v1/chat/completions" {
			g.mu.Lock()
			g.count[user]++
			g.mu.Unlock()
		}
	})
}
