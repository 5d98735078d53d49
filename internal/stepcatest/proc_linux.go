package stepcatest

import (
	"os/exec"
	"syscall"
)

// terminate asks step-ca to shut down.
var terminate = syscall.SIGTERM

// setParentDeathSignal makes the kernel kill step-ca if the test process dies without
// running its cleanups.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
