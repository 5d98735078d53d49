// Package pgtest starts a private PostgreSQL server for tests: initdb in a temporary
// directory, postgres on 127.0.0.1 and a free port, trust authentication for the
// superuser "postgres" over loopback only, stopped by its own process id when the test
// ends. It never touches a PostgreSQL the machine runs as a service. PostgreSQL refuses
// to run as root: when the test runs as root, initdb and postgres run as the user
// nobody, in a directory that user owns.
//
// When PostgreSQL's binaries are not installed (Debian's postgresql package puts them
// in /usr/lib/postgresql/VERSION/bin) the test is skipped, or fails when the
// environment variable CI is "true" (CI installs them: see .ci/run).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/scepkit/scepkit/internal/testserver"
)

// StartTimeout bounds how long Start waits for the server to accept connections.
const StartTimeout = 30 * time.Second

// Server is a postgres process the test owns.
type Server struct {
	// Addr is host:port, 127.0.0.1 and the port chosen on the first start; it stays
	// the same across Stop and Restart.
	Addr string
	Port int

	t   testing.TB
	bin string // the directory of initdb and postgres
	dir string // owns data/ and the log
	srv testserver.Restartable
	dbs atomic.Int64
}

// BinDir returns the directory of PostgreSQL's server programs: the newest
// /usr/lib/postgresql/*/bin that has initdb, or the directory of an initdb in PATH.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("initdb not found in /usr/lib/postgresql/*/bin nor in PATH")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initializes a cluster and starts postgres on a free loopback port; the server
// is stopped and its directory removed by t.Cleanup. It skips the test when PostgreSQL
// is missing, unless CI=true, where it fails it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		testserver.Missing(t, "pgtest: PostgreSQL not installed (apt-get install postgresql): %v", err)
	}
	// Not t.TempDir: its parents are private to the test's user, and the server may
	// run as another.
	dir, err := os.MkdirTemp("", "scepkit-pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: dir}
	// SIGINT is PostgreSQL's fast shutdown: connections are closed, the data is
	// checkpointed.
	s.srv = testserver.Restartable{Launch: s.launch, Signal: syscall.SIGINT, Grace: 30 * time.Second,
		Around: reapBackends}
	t.Cleanup(func() {
		s.Stop()
		s.srv.LetGo()
		os.RemoveAll(dir)
	})
	if err := s.initdb(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	testserver.OnFreePort(t, "pgtest", testserver.FreePort, func(port int) error {
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.srv.Port = port // held while the server is down (Stop, Kill), until Restart
		return s.srv.Start()
	})
	return s
}

func (s *Server) command(name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"LC_ALL=C", "TZ=UTC", "PATH=/usr/bin:/bin"}
	if uid, gid := asServer(cmd); uid >= 0 {
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return nil, err
		}
	}
	return cmd, nil
}

func (s *Server) initdb() error {
	cmd, err := s.command("initdb", "-D", filepath.Join(s.dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-instructions")
	if err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	return nil
}

// Restart starts the server again on the same port and data after Stop or Kill. It
// fails the test if the server does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.srv.Start(); err != nil {
		s.t.Fatalf("pgtest: restart: %v", err)
	}
}

// launch starts postgres and waits until it accepts connections.
func (s *Server) launch() (*testserver.Process, error) {
	logPath := filepath.Join(s.dir, "postgres.log")
	cmd, err := s.command("postgres", "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir,
		"-c", "max_connections=60", "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning",
		"-c", "logging_collector=off",
		// A test server need not survive a power loss, only the loss of its processes
		// (Kill): writes reach the operating system before a commit is acknowledged,
		// without waiting for the disk, which is shared with everything else here.
		"-c", "fsync=off", "-c", "full_page_writes=off")
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	return testserver.Start(cmd, testserver.Ready{Check: s.ping, Poll: 50 * time.Millisecond,
		Timeout: StartTimeout, Log: func() string { return testserver.TailFile(logPath) }})
}

func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.Ping(ctx)
}

// DSN returns a connection string for database db as the superuser, with a short
// connect timeout (so that tests of an outage fail fast).
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&connect_timeout=2", s.Addr, db)
}

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s.DSN(name)
}

// Stop ends the server with a fast shutdown (SIGINT: connections are closed, the
// data is checkpointed), then SIGKILL after 30 s, and waits for it. Stopping a stopped
// server does nothing.
func (s *Server) Stop() { s.srv.Stop() }

// Kill ends the server at once (SIGKILL), as a crash would, and waits for it; its
// backends are killed too. Restart recovers from the WAL.
func (s *Server) Kill() { s.srv.Kill() }

// Freeze stops the server and its backends (SIGSTOP) without closing anything, as a
// hung server or a network that drops packets looks to a client: connections are
// accepted by the kernel and queries are never answered. Thaw resumes it.
func (s *Server) Freeze() { s.signalAll(sigStop) }

// Thaw resumes a server Freeze stopped (SIGCONT).
func (s *Server) Thaw() { s.signalAll(sigCont) }

// signalAll sends sig to the postmaster first (it forks no backend while stopped),
// then to its children: each is a session leader of its own, so a signal to the
// postmaster's process group does not reach them. Only our own processes: the
// postmaster we started and the processes whose parent it is.
func (s *Server) signalAll(sig syscall.Signal) {
	s.srv.Pid(func(pid int) {
		if err := kill(pid, sig); err != nil {
			s.t.Errorf("pgtest: %v: %v", sig, err)
		}
		for _, child := range children(pid) {
			kill(child, sig)
		}
	})
}

// reapBackends is called before the postmaster pid is stopped. The backends and
// workers are its children, which exit when they see it gone; after a Kill, what is
// left of them is killed too, as a crash would. Either way it waits until none is
// left, so that the port, the shared memory and the data directory are free for
// Restart.
func reapBackends(pid int) func(killed bool) {
	kids := children(pid)
	return func(killed bool) {
		if killed {
			for _, kid := range kids {
				kill(kid, syscall.SIGKILL)
			}
		}
		for i := 0; i < 100 && anyAlive(kids); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func anyAlive(pids []int) bool {
	for _, pid := range pids {
		if alive(pid) {
			return true
		}
	}
	return false
}
