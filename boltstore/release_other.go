//go:build !linux

package boltstore

import bolt "go.etcd.io/bbolt"

// releaseMapping takes the pages of db's memory map out of the process's resident set
// on Linux (see release_linux.go); elsewhere it does nothing.
func releaseMapping(*bolt.DB) error { return nil }
