//go:build cgo

package pkcs11key

import (
	"crypto"
	"crypto/elliptic"
	"errors"
	"fmt"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// token is a token the PKCS#11 module opened, through crypto11.
type token struct {
	ctx *crypto11.Context
}

// openToken loads the module of c and logs in to its token, within c.Timeout.
func openToken(c Config) (*token, error) {
	ctx, err := within(c.Timeout, func() (*crypto11.Context, error) {
		return crypto11.Configure(&crypto11.Config{Path: c.Module, TokenLabel: c.TokenLabel,
			TokenSerial: c.TokenSerial, Pin: c.PIN, MaxSessions: c.MaxSessions, PoolWaitTimeout: c.Timeout})
	}, func(ctx *crypto11.Context) { ctx.Close() })
	if errors.Is(err, ErrTimeout) {
		return nil, fmt.Errorf("pkcs11key: opening token: %w", err)
	}
	if err != nil {
		if err.Error() == crypto11TokenNotFound {
			which := "label " + fmt.Sprintf("%q", c.TokenLabel)
			if c.TokenSerial != "" {
				which = "serial number " + fmt.Sprintf("%q", c.TokenSerial)
			}
			return nil, fmt.Errorf("%w: the module has no token with %s", ErrTokenNotFound, which)
		}
		return nil, fmt.Errorf("pkcs11key: opening token: %w", err)
	}
	return &token{ctx: ctx}, nil
}

// crypto11TokenNotFound is the text of crypto11's unexported error for a token it
// does not find (TestOpenRefuses checks it against the crypto11 in go.mod).
const crypto11TokenNotFound = "could not find PKCS#11 token"

func (t *token) close() error { return t.ctx.Close() }

// findKeyPairs returns the key pairs whose private key is labelled label.
func (t *token) findKeyPairs(label string) ([]crypto.Signer, error) {
	keys, err := t.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return nil, err
	}
	out := make([]crypto.Signer, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out, nil
}

// generate makes a key pair of type kt (one GenerateKey accepts) with CKA_ID id and
// CKA_LABEL label.
func (t *token) generate(id []byte, label string, kt KeyType) (crypto.Signer, error) {
	switch kt {
	case ECDSAP256:
		return t.ctx.GenerateECDSAKeyPairWithLabel(id, []byte(label), elliptic.P256())
	case ECDSAP384:
		return t.ctx.GenerateECDSAKeyPairWithLabel(id, []byte(label), elliptic.P384())
	}
	bits := map[KeyType]int{RSA2048: 2048, RSA3072: 3072, RSA4096: 4096}[kt]
	return t.ctx.GenerateRSAKeyPairWithLabel(id, []byte(label), bits)
}

// fromCiphertext reports whether a decryption error may depend on the ciphertext: any
// error the token returned (SoftHSM2 reports a bad padding as CKR_GENERAL_ERROR),
// except those that say the token, session or key cannot be used at all. Errors that
// do not come from the token (crypto11's closed context, no free session) cannot.
func fromCiphertext(err error) bool {
	var ck pkcs11.Error
	if !errors.As(err, &ck) {
		return false
	}
	switch ck {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID,
		pkcs11.CKR_HOST_MEMORY, pkcs11.CKR_DEVICE_MEMORY:
		return false
	}
	return true
}
