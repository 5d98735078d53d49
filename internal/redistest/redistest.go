// Package redistest starts a private redis-server for tests: on 127.0.0.1, on a free
// port, in its own temporary directory, with persistence off, stopped by its own
// process id when the test ends. It never touches a Redis the machine runs as a
// service.
//
// When redis-server is not installed the test is skipped, or fails when the
// environment variable CI is "true" (CI installs it: see .ci/run).
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Binary is the redis-server program looked up in PATH.
const Binary = "redis-server"

// StartTimeout bounds how long Start waits for the server to answer PING.
const StartTimeout = 10 * time.Second

// Options configures [StartWith]. The zero value is what [Start] uses.
type Options struct {
	// Durable turns on the append-only file with an fsync before every reply
	// (appendonly yes, appendfsync always), so that what Redis acknowledged survives
	// Kill and Restart. Off, the server keeps nothing across a restart.
	Durable bool
}

// Server is a redis-server process the test owns.
type Server struct {
	// Addr is host:port, 127.0.0.1 and the port chosen on the first start; it stays
	// the same across Stop and Start.
	Addr string
	// Port is Addr's port.
	Port int

	t    testing.TB
	opt  Options
	bin  string
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// Start starts a redis-server on a free loopback port and registers its stop with
// t.Cleanup. It skips the test when redis-server is missing, unless CI=true, where it
// fails it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is [Start] with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redistest: %s not found (CI installs it: see .ci/run): %v", Binary, err)
		}
		t.Skipf("redistest: %s not installed: %v", Binary, err)
	}
	s := &Server{t: t, opt: o, bin: bin, dir: t.TempDir()}
	t.Cleanup(func() { s.Stop() })
	// Another process may take the free port between our probe and the server's bind:
	// try a few ports.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = s.start()
		if err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatalf("redistest: %v", err)
		}
		t.Logf("redistest: port %d: %v; trying another", port, err)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts the server again on the same port and in the same directory after
// Stop or Kill; the data is gone unless the server is Durable. It fails the test if the server does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	logPath := filepath.Join(s.dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	aof := []string{"--appendonly", "no"}
	if s.opt.Durable {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--daemonize", "no", "--dir", s.dir, "--logfile", "", "--loglevel", "warning",
		"--databases", "1"}, aof...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(StartTimeout)
	for {
		if err := ping(s.Addr); err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd, s.done = nil, nil
			return fmt.Errorf("%s exited: %s", Binary, tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stopLocked(false)
			return fmt.Errorf("%s did not answer PING within %v: %s", Binary, StartTimeout, tail(logPath))
		}
	}
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// Stop ends the server gracefully (SIGTERM, then SIGKILL after 5 s) and waits for
// it. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(true)
}

// Kill ends the server at once (SIGKILL), as a crash would, and waits for it.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(false)
}

func (s *Server) stopLocked(graceful bool) {
	if s.cmd == nil {
		return
	}
	p := s.cmd.Process // only ever our own child, by its pid
	if graceful {
		p.Signal(terminate)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			p.Kill()
			<-s.done
		}
	} else {
		p.Kill()
		<-s.done
	}
	s.cmd, s.done = nil, nil
}

// Running reports whether the process is up (not whether it answers).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// PID returns the server's process id, or 0 when it is stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Client returns a go-redis client for the server, closed by t.Cleanup. Its timeouts
// are short (dial 1 s, read and write 1 s) so that tests of an outage fail fast.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// FlushAll empties the server.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("redistest: FLUSHALL: %v", err)
	}
}
