//go:build !linux

package boltstore

import "os"

// fdatasync flushes f's data to the disk (fsync where fdatasync is not available).
func fdatasync(f *os.File) error { return f.Sync() }
