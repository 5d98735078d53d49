//go:build !cgo

package main

import (
	"testing"

	"github.com/scepkit/scepkit/internal/softhsmtest"
)

// Without cgo no token is opened: softhsmtest.New skips each test that would reach
// these.

func requireKeysKept(t *testing.T, _ *softhsmtest.Token, _ ...string) {
	t.Skip("PKCS#11 needs cgo")
}

func deleteTokenKey(t *testing.T, _ *softhsmtest.Token, _ string) {
	t.Skip("PKCS#11 needs cgo")
}
