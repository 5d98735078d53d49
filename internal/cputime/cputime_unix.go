//go:build unix

// Package cputime reads the CPU time the process has used, for benchmarks that
// report costs not skewed by other load on the machine.
package cputime

import (
	"syscall"
	"time"
)

// Now returns the CPU time (user + system, every thread) this process has used.
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
