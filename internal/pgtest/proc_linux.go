//go:build linux

package pgtest

import (
	"os"
	"os/exec"
	"syscall"
)

// asServer makes cmd run as an unprivileged user when the test runs as root
// (PostgreSQL refuses to run as root): the user "nobody" (65534). It returns the uid
// and gid the data directory must belong to, or -1 when cmd runs as the caller. The
// kernel kills the server if the test process dies.
func asServer(cmd *exec.Cmd) (uid, gid int) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if os.Geteuid() != 0 {
		return -1, -1
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	return nobody, nobody
}

const nobody = 65534
