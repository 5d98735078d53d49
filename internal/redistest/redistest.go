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
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scepkit/scepkit/internal/testserver"
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

	t   testing.TB
	opt Options
	bin string
	dir string
	srv testserver.Restartable
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
	bin := testserver.LookPath(t, Binary, "apt-get install redis-server")
	s := &Server{t: t, opt: o, bin: bin, dir: t.TempDir()}
	s.srv = testserver.Restartable{Launch: s.launch, Signal: testserver.Terminate, Grace: 5 * time.Second}
	t.Cleanup(s.srv.LetGo)
	t.Cleanup(s.Stop)
	testserver.OnFreePort(t, "redistest", testserver.FreePort, func(port int) error {
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.srv.Port = port
		return s.srv.Start()
	})
	return s
}

// Restart starts the server again on the same port and in the same directory after
// Stop or Kill; the data is gone unless the server is Durable. It fails the test if the server does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.srv.Start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// launch starts redis-server and waits until it answers PING.
func (s *Server) launch() (*testserver.Process, error) {
	logPath := filepath.Join(s.dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
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
	// Ready once this very process answers: on a restart, the port was free while the
	// server was down, and another test's redis-server may have taken it meanwhile
	// (go test ./... runs packages side by side). Its PONG must not pass for ours:
	// the test would go on against another server, without the data it kept.
	return testserver.Start(cmd, testserver.Ready{Check: func() error { return ping(s.Addr, cmd.Process.Pid) },
		Poll: 20 * time.Millisecond, Timeout: StartTimeout, Log: func() string { return testserver.TailFile(logPath) }})
}

// ping sends an inline PING and expects +PONG, then checks with INFO server that the
// server answering is the process pid.
func ping(addr string, pid int) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	got, err := serverPID(c, r)
	if err != nil {
		return err
	}
	if got != pid {
		return fmt.Errorf("%s is answered by redis-server process %d, not by ours (%d)", addr, got, pid)
	}
	return nil
}

// serverPID asks INFO server on c and returns its process_id.
func serverPID(c net.Conn, r *bufio.Reader) (int, error) {
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	head = strings.TrimSpace(head)
	n, err := strconv.Atoi(strings.TrimPrefix(head, "$"))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 {
		return 0, fmt.Errorf("INFO server answered %q", head)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server without process_id")
}

// Stop ends the server gracefully (SIGTERM, then SIGKILL after 5 s) and waits for
// it. Stopping a stopped server does nothing.
func (s *Server) Stop() { s.srv.Stop() }

// Kill ends the server at once (SIGKILL), as a crash would, and waits for it. Its
// port stays held until Restart (testserver.Restartable.Port).
func (s *Server) Kill() { s.srv.Kill() }

// Running reports whether the process is up (not whether it answers).
func (s *Server) Running() bool { return s.PID() != 0 }

// PID returns the server's process id, or 0 when it is stopped.
func (s *Server) PID() int {
	pid := 0
	s.srv.Pid(func(p int) { pid = p })
	return pid
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
