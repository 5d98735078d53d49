package scep

// A man in the middle answers GetCACert with [genuine CA, his own RA]. With a pinned CA
// fingerprint the client must drop the RA that does not chain to the pinned CA: the
// challenge is never encrypted to the attacker, no CertRep from him is trusted, no
// certificate that does not chain to the CA is accepted. (Found in review: the client
// used to check only that one returned certificate had the fingerprint.)

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestClientPinDropsForeignRA(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	now := time.Now()
	// The attacker's RA: self-signed with a key of the attacker (rsaKeys[1] stands in),
	// not issued by the pinned CA.
	evilTmpl := &x509.Certificate{SerialNumber: big.NewInt(666), Subject: pkix.Name{CommonName: "evil RA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature}
	evilRA := mkCert(t, evilTmpl, evilTmpl, rsaKeys[1].Public(), rsaKeys[1])
	var stolen string
	ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("operation") {
		case "GetCACaps":
			io.WriteString(w, "AES\nPOSTPKIOperation\nSHA-256\n")
		case "GetCACert":
			der, _ := DegenerateCertificates([]*x509.Certificate{evilRA, pki.ca})
			w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
			w.Write(der)
		case "PKIOperation":
			body, _ := io.ReadAll(r.Body)
			m, err := ParsePKIMessage(body, ParseOptions{})
			require.NoError(t, err)
			if err := m.Decrypt(Recipient{Certificate: evilRA, Key: rsaKeys[1]}); err != nil {
				require.ErrorIs(t, err, ErrNotForUs, "encrypted to the genuine CA, not to the attacker")
				http.Error(w, "cannot read it", http.StatusBadRequest)
				return
			}
			stolen = m.ChallengePassword
			// A "certificate" for the device's key, signed by the attacker.
			fake := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"},
				NotBefore: now, NotAfter: now.Add(time.Hour)}, evilRA, m.CSR.PublicKey, rsaKeys[1])
			rep, err := (&Replier{Cert: evilRA, Key: rsaKeys[1]}).Success(m, fake)
			require.NoError(t, err)
			w.Write(rep)
		}
	}))
	fp := sha256.Sum256(pki.ca.Raw)
	c := &Client{URL: ts.URL, CAFingerprint: fp[:], Rand: rand.Reader}
	cert, err := c.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
	t.Logf("stolen challenge %q; enroll err %v", stolen, err)
	require.Empty(t, stolen, "the challenge was encrypted to a certificate that does not chain to the pinned CA")
	require.Error(t, err)
	require.Nil(t, cert)
}
