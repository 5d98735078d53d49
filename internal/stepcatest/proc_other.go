//go:build !linux

package stepcatest

import (
	"os"
	"os/exec"
)

// terminate asks step-ca to shut down.
var terminate = os.Interrupt

// setParentDeathSignal does nothing outside Linux: step-ca is stopped by the test's
// cleanup only.
func setParentDeathSignal(*exec.Cmd) {}
