//go:build !linux

package main

// readOnlyFS reports whether dir is on a file system mounted read-only; outside
// Linux it is not asked, and the modes decide.
func readOnlyFS(string) bool { return false }
