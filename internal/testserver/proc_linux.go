package testserver

import (
	"os/exec"
	"syscall"
)

// Terminate is the signal that asks a server to shut down.
var Terminate = syscall.SIGTERM

// setParentDeathSignal makes the kernel kill the process if the test process dies
// without running its cleanups (a timeout panic, a SIGKILL). It keeps what the
// caller set in cmd.SysProcAttr (credentials, a process group).
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
