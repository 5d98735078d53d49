//go:build !cgo

package pkcs11key_test

import (
	"errors"
	"testing"

	"github.com/scepkit/scepkit/pkcs11key"
)

// TestOpenWithoutCgo: a program built without cgo builds with the package, and Open
// says why it cannot load a module, whatever the configuration.
func TestOpenWithoutCgo(t *testing.T) {
	_, err := pkcs11key.Open(pkcs11key.Config{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "t", PIN: "1234"})
	if !errors.Is(err, pkcs11key.ErrNoCgo) {
		t.Fatalf("Open without cgo: %v, want ErrNoCgo", err)
	}
	if _, err := pkcs11key.Open(pkcs11key.Config{}); !errors.Is(err, pkcs11key.ErrConfig) {
		t.Fatalf("an incomplete configuration: %v, want ErrConfig first", err)
	}
}
