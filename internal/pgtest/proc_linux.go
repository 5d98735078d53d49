//go:build linux

package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// asServer makes cmd run as an unprivileged user when the test runs as root
// (PostgreSQL refuses to run as root): the user "nobody" (65534). It returns the uid
// and gid the data directory must belong to, or -1 when cmd runs as the caller. The
// server gets a process group of its own (signals meant for the test's, such as a
// terminal's interrupt, do not reach it).
func asServer(cmd *exec.Cmd) (uid, gid int) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() != 0 {
		return -1, -1
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	return nobody, nobody
}

const nobody = 65534

// stat returns the state and the parent of the process whose /proc/PID/stat is at
// path ("pid (comm) state ppid ...": comm may hold spaces and parentheses).
func stat(path string) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, false
	}
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// alive reports whether process pid exists and has not exited (a zombie has).
func alive(pid int) bool {
	state, _, ok := stat("/proc/" + strconv.Itoa(pid) + "/stat")
	return ok && state != "Z"
}

// children returns the processes whose parent is pid, from /proc.
func children(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, path := range stats {
		if _, ppid, ok := stat(path); ok && ppid == pid {
			if child, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil {
				out = append(out, child)
			}
		}
	}
	return out
}
