package radiustest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type pki struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func issue(t *testing.T, parent *pki, name string, ca bool, eku x509.ExtKeyUsage, notAfter time.Time) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter, BasicConstraintsValid: true, IsCA: ca}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{eku}
		tmpl.DNSNames = []string{name}
	}
	p, pk := tmpl, crypto.Signer(key)
	if parent != nil {
		p, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p, key.Public(), pk)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &pki{c, key}
}

func network(t *testing.T, dir string, ca *x509.Certificate, client *pki, server string) string {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(client.key)
	require.NoError(t, err)
	files := map[string][]byte{
		"ca.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
		"client.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: client.cert.Raw}),
		"client.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	}
	for n, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), b, 0o600))
	}
	return "key_mgmt=WPA-EAP\neap=TLS\nidentity=\"" + client.cert.Subject.CommonName + "\"\n" +
		"ca_cert=\"" + filepath.Join(dir, "ca.pem") + "\"\nclient_cert=\"" + filepath.Join(dir, "client.pem") + "\"\n" +
		"private_key=\"" + filepath.Join(dir, "client.key") + "\"\ndomain_match=\"" + server + "\"\n"
}

// TestServer: a client certificate from the trusted CA is accepted; one from another
// CA, and one the CRL revokes, are rejected; a client that expects another server
// name refuses the server.
func TestServer(t *testing.T) {
	Require(t)
	ca := issue(t, nil, "radiustest CA", true, 0, time.Now().Add(24*time.Hour))
	other := issue(t, nil, "other CA", true, 0, time.Now().Add(24*time.Hour))
	server := issue(t, ca, "radius.test", false, x509.ExtKeyUsageServerAuth, time.Now().Add(time.Hour))
	good := issue(t, ca, "good.test", false, x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	revoked := issue(t, ca, "revoked.test", false, x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	stranger := issue(t, other, "stranger.test", false, x509.ExtKeyUsageClientAuth, time.Now().Add(time.Hour))
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revoked.cert.SerialNumber, RevocationTime: time.Now()}},
	}, ca.cert, ca.key)
	require.NoError(t, err)

	s := Start(t, Options{ClientCAs: []*x509.Certificate{ca.cert}, CRLs: [][]byte{crl}, CheckCRL: true,
		ServerCertificate: []*x509.Certificate{server.cert}, ServerKey: server.key})

	r := s.Authenticate(t, t.TempDir(), network(t, t.TempDir(), ca.cert, good, "radius.test"))
	require.True(t, r.Accepted(), "good certificate: code %d\n%s", r.Code, r.Output)
	for name, c := range map[string]*pki{"revoked": revoked, "other CA": stranger} {
		dir := t.TempDir()
		r := s.Authenticate(t, dir, network(t, dir, ca.cert, c, "radius.test"))
		require.Equal(t, 3, r.Code, "%s: want Access-Reject\n%s", name, r.Output)
		require.True(t, r.Rejected(), name)
	}
	dir := t.TempDir()
	r = s.Authenticate(t, dir, network(t, dir, ca.cert, good, "other.test"))
	require.True(t, r.Rejected(), "a server of another name is refused by the client\n%s", r.Output)
}
