// Package exectest builds the example programs and runs them as real processes in
// tests: start one, learn its address from its "serving on" line, signal it, collect its
// output.
package exectest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Build compiles the main package in dir (relative to the test's package directory,
// for example "../gateway") once per test binary and returns the executable's path.
func Build(t testing.TB, dir string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := built[abs]; ok {
		return p
	}
	out, err := os.MkdirTemp("", "scepkit-example-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, filepath.Base(abs))
	cmd := exec.Command("go", "build", "-o", p, ".")
	cmd.Dir = abs
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, b)
	}
	built[abs] = p
	return p
}

// Cleanup removes what Build wrote; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	for _, p := range built {
		os.RemoveAll(filepath.Dir(p))
	}
}

// Buffer is a bytes.Buffer safe for a process writing while the test reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Process is a running example server.
type Process struct {
	Name   string
	Cmd    *exec.Cmd
	Base   string // http://ADDR from the "serving on" line
	Stdout *Buffer
	Stderr *Buffer
	done   chan error
	exited bool
	err    error
}

// Start runs bin with args and waits until it prints "<anything> serving on ADDR" on
// stdout. The process is killed when the test ends, and its stderr logged if the test
// failed.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(bin), Cmd: exec.Command(bin, args...), Stdout: &Buffer{}, Stderr: &Buffer{},
		done: make(chan error, 1)}
	p.Cmd.Stderr = p.Stderr
	pipe, err := p.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.exited {
			p.Cmd.Process.Kill()
			p.Wait(t, 10*time.Second)
		}
		if t.Failed() {
			t.Logf("%s %q\nstdout:\n%s\nstderr:\n%s", p.Name, args, p.Stdout, p.Stderr)
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.Stdout.Write([]byte(line + "\n"))
			if _, rest, ok := strings.Cut(line, " serving on "); ok && !strings.HasPrefix(line, " ") {
				select {
				case addr <- strings.TrimSpace(rest):
				default:
				}
			}
		}
		p.done <- p.Cmd.Wait()
	}()
	select {
	case p.Base = <-addr:
	case err := <-p.done:
		p.exited, p.err = true, err
		t.Fatalf("%s exited before serving: %v\nstdout:\n%s\nstderr:\n%s", p.Name, err, p.Stdout, p.Stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its address\nstderr:\n%s", p.Name, p.Stderr)
	}
	return p
}

// Wait waits for the process to exit and returns its exit error.
func (p *Process) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	if p.exited {
		return p.err
	}
	select {
	case p.err = <-p.done:
		p.exited = true
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.Name, timeout)
	}
	return p.err
}

// Stop sends SIGTERM and requires a clean exit (status 0).
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(t, 15*time.Second); err != nil {
		t.Fatalf("%s after SIGTERM: %v\nstderr:\n%s", p.Name, err, p.Stderr)
	}
}

// Run runs bin to completion and returns its stdout, stderr and exit code.
func Run(t testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", bin, err)
		}
		return o.String(), e.String(), ee.ExitCode()
	}
	return o.String(), e.String(), 0
}

// StdoutLine waits until the process has printed a line containing substr (lines after
// "serving on" may come a moment later) and returns that line.
func (p *Process) StdoutLine(t testing.TB, substr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(p.Stdout.String(), "\n") {
			if strings.Contains(line, substr) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no line with %q:\n%s", p.Name, substr, p.Stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
