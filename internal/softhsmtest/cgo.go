//go:build cgo

package softhsmtest

// cgoEnabled reports whether the test binary was built with cgo, which loading a
// PKCS#11 module needs.
const cgoEnabled = true
