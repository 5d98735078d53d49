// Package pemfile reads and writes the PEM certificate files a CA and its gateway keep:
// a certificate followed by its chain, blocks of type CERTIFICATE. catemplate and
// cmd/scepkit share it.
package pemfile

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ErrNoCertificate: the file holds no CERTIFICATE block.
var ErrNoCertificate = errors.New("no certificate")

// ReadCertificates reads the certificates of the PEM file at path, in order; blocks
// of other types are skipped. A file without one is ErrNoCertificate; a block that
// does not parse is an error naming the file.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNoCertificate)
	}
	return certs, nil
}

// Encode returns certs as PEM CERTIFICATE blocks, in order.
func Encode(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
