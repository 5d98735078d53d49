//go:build !cgo

package pkcs11key

import "crypto"

// token is nothing in a program built without cgo: openToken refuses every
// configuration, so no Token holds one.
type token struct{}

func openToken(Config) (*token, error) { return nil, ErrNoCgo }

func (*token) close() error                                 { return ErrNoCgo }
func (*token) findKeyPairs(string) ([]crypto.Signer, error) { return nil, ErrNoCgo }
func (*token) generate([]byte, string, KeyType) (crypto.Signer, error) {
	return nil, ErrNoCgo
}

// fromCiphertext: no error comes from a token here.
func fromCiphertext(error) bool { return false }
