package catemplate

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/scepkit/scepkit/internal/atomicfile"
	"github.com/scepkit/scepkit/internal/pemfile"
)

// File names used by [SaveCA], [LoadCA], [SaveRA] and [LoadRA] inside their directory.
const (
	CACertFile        = "ca.crt"         // CA certificate, then its chain
	CAKeyFile         = "ca.key"         // PKCS#8, mode 0600
	RASigningCertFile = "ra-sign.crt"    // RA signing certificate
	RASigningKeyFile  = "ra-sign.key"    // PKCS#8, mode 0600
	RAEncryptCertFile = "ra-encrypt.crt" // RA encryption certificate (same as signing when combined)
	RAEncryptKeyFile  = "ra-encrypt.key" // PKCS#8, mode 0600
)

// ErrKeyNotExportable is returned when saving a key that is not a software key
// (an HSM or KMS signer cannot be written to disk).
var ErrKeyNotExportable = errors.New("catemplate: key cannot be exported to a file")

// SaveCA writes the CA certificate (followed by Chain) and its key as PEM files in dir,
// creating dir with mode 0700 if needed. Keys are PKCS#8 with mode 0600. Each file is
// written to a temporary file in dir, synced, then renamed, so a crash leaves the old
// file or the new one, never half of one. The key is written before the certificate:
// a crash between the two can leave a new key beside the old certificate, and
// [LoadCA] then refuses the pair rather than use it. Revocations are not saved.
func SaveCA(dir string, ca *CA) error {
	if ca == nil || ca.Certificate == nil || ca.Signer == nil {
		return errors.New("catemplate: SaveCA: CA has no certificate or signer")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := keyPEM(ca.Signer)
	if err != nil {
		return err
	}
	certs := append([]*x509.Certificate{ca.Certificate}, ca.Chain...)
	if err := atomicfile.Write(filepath.Join(dir, CAKeyFile), key, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, CACertFile), pemfile.Encode(certs), 0o644)
}

// LoadCA reads a CA written by [SaveCA] and checks that the key matches the
// certificate. Now and Rand are left nil (time.Now, crypto/rand). Nothing is kept for
// CRL numbers: [CA.CRL] takes them from the clock, so they go on growing from those
// signed before.
func LoadCA(dir string) (*CA, error) {
	certs, err := readCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	key, err := readKey(filepath.Join(dir, CAKeyFile), certs[0])
	if err != nil {
		return nil, err
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("catemplate: %s is not a CA certificate", CACertFile)
	}
	return &CA{Certificate: certs[0], Signer: key, Chain: certs[1:]}, nil
}

// SaveRA writes the RA certificates and keys as PEM files in dir, like [SaveCA]. A
// combined RA writes the same certificate and key under both names.
func SaveRA(dir string, ra *RA) error {
	if ra == nil || ra.SigningCertificate == nil || ra.Signer == nil || ra.EncryptionCertificate == nil || ra.Decrypter == nil {
		return errors.New("catemplate: SaveRA: incomplete RA")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sk, err := keyPEM(ra.Signer)
	if err != nil {
		return err
	}
	ek, err := keyPEM(ra.Decrypter)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{RASigningKeyFile, sk, 0o600},
		{RAEncryptKeyFile, ek, 0o600},
		{RASigningCertFile, pemfile.Encode([]*x509.Certificate{ra.SigningCertificate}), 0o644},
		{RAEncryptCertFile, pemfile.Encode([]*x509.Certificate{ra.EncryptionCertificate}), 0o644},
	} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// LoadRA reads an RA written by [SaveRA], checking each key against its certificate.
func LoadRA(dir string) (*RA, error) {
	sc, err := readCerts(filepath.Join(dir, RASigningCertFile))
	if err != nil {
		return nil, err
	}
	ec, err := readCerts(filepath.Join(dir, RAEncryptCertFile))
	if err != nil {
		return nil, err
	}
	sk, err := readKey(filepath.Join(dir, RASigningKeyFile), sc[0])
	if err != nil {
		return nil, err
	}
	ek, err := readKey(filepath.Join(dir, RAEncryptKeyFile), ec[0])
	if err != nil {
		return nil, err
	}
	dec, ok := ek.(crypto.Decrypter)
	if !ok {
		return nil, fmt.Errorf("catemplate: %s cannot decrypt", RAEncryptKeyFile)
	}
	ra := &RA{SigningCertificate: sc[0], Signer: sk, EncryptionCertificate: ec[0], Decrypter: dec}
	if sc[0].Equal(ec[0]) {
		ra.EncryptionCertificate = ra.SigningCertificate
	}
	return ra, nil
}

func keyPEM(k any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyNotExportable, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// readCerts reads the PEM certificates of the file at path; errors other than the
// file's own name the package.
func readCerts(path string) ([]*x509.Certificate, error) {
	certs, err := pemfile.ReadCertificates(path)
	if pe := (*fs.PathError)(nil); err != nil && !errors.As(err, &pe) {
		return nil, fmt.Errorf("catemplate: %w", err)
	}
	return certs, err
}

// publicKeyEqual is implemented by the standard library's public key types.
type publicKeyEqual interface {
	Equal(crypto.PublicKey) bool
}

func readKey(path string, cert *x509.Certificate) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("catemplate: %s: no PKCS#8 PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("catemplate: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("catemplate: %s: unsupported key type %T", path, k)
	}
	pub, ok := s.Public().(publicKeyEqual)
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("catemplate: %s does not match its certificate", path)
	}
	return s, nil
}
