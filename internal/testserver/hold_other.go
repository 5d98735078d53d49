//go:build !linux

package testserver

// HoldPort does nothing here: the port stays free while the server is down.
func HoldPort(int) func() { return func() {} }
