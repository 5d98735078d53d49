package redistest

import (
	"os/exec"
	"syscall"
)

// terminate asks redis-server to shut down.
var terminate = syscall.SIGTERM

// setParentDeathSignal makes the kernel kill the server if the test process dies
// without running its cleanups (a timeout panic, a SIGKILL).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
