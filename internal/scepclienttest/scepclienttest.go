// Package scepclienttest runs micromdm's scepclient (Debian package scep) as a
// device, for tests that drive a gateway with a real SCEP client.
//
// When scepclient is not installed the test is skipped, or fails when the
// environment variable CI is "true" (CI installs it: see .ci/run).
package scepclienttest

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binary returns the path of scepclient, skipping or failing t when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("scepclient")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("scepclienttest: scepclient not installed (CI installs scep: see .ci/run): %v", err)
		}
		t.Skip("scepclienttest: scepclient not installed (apt-get install scep)")
	}
	return p
}

// Device is one device: a directory where scepclient keeps its key, CSR and
// certificate across runs (a second run with the certificate present renews it).
type Device struct {
	Bin, Dir string
}

// NewDevice returns a device with a fresh directory.
func NewDevice(t testing.TB) *Device {
	t.Helper()
	return &Device{Bin: Binary(t), Dir: t.TempDir()}
}

// Enroll runs scepclient against url with common name cn and the challenge (none
// when empty) and returns its combined output and exit error. Extra arguments (for
// example -debug) are appended.
func (d *Device) Enroll(url, cn, challenge string, extra ...string) (string, error) {
	args := []string{"-server-url", url, "-private-key", filepath.Join(d.Dir, "key.pem"),
		"-certificate", filepath.Join(d.Dir, "cert.pem"), "-cn", cn,
		"-organization", "", "-ou", "", "-country", ""}
	if challenge != "" {
		args = append(args, "-challenge", challenge)
	}
	args = append(args, extra...)
	out, err := exec.Command(d.Bin, args...).CombinedOutput()
	return string(out), err
}

// Certificate returns the certificate scepclient saved, or an error when there is
// none.
func (d *Device) Certificate() (*x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(d.Dir, "cert.pem"))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("scepclienttest: %s holds no PEM block", filepath.Join(d.Dir, "cert.pem"))
	}
	return x509.ParseCertificate(blk.Bytes)
}
