//go:build unix

package catemplate

import (
	"syscall"
	"time"
)

// cpuNow returns the CPU time (user + system) this process has used. Benchmarks use it
// for the x-floor ratio so that other load on the machine does not skew it.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
