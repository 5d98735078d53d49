//go:build !linux

package softhsmtest

import "testing"

// Stall makes every call of the token's module that reads the token wait, until
// release is called. It needs Linux: the test is skipped elsewhere.
func (tk *Token) Stall(t testing.TB) (release func()) {
	t.Helper()
	t.Skip("softhsmtest: Stall is implemented on Linux only")
	return func() {}
}
