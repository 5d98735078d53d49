//go:build linux

// Package certmongertest runs certmonger for tests (on Linux): a private D-Bus session bus
// (dbus-daemon on a Unix socket in a temporary directory, never the system bus) and a
// certmonger daemon on that bus, with its requests, CAs and temporary files in the
// same directory. Both processes are stopped by their own process ids when the test
// ends. getcert talks to the daemon with -s.
//
// When certmonger or dbus-daemon is not installed the test is skipped, or fails when
// the environment variable CI is "true" (CI installs them: see .ci/run).
package certmongertest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scepkit/scepkit/internal/testserver"
)

// StartTimeout bounds how long Start waits for the bus and the daemon.
const StartTimeout = 15 * time.Second

// Daemon is a certmonger process on a private session bus, owned by the test.
type Daemon struct {
	// Dir holds the bus socket and certmonger's state; tests may put keys and
	// certificates there.
	Dir string

	t     testing.TB
	env   []string
	getc  string
	log   testserver.Output
	procs []*testserver.Process
}

// Start starts a session bus and certmonger on it, and registers their stop with
// t.Cleanup.
func Start(t testing.TB) *Daemon {
	t.Helper()
	bins := map[string]string{}
	for _, name := range []string{"dbus-daemon", "certmonger", "getcert"} {
		bins[name] = testserver.LookPath(t, name, "certmongertest: apt-get install certmonger dbus-daemon",
			"/usr/sbin", "/sbin")
	}
	// A short directory: a Unix socket path is limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "cm")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: dir, t: t, getc: bins["getcert"]}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("certmonger log:\n%s", d.Log())
		}
		os.RemoveAll(dir)
	})
	for _, sub := range []string{"requests", "cas", "tmp", "config", "local"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	bus := "unix:path=" + filepath.Join(dir, "bus")
	// A bus of our own: no service directories, so that nothing is activated on it
	// (the packaged session service would start a second certmonger).
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>`+bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o600); err != nil {
		t.Fatal(err)
	}
	d.env = append(os.Environ(),
		"DBUS_SESSION_BUS_ADDRESS="+bus,
		"CERTMONGER_REQUESTS_DIR="+filepath.Join(dir, "requests"),
		"CERTMONGER_CAS_DIR="+filepath.Join(dir, "cas"),
		"CERTMONGER_TMPDIR="+filepath.Join(dir, "tmp"),
		// certmonger takes a lock, /var/lib/certmonger/lock unless told otherwise: a
		// private one, so that a certmonger already running (the system's, or another
		// test's) does not keep this one waiting for it.
		"CERTMONGER_SYSTEM_LOCK_FILE="+filepath.Join(dir, "lock"),
		"CERTMONGER_CONFIG_DIR="+filepath.Join(dir, "config"),
		"CERTMONGER_LOCAL_CA_DIR="+filepath.Join(dir, "local"),
	)

	// The bus prints its address once it listens.
	dbus := exec.Command(bins["dbus-daemon"], "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	dbus.Env = d.env
	out, err := dbus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	dbus.Stderr = &d.log
	d.start(dbus)
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- line
		io.Copy(io.Discard, out)
	}()
	select {
	case line := <-addr:
		if !strings.HasPrefix(line, "unix:") {
			t.Fatalf("certmongertest: dbus-daemon did not start: %q %s", line, d.Log())
		}
	case <-time.After(StartTimeout):
		t.Fatalf("certmongertest: dbus-daemon did not start within %v: %s", StartTimeout, d.Log())
	}

	cm := exec.Command(bins["certmonger"], "-s", "-n", "-B", "-d", "1")
	cm.Env = d.env
	cm.Stdout, cm.Stderr = &d.log, &d.log
	d.start(cm)
	deadline := time.Now().Add(StartTimeout)
	for {
		if _, err := d.Getcert("list-cas"); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("certmongertest: certmonger did not answer within %v: %s", StartTimeout, d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *Daemon) start(cmd *exec.Cmd) {
	p, err := testserver.Start(cmd, testserver.Ready{})
	if err != nil {
		d.t.Fatalf("certmongertest: starting %s: %v", cmd.Path, err)
	}
	d.procs = append(d.procs, p)
}

// stop ends certmonger, then the bus, each by its own process id.
func (d *Daemon) stop() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		d.procs[i].Stop(syscall.SIGTERM, 5*time.Second)
	}
}

// Log returns what the bus and certmonger wrote so far.
func (d *Daemon) Log() string { return d.log.String() }

// Getcert runs "getcert COMMAND -s ARGS..." against the daemon and returns its
// combined output.
func (d *Daemon) Getcert(command string, args ...string) (string, error) {
	cmd := exec.Command(d.getc, append([]string{command, "-s"}, args...)...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("getcert %s %s: %w: %s", command, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// List returns the fields "getcert list -i id" shows for one request (status,
// ca-error, stuck, subject, ...), keyed by name.
func (d *Daemon) List(id string) (map[string]string, error) {
	out, err := d.Getcert("list", "-i", id)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "\t") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			if _, seen := fields[k]; !seen {
				fields[k] = strings.TrimSpace(v)
			}
		}
	}
	if fields["status"] == "" {
		return nil, fmt.Errorf("getcert list -i %s: no status in %q", id, out)
	}
	return fields, nil
}

// WaitStatus polls request id until its status is one of want, and returns its
// fields; it fails the test after timeout.
func (d *Daemon) WaitStatus(id string, timeout time.Duration, want ...string) map[string]string {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]string
	for {
		f, err := d.List(id)
		if err == nil {
			last = f
			for _, w := range want {
				if f["status"] == w {
					return f
				}
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("certmongertest: request %s did not reach %v within %v (last %v, err %v)\n%s",
				id, want, timeout, last, err, d.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
