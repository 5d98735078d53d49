package main

import (
	"fmt"
	"testing"

	"github.com/scepkit/scepkit/pkcs11key"
)

// TestTokenWithoutCgo: a scepkit built without cgo, given a [pkcs11] section, refuses
// it as a configuration (exit status 2, pkcs11.module named) rather than as a token
// not there yet, which a supervisor would restart for ever.
func TestTokenWithoutCgo(t *testing.T) {
	err := tokenOpenError(fmt.Errorf("opening: %w", pkcs11key.ErrNoCgo))
	if got := exitStatus(err); got != exitConfig {
		t.Errorf("exit status %d, want %d (configuration): %v", got, exitConfig, err)
	}
	if bs, ok := err.(*badSetting); !ok || bs.Setting != "pkcs11.module" {
		t.Errorf("error %v does not name pkcs11.module", err)
	}
}
