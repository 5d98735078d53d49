//go:build !linux

package redistest

// holdPort does nothing here: the port stays free while the server is down.
func holdPort(int) func() { return func() {} }
