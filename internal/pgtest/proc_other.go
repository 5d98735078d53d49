//go:build !linux

package pgtest

import "os/exec"

// asServer runs cmd as the caller outside Linux.
func asServer(*exec.Cmd) (uid, gid int) { return -1, -1 }

// children finds no processes outside Linux (Freeze then stops the postmaster only).
func children(int) []int { return nil }

// alive reports whether process pid exists.
func alive(pid int) bool { return kill(pid, 0) == nil }
