package crptest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/scepkit/scepkit/crp"
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
	return key, writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFileAtomic writes data to a temporary file beside path and renames it into
// place, so a crash never leaves a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// certificateDir is a crp.CertificateStore that keeps each issued certificate as a JSON
// file in a directory and serves lookups from memory.
type certificateDir struct {
	dir string
	mem *crp.MemoryCertificates
}

type certificateFile struct {
	Certificate []byte `json:"certificate"` // DER
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	ProfileID   string `json:"profile_id"`
	Template    string `json:"template"`
}

func openCertificateDir(dir string, mem *crp.MemoryCertificates) (*certificateDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var f certificateFile
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("crptest: %s: %w", e.Name(), err)
		}
		c, err := x509.ParseCertificate(f.Certificate)
		if err != nil {
			return nil, fmt.Errorf("crptest: %s: %w", e.Name(), err)
		}
		mem.Add(context.Background(), &crp.IssuedCertificate{Certificate: c, UserID: f.UserID,
			DeviceID: f.DeviceID, ProfileID: f.ProfileID, Template: f.Template})
	}
	return &certificateDir{dir: dir, mem: mem}, nil
}

func (d *certificateDir) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	b, err := json.Marshal(certificateFile{Certificate: c.Certificate.Raw, UserID: c.UserID,
		DeviceID: c.DeviceID, ProfileID: c.ProfileID, Template: c.Template})
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%x.json", c.Certificate.SerialNumber)
	if err := writeFileAtomic(filepath.Join(d.dir, name), b, 0o600); err != nil {
		return err
	}
	return d.mem.Add(ctx, c)
}

func (d *certificateDir) Lookup(ctx context.Context, serial *big.Int) (*crp.IssuedCertificate, error) {
	return d.mem.Lookup(ctx, serial)
}
