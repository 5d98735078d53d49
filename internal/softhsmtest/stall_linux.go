package softhsmtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stallEnv, set in the environment of the test binary run again by Stall, names the
// directory whose files that process locks.
const stallEnv = "SOFTHSMTEST_STALL_DIR"

func init() {
	if dir := os.Getenv(stallEnv); dir != "" {
		os.Exit(holdLocks(dir))
	}
}

// Stall makes every call of the token's module that reads the token wait: another
// process takes a POSIX record lock (fcntl) on each file of the token's directory and
// holds them until release is called (or the test ends), as a softhsm2-util that
// writes the token holds them, and SoftHSM2 waits for them before each operation.
// It stands for any token that stops answering: a network HSM gone silent, a token
// store on a file system that hangs.
func (tk *Token) Stall(t testing.TB) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), stallEnv+"="+tk.Dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	release = sync.OnceFunc(func() {
		stdin.Close() // the holder exits, and the kernel drops its locks
		cmd.Wait()
	})
	t.Cleanup(release)
	locked := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "locked\n" {
			err = fmt.Errorf("the lock holder said %q", line)
		}
		locked <- err
	}()
	select {
	case err := <-locked:
		if err != nil {
			release()
			t.Fatalf("softhsmtest: locking %s: %v", tk.Dir, err)
		}
	case <-time.After(30 * time.Second):
		release()
		t.Fatalf("softhsmtest: locking %s took over 30 s", tk.Dir)
	}
	return release
}

// holdLocks write-locks every file in dir, says "locked", and holds the locks until
// its standard input ends (at most ten minutes).
func holdLocks(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "softhsmtest:", err)
		return 1
	}
	for _, e := range ents {
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "softhsmtest:", err)
			return 1
		}
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
			fmt.Fprintln(os.Stderr, "softhsmtest:", err)
			return 1
		}
	}
	os.Stdout.WriteString("locked\n")
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
	}
	return 0
}
