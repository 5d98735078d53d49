//go:build !linux

package redistest

import (
	"os"
	"os/exec"
)

// terminate asks redis-server to shut down (os.Interrupt: SIGINT where there are
// signals).
var terminate = os.Interrupt

// setParentDeathSignal does nothing outside Linux: the server is stopped by the
// test's cleanup only.
func setParentDeathSignal(*exec.Cmd) {}
