//go:build !unix

package catemplate

import "time"

// cpuNow falls back to the wall clock where getrusage is missing.
func cpuNow() time.Duration { return time.Duration(time.Now().UnixNano()) }
