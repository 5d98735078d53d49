//go:build !linux

package testserver

import (
	"os"
	"os/exec"
)

// Terminate is the signal that asks a server to shut down (os.Interrupt: SIGINT
// where there are signals).
var Terminate = os.Interrupt

// setParentDeathSignal does nothing where the kernel has no parent-death signal: the
// process is stopped by the test's cleanup only.
func setParentDeathSignal(*exec.Cmd) {}
