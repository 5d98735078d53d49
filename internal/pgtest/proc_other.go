//go:build !linux

package pgtest

import "os/exec"

// asServer runs cmd as the caller outside Linux.
func asServer(*exec.Cmd) (uid, gid int) { return -1, -1 }
