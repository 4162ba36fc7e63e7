package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/llmgate/llmgate/internal/freeport"
)

// Child is an external process the benchmark started (the emulator, Caddy).
type Child struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid once done is closed
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop kills the process and waits for it. Killing outright is fine: no
// child holds anything the benchmark still needs once it is over.
func (c *Child) stop() {
	if c.Exited() {
		return
	}
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

// LogTail returns the last n bytes of the child's output, for error
// messages.
func (c *Child) LogTail(n int) string {
	b, err := os.ReadFile(c.LogPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Supervisor starts child processes and makes sure none outlives the
// benchmark: StopAll on every exit path, and the kernel's parent-death
// signal if the benchmark itself is killed without a chance to clean up.
type Supervisor struct {
	mu       sync.Mutex
	children []*Child
	stopped  bool
}

// Start runs bin with args, its output going to logDir/<name>.log and
// env added to the inherited environment.
func (s *Supervisor) Start(name, logDir string, env []string, bin string, args ...string) (*Child, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, errors.New("shutting down")
	}
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a Ctrl-C in the terminal reaches only
		// the benchmark, which then stops its children in order.
		Setpgid: true,
		// Dies with the benchmark even if the benchmark is SIGKILLed.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	s.children = append(s.children, c)
	return c, nil
}

// StopAll kills every child started so far, newest first, and refuses
// further starts.
func (s *Supervisor) StopAll() {
	s.mu.Lock()
	s.stopped = true
	children := s.children
	s.children = nil
	s.mu.Unlock()
	for i := len(children) - 1; i >= 0; i-- {
		children[i].stop()
	}
}

// FreePort returns a TCP port below the kernel's ephemeral range that was
// free a moment ago (see freeport). Another process could take it before the
// child binds it; the readiness check then fails loudly rather than
// measuring the wrong server.
func FreePort() (int, error) {
	return freeport.Pick(nil)
}

// WaitReady polls url with GET until it answers with a status below 500,
// the child exits, ctx ends or timeout passes.
func WaitReady(ctx context.Context, c *Child, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if c != nil && c.Exited() {
			return fmt.Errorf("%s exited (%v) before answering %s:\n%s", c.Name, c.err, url, c.LogTail(2000))
		}
		if time.Now().After(deadline) {
			name := "server"
			if c != nil {
				name = c.Name
			}
			return fmt.Errorf("%s did not answer %s within %v: %v", name, url, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
