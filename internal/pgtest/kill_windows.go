package pgtest

import (
	"errors"
	"os"
	"syscall"
)

// Windows has no signals to stop and resume a process: Freeze and Thaw report
// that they cannot.
const (
	sigStop syscall.Signal = -1
	sigCont syscall.Signal = -2
)

// kill ends process pid for SIGKILL, and for 0 reports whether it exists; Windows
// has no other signal.
func kill(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	switch {
	case err != nil:
		return err
	case sig == 0:
		return p.Release()
	case sig == syscall.SIGKILL:
		return p.Kill()
	}
	p.Release()
	return errors.ErrUnsupported
}
