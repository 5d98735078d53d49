//go:build !linux

package radiustest

import "os/exec"

// setParentDeathSignal does nothing where the kernel has no parent-death signal.
func setParentDeathSignal(*exec.Cmd) {}
