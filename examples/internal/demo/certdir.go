package demo

import "github.com/scepkit/scepkit/crp"

// OpenCertificateDir opens the gateway's directory of issued certificates
// (crp.CertificateDir).
func OpenCertificateDir(dir string) (*crp.CertificateDir, error) { return crp.OpenCertificateDir(dir) }
