//go:build cgo

package main

import (
	"errors"

	"github.com/miekg/pkcs11"
)

// tokenCode is the PKCS#11 return value (CKR_*) err carries, if any.
func tokenCode(err error) (uint, bool) {
	var code pkcs11.Error
	if errors.As(err, &code) {
		return uint(code), true
	}
	return 0, false
}
