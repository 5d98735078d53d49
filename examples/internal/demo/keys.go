package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/internal/filelock"
)

// LoadOrCreatePKI loads the CA and RA kept in dir (catemplate.SaveCA, SaveRA), or makes
// an RSA-2048 CA named "<name> CA" and its RA, "<name> RA", and saves them there.
func LoadOrCreatePKI(dir, name string) (*catemplate.CA, *catemplate.RA, error) {
	// A directory that holds them is only read (it may be read-only).
	if ca, err := catemplate.LoadCA(dir); err == nil {
		if ra, err := catemplate.LoadRA(dir); err == nil {
			return ca, ra, nil
		}
	}
	// Processes started together on a new directory take turns, so that they share
	// one CA instead of each making one and all but the last losing its key.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lock, err := filelock.Acquire(ctx, filepath.Join(dir, "pki.lock"))
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for another process to make the CA in %s: %w", dir, err)
	}
	defer lock.Unlock()
	ca, err := catemplate.LoadCA(dir)
	if err == nil {
		ra, err := catemplate.LoadRA(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("CA found in %s but not its RA: %w", dir, err)
		}
		return ca, ra, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	ca, err = catemplate.NewCA(catemplate.CAOptions{KeySize: 2048,
		Subject: pkix.Name{CommonName: name + " CA", Organization: []string{"scepkit"}}})
	if err != nil {
		return nil, nil, err
	}
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{Subject: pkix.Name{CommonName: name + " RA"}})
	if err != nil {
		return nil, nil, err
	}
	if err := catemplate.SaveCA(dir, ca); err != nil {
		return nil, nil, err
	}
	return ca, ra, catemplate.SaveRA(dir, ra)
}

// LoadOrCreateEd25519Key reads an Ed25519 key (PKCS#8 PEM) from path, or makes one and
// writes it there, mode 0600, atomically.
func LoadOrCreateEd25519Key(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s holds no PEM key", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s is not an Ed25519 key", path)
		}
		return ek, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return key, WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
