//go:build !windows

package pgtest

import "syscall"

// The signals Freeze and Thaw send.
const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)

// kill sends sig to process pid (0: whether it exists).
func kill(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
