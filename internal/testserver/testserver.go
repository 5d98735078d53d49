// Package testserver is what the test helpers that run a real server share
// (internal/pgtest, redistest, radiustest, stepcatest, certmongertest): finding the
// program, a free loopback port and another when a process takes it first, starting
// the server so that the kernel kills it if the test process dies, waiting until it is
// ready or has exited, and stopping it gracefully, then for good. It only ever
// signals the processes it started, by their process id.
//
// A program the tests need and the machine lacks skips the test, or fails it when the
// environment variable CI is "true" (CI installs every program: see .ci/run).
package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Missing skips t because something it needs is not installed, or fails it when
// the environment variable CI is "true" (there, a missing program is a broken CI
// machine, not a reason to pass).
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI installs it: see .ci/run)", args...)
	}
	t.Skipf(format, args...)
}

// LookPath returns the path of program name in PATH, or in one of dirs. When it is
// in neither, it calls [Missing] with hint (how to install it).
func LookPath(t testing.TB, name, hint string, dirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		p := d + string(os.PathSeparator) + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, "%s not installed (%s)", name, hint)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// Attempts is how many free ports OnFreePort tries.
const Attempts = 3

// OnFreePort calls start with a port from free (FreePort, FreeUDPPort) and, when it
// fails, with another, [Attempts] times in all: another process may take a free port
// between the probe and the server's bind. It fails t, its messages prefixed by name,
// when every attempt failed.
func OnFreePort(t testing.TB, name string, free func() (int, error), start func(port int) error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port, err := free()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err = start(port); err == nil {
			return
		}
		if attempt == Attempts {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: port %d: %v; trying another", name, port, err)
	}
}

// Process is a server process a test started.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
}

// Ready describes how Start waits for a server: Check is called every Poll until it
// returns nil, for at most Timeout; Log returns what the server wrote, for errors.
type Ready struct {
	Check   func() error
	Poll    time.Duration
	Timeout time.Duration
	Log     func() string
}

// ErrNotReady is wrapped by Start's error when the server did not become ready in
// time (it is then killed).
var ErrNotReady = errors.New("not ready in time")

// Start starts cmd so that the kernel kills it if the test process dies without its
// cleanups (on Linux), then waits until r.Check succeeds. When the process exits
// first, or r.Timeout passes (the process is then killed), it returns an error that
// ends with the tail of r.Log.
func Start(cmd *exec.Cmd, r Ready) (*Process, error) {
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	if r.Check == nil {
		return p, nil
	}
	logTail := func() string {
		if r.Log == nil {
			return "(no log)"
		}
		return Tail(r.Log())
	}
	deadline := time.Now().Add(r.Timeout)
	for {
		if err := r.Check(); err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited: %s", cmd.Path, logTail())
		case <-time.After(r.Poll):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("%s: %w (%v): %s", cmd.Path, ErrNotReady, r.Timeout, logTail())
		}
	}
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop asks the process to end with sig and waits for it; after grace it kills it
// (SIGKILL) and waits again.
func (p *Process) Stop(sig os.Signal, grace time.Duration) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill ends the process at once (SIGKILL), as a crash would, and waits for it.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// tailLen bounds what Tail keeps.
const tailLen = 3000

// Tail returns the end of a server's output for an error message: at most the last
// 3000 bytes, trimmed, or "(no output)".
func Tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > tailLen {
		s = s[len(s)-tailLen:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// TailFile is Tail of the file at path (a server's log).
func TailFile(path string) string {
	b, _ := os.ReadFile(path)
	return Tail(string(b))
}

// Restartable is a server a test stops, kills (as a crash would) and starts again,
// on the same port and data. Set Launch, Signal and Grace, then call Start. Its
// methods are safe for concurrent use.
type Restartable struct {
	// Launch starts the server and waits until it is ready ([Start]).
	Launch func() (*Process, error)
	// Signal asks the server to shut down; Stop kills it when it has not after Grace.
	Signal os.Signal
	Grace  time.Duration
	// Around, when set, is called with the server's process id before it is stopped
	// or killed; the function it returns is called once the process has ended, with
	// whether it was killed (for processes of its own that the server leaves).
	Around func(pid int) (after func(killed bool))
	// Port, when set, is held while the server is down ([HoldPort]) and let go when it
	// starts again, so that no other test's server is given it meanwhile.
	Port int

	mu   sync.Mutex
	proc *Process // nil when stopped
	held func()   // lets the held port go
}

// Start launches the server; it is an error while it runs.
func (r *Restartable) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return errors.New("already running")
	}
	r.letGo()
	p, err := r.Launch()
	if err != nil {
		return err
	}
	r.proc = p
	return nil
}

// Stop ends the server gracefully and waits for it; stopping a stopped server does
// nothing.
func (r *Restartable) Stop() { r.end(false) }

// Kill ends the server at once (SIGKILL), as a crash would, and waits for it.
func (r *Restartable) Kill() { r.end(true) }

func (r *Restartable) end(kill bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	after := func(bool) {}
	if r.Around != nil {
		after = r.Around(r.proc.Pid())
	}
	if kill {
		r.proc.Kill()
	} else {
		r.proc.Stop(r.Signal, r.Grace)
	}
	after(kill)
	r.proc = nil
	if r.Port != 0 && r.held == nil {
		r.held = HoldPort(r.Port)
	}
}

// LetGo lets the port go that a server that is down holds; register it with
// t.Cleanup before the cleanup that stops the server (cleanups run last first).
func (r *Restartable) LetGo() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.letGo()
}

func (r *Restartable) letGo() {
	if r.held != nil {
		r.held()
		r.held = nil
	}
}

// Pid calls f with the server's process id while it runs (it is not stopped
// meanwhile), and reports whether it ran.
func (r *Restartable) Pid(f func(pid int)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return false
	}
	f(r.proc.Pid())
	return true
}

// Output collects what a server writes (its stdout and stderr), for a readiness check
// and error messages. It is safe for concurrent use; the zero value is ready.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written since the last Reset.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Reset forgets what was written.
func (o *Output) Reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b.Reset()
}
