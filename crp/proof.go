package crp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/scepkit/scepkit/scep"
)

// ErrNoProof is returned by [TLSProof] and [SignatureProof] when what they were given
// does not show that the requester holds the certificate's key.
var ErrNoProof = errors.New("crp: no proof of possession of the certificate's key")

// Proof is a certificate whose private key the requester has been seen to use for
// this request: what makes a request to [RegistrationPoint.Enroll] a renewal (no
// challenge). A certificate alone proves nothing, since certificates are public: a
// front end that passed on a certificate the client merely sent would let anyone
// renew as anyone. So a Proof is made only by [TLSProof], from a TLS handshake in
// which the client signed with the key, or by [SignatureProof], which verifies the
// client's signature over its CSR with the certificate's key. The zero Proof proves
// nothing and makes no renewal. The registration point then checks the certificate
// as for any renewal: issued by this CA, valid, not revoked, known, renewed once.
type Proof struct {
	cert *x509.Certificate
	csr  []byte // the CSR the proof signature covers; nil for a TLS proof
}

// Certificate returns the certificate whose key was proved, or nil.
func (p *Proof) Certificate() *x509.Certificate {
	if p == nil {
		return nil
	}
	return p.cert
}

// TLSProof returns a Proof of the certificate the client authenticated with in a
// completed TLS handshake: the first of cs.PeerCertificates. crypto/tls verifies the
// client's CertificateVerify signature whenever the client sends a certificate,
// whatever tls.Config.ClientAuth says (RFC 8446 §4.4.3, RFC 5246 §7.4.8), so the
// handshake shows the client holds the key; chain and revocation are the registration
// point's to check. Pass the state crypto/tls produced for this connection
// (http.Request.TLS), never one rebuilt from a proxy's headers: a front end behind a
// TLS-terminating proxy must use [SignatureProof] instead.
func TLSProof(cs *tls.ConnectionState) (*Proof, error) {
	if cs == nil || !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0] == nil {
		return nil, fmt.Errorf("%w: no client certificate in a completed TLS handshake", ErrNoProof)
	}
	return &Proof{cert: cs.PeerCertificates[0]}, nil
}

// SignatureProof verifies sig, the requester's signature over csr's DER (csr.Raw)
// with the key of cert, and returns a Proof of cert for a request carrying that CSR.
// The signature is RSA PKCS#1 v1.5 with SHA-256, ECDSA with SHA-256 (ASN.1), or
// Ed25519, by cert's key type: for example `openssl dgst -sha256 -sign old.key
// csr.der`. Binding the proof to the CSR binds it to the new key: a proof replayed
// with another CSR is refused by Enroll.
func SignatureProof(cert *x509.Certificate, csr *x509.CertificateRequest, sig []byte) (*Proof, error) {
	if cert == nil || csr == nil || len(csr.Raw) == 0 || len(sig) == 0 {
		return nil, fmt.Errorf("%w: a certificate, a CSR and a signature are required", ErrNoProof)
	}
	var alg x509.SignatureAlgorithm
	switch cert.PublicKey.(type) {
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSA
	case *ecdsa.PublicKey:
		alg = x509.ECDSAWithSHA256
	case ed25519.PublicKey:
		alg = x509.PureEd25519
	default:
		return nil, fmt.Errorf("%w: unsupported key type %T", ErrNoProof, cert.PublicKey)
	}
	if err := scep.CheckKeySize(cert.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoProof, err)
	}
	if err := cert.CheckSignature(alg, csr.Raw, sig); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoProof, err)
	}
	return &Proof{cert: cert, csr: bytes.Clone(csr.Raw)}, nil
}

// signerFor returns the certificate p proves for a request carrying csr, or nil.
func (p *Proof) signerFor(csr *x509.CertificateRequest) (*x509.Certificate, error) {
	if p == nil || p.cert == nil {
		return nil, nil
	}
	if p.csr != nil && (csr == nil || !bytes.Equal(p.csr, csr.Raw)) {
		return nil, fmt.Errorf("%w: the proof signature covers another CSR", ErrNoProof)
	}
	return p.cert, nil
}
