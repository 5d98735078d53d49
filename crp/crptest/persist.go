package crptest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/scepkit/scepkit/internal/atomicfile"
	"os"
	"path/filepath"
)

// loadOrCreateMDMKey keeps the demo MDM's challenge-signing key in dir (when set), so
// that challenges minted before a restart still verify after it.
func loadOrCreateMDMKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, "mdm-ed25519.pem")
	if dir != "" {
		b, err := os.ReadFile(path)
		if err == nil {
			blk, _ := pem.Decode(b)
			if blk == nil {
				return nil, fmt.Errorf("crptest: %s holds no PEM key", path)
			}
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, err
			}
			ek, ok := k.(ed25519.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("crptest: %s is not an Ed25519 key", path)
			}
			return ek, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil || dir == "" {
		return key, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return key, atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
