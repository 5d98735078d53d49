//go:build !windows

package testserver_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scepkit/scepkit/internal/testserver"
)

func shell(t *testing.T, script string) (*exec.Cmd, *testserver.Output) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	out := &testserver.Output{}
	cmd := exec.Command(sh, "-c", script)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  string
		timeout time.Duration
		want    error  // nil: ready
		wantLog string // in the error
	}{
		{"ready", "echo starting; sleep 0.2; echo ready; exec sleep 60", 10 * time.Second, nil, ""},
		{"exits first", "echo 'bad configuration'; exit 3", 10 * time.Second, nil, "bad configuration"},
		{"never ready", "echo waiting; exec sleep 60", 300 * time.Millisecond, testserver.ErrNotReady, "waiting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, out := shell(t, tc.script)
			ready := func() error {
				if !strings.Contains(out.String(), "ready\n") {
					return errors.New("not yet")
				}
				return nil
			}
			p, err := testserver.Start(cmd, testserver.Ready{Check: ready, Poll: 10 * time.Millisecond,
				Timeout: tc.timeout, Log: out.String})
			if tc.wantLog == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				p.Stop(testserver.Terminate, 5*time.Second)
				select {
				case <-p.Exited():
				default:
					t.Fatal("Stop returned before the process exited")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantLog) {
				t.Fatalf("Start: %v, want an error with the server's output %q", err, tc.wantLog)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Start: %v, want %v", err, tc.want)
			}
			// The process is gone: never left running behind a failed start.
			if cmd.ProcessState == nil {
				t.Fatal("the process was not waited for")
			}
		})
	}
}

// A process that ignores the graceful signal is killed after the grace period.
func TestStopKillsAfterGrace(t *testing.T) {
	cmd, out := shell(t, "trap '' TERM INT; echo ready; while :; do sleep 1; done")
	p, err := testserver.Start(cmd, testserver.Ready{Check: func() error {
		if !strings.Contains(out.String(), "ready") {
			return errors.New("not yet")
		}
		return nil
	}, Poll: 10 * time.Millisecond, Timeout: 10 * time.Second, Log: out.String})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Stop(testserver.Terminate, 300*time.Millisecond)
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Stop took %v, want the grace period then a kill", d)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signal() != syscall.SIGKILL {
		t.Fatalf("ended by %v, want SIGKILL", ws.Signal())
	}
}

// OnFreePort tries another port when a start fails (the port was taken).
func TestOnFreePortRetries(t *testing.T) {
	var tried []int
	testserver.OnFreePort(t, "test", testserver.FreePort, func(port int) error {
		tried = append(tried, port)
		if len(tried) < testserver.Attempts {
			return errors.New("address already in use")
		}
		return nil
	})
	if len(tried) != testserver.Attempts {
		t.Fatalf("tried %v", tried)
	}
	for _, p := range tried {
		if p <= 0 {
			t.Fatalf("port %d", p)
		}
	}
}

// A missing program skips the test, except under CI=true, where it fails it. Run in
// a child process (this test binary), as the test framework sees it.
func TestMissing(t *testing.T) {
	if os.Getenv("TESTSERVER_CHILD") == "1" {
		testserver.LookPath(t, "scepkit-no-such-program", "nowhere to get it")
		return
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"", false, "SKIP: TestMissing"},
		{"true", true, "CI installs it"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissing$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTSERVER_CHILD=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail || !strings.Contains(string(out), tc.want) {
			t.Fatalf("CI=%q: failed %v, output:\n%s\nwant failed %v and %q", tc.ci, err != nil, out, tc.wantFail, tc.want)
		}
	}
}

// A Restartable starts once at a time, stops and is killed by its own process id,
// and starts again; Around sees each end.
func TestRestartable(t *testing.T) {
	var ends []string
	r := &testserver.Restartable{
		Launch: func() (*testserver.Process, error) {
			cmd, _ := shell(t, "exec sleep 60")
			return testserver.Start(cmd, testserver.Ready{})
		},
		Signal: testserver.Terminate, Grace: 5 * time.Second,
		Around: func(pid int) func(bool) {
			return func(killed bool) {
				// Our own child, waited for: its pid is gone.
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("process %d still there after its end", pid)
				}
				ends = append(ends, map[bool]string{true: "killed", false: "stopped"}[killed])
			}
		},
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err == nil {
		t.Fatal("a second Start while running succeeded")
	}
	first := 0
	if !r.Pid(func(pid int) { first = pid }) || first == 0 {
		t.Fatal("no pid while running")
	}
	r.Kill()
	if r.Pid(func(int) {}) {
		t.Fatal("a pid after Kill")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Stop() // stopping a stopped server does nothing
	if got := strings.Join(ends, ","); got != "killed,stopped" {
		t.Fatalf("ends %s", got)
	}
}
