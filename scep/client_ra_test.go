package scep

// A man in the middle who holds any certificate the pinned CA issued (his own device
// certificate) answers GetCACert with [genuine CA, his certificate]. The Client must not
// take that certificate for an RA: it must not encrypt the CSR and challenge to it,
// must not believe a CertRep it signed, and must not believe a rollover CA it signed.

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// attackerCerts are certificates the pinned CA could have issued to someone who is
// not its RA. Each is offered as the RA by a man in the middle.
func attackerCerts(t *testing.T, pki *testPKI) map[string]*x509.Certificate {
	now := time.Now()
	mk := func(serial int64, eku []x509.ExtKeyUsage, unknown ...asn1.ObjectIdentifier) *x509.Certificate {
		return mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "mallory@example.com"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: eku, UnknownExtKeyUsage: unknown}, pki.ca, rsaKeys[1].Public(), pki.caKey)
	}
	return map[string]*x509.Certificate{
		"device certificate (clientAuth)":        mk(700, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
		"certificate without EKU":                mk(701, nil),
		"TLS server certificate":                 mk(702, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}),
		"request agent that is also clientAuth":  mk(703, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, oidCertificateRequestAgent),
		"request agent with anyExtendedKeyUsage": mk(704, []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, oidCertificateRequestAgent),
	}
}

// serveMITMCACert answers GetCACaps and GetCACert as the man in the middle does, with
// the genuine CA and his own certificate; it reports whether it answered.
func serveMITMCACert(w http.ResponseWriter, r *http.Request, ca, evil *x509.Certificate) bool {
	switch r.URL.Query().Get("operation") {
	case "GetCACaps":
		io.WriteString(w, "AES\nPOSTPKIOperation\nSHA-256\nGetNextCACert\n")
	case "GetCACert":
		der, _ := DegenerateCertificates([]*x509.Certificate{ca, evil})
		w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
		w.Write(der)
	default:
		return false
	}
	return true
}

func TestClientRefusesDeviceCertificateAsRA(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	fp := sha256.Sum256(pki.ca.Raw)
	for name, evil := range attackerCerts(t, pki) {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			stolen, replied := "", false
			ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if serveMITMCACert(w, r, pki.ca, evil) {
					return
				}
				switch r.URL.Query().Get("operation") {
				case "PKIOperation":
					body, _ := io.ReadAll(r.Body)
					m, err := ParsePKIMessage(body, ParseOptions{})
					if err != nil {
						http.Error(w, "bad", http.StatusBadRequest)
						return
					}
					mu.Lock()
					if m.Decrypt(Recipient{Certificate: evil, Key: rsaKeys[1]}) == nil {
						stolen = m.ChallengePassword
					}
					replied = true
					mu.Unlock()
					// Whether or not he could read it, he answers FAILURE in the RA's name,
					// so that the device gives up and he enrolls in its place.
					rep, err := (&Replier{Cert: evil, Key: rsaKeys[1]}).Failure(m, BadRequest)
					require.NoError(t, err)
					w.Write(rep)
				}
			}))
			c := &Client{URL: ts.URL, CAFingerprint: fp[:]}
			cert, err := c.Enroll(context.Background(), newCSR(t, d.key, "device", "one-time-secret"), d.key)
			mu.Lock()
			defer mu.Unlock()
			require.True(t, replied)
			require.Empty(t, stolen, "the CSR and challenge were encrypted to the attacker's certificate")
			require.Nil(t, cert)
			require.ErrorIs(t, err, ErrBadReply, "the forged FAILURE must be refused, not believed")
			require.NotErrorIs(t, err, ErrRefused)
			certs, err := c.GetCACert(context.Background())
			require.NoError(t, err)
			for _, cert := range certs {
				require.False(t, cert.Equal(evil), "kept as trusted: %s", name)
			}
		})
	}
}

func TestClientRefusesRolloverSignedByDeviceCertificate(t *testing.T) {
	pki := newTestPKI(t)
	fp := sha256.Sum256(pki.ca.Raw)
	now := time.Now()
	evilCATmpl := &x509.Certificate{SerialNumber: big.NewInt(66), Subject: pkix.Name{CommonName: "scepkit test CA"},
		NotBefore: now, NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	evilCA := mkCert(t, evilCATmpl, evilCATmpl, rsaKeys[1].Public(), rsaKeys[1])
	for name, evil := range attackerCerts(t, pki) {
		t.Run(name, func(t *testing.T) {
			ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if serveMITMCACert(w, r, pki.ca, evil) {
					return
				}
				switch r.URL.Query().Get("operation") {
				case "GetNextCACert":
					inner, _ := DegenerateCertificates([]*x509.Certificate{evilCA})
					der, err := buildSignedData(signOptions{content: inner, cert: evil, key: rsaKeys[1], hash: crypto.SHA256})
					require.NoError(t, err)
					w.Header().Set("Content-Type", "application/x-x509-next-ca-cert")
					w.Write(der)
				}
			}))
			got, err := (&Client{URL: ts.URL, CAFingerprint: fp[:]}).GetNextCACert(context.Background())
			require.ErrorIs(t, err, ErrBadReply)
			require.Nil(t, got, "a rollover CA announced by a non-RA was accepted")
		})
	}
}

// TestClientRequiresFingerprint: the zero value trusts nothing; trusting the network
// is an opt-in named InsecureSkipCAVerify.
func TestClientRequiresFingerprint(t *testing.T) {
	pki := newTestPKI(t)
	ts, _ := pki.httpServer(t, false)
	d := newDevice(t)
	ctx := context.Background()
	_, err := (&Client{URL: ts.URL}).GetCACert(ctx)
	require.ErrorIs(t, err, ErrFingerprint)
	cert, err := (&Client{URL: ts.URL}).Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
	require.ErrorIs(t, err, ErrFingerprint)
	require.Nil(t, cert)
	require.Equal(t, 0, pki.issuedCount(), "nothing was sent, nothing issued")
	certs, err := (&Client{URL: ts.URL, InsecureSkipCAVerify: true}).GetCACert(ctx)
	require.NoError(t, err)
	require.Len(t, certs, 3)
}

// TestClientSplitRA: a genuine RA with separate signing and encryption certificates,
// both marked, is kept; the request goes to the encryption certificate and the reply
// signed by the signing certificate is accepted.
func TestClientSplitRA(t *testing.T) {
	pki := newTestPKI(t)
	ts, _ := pki.httpServer(t, false)
	d := newDevice(t)
	fp := sha256.Sum256(pki.ca.Raw)
	c := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	certs, err := c.GetCACert(context.Background())
	require.NoError(t, err)
	require.Len(t, certs, 3)
	cert, err := c.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(pki.ca))
}

func TestIsRA(t *testing.T) {
	pki := newTestPKI(t)
	ndes := pemCert(t, "ndes-ca2.pem")
	require.True(t, IsRA(ndes), "NDES's RA certificate (Certificate Request Agent only)")
	require.True(t, IsRA(pki.raSign))
	require.True(t, IsRA(pki.raEnc))
	require.False(t, IsRA(pki.ca))
	require.False(t, IsRA(nil))
	for name, cert := range attackerCerts(t, pki) {
		require.False(t, IsRA(cert), name)
	}
}

// TestClientGetNextCACertBounds: an announcement the current CA really signed is still
// bounded as GetCACert's answer is: at most MaxCACerts certificates, the expired ones
// left out, an error when none is left. Before, 200 expired certificates came back as
// the next CA chain.
func TestClientGetNextCACertBounds(t *testing.T) {
	pki := newTestPKI(t)
	fp := sha256.Sum256(pki.ca.Raw)
	now := time.Now()
	next := func(serial int64, notAfter time.Time) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprint("next CA ", serial)},
			NotBefore: now.Add(-48 * time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		return mkCert(t, tmpl, tmpl, rsaKeys[2].Public(), rsaKeys[2])
	}
	many := make([]*x509.Certificate, MaxCACerts+1)
	for i := range many {
		many[i] = next(int64(100+i), now.Add(time.Hour))
	}
	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		ok    bool
	}{
		{"one next CA", []*x509.Certificate{next(90, now.Add(365*24*time.Hour))}, true},
		{"expired", []*x509.Certificate{next(91, now.Add(-time.Hour))}, false},
		{"an expired cross-certificate left out", []*x509.Certificate{next(92, now.Add(time.Hour)), next(93, now.Add(-time.Hour))}, true},
		{"too many", many, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if serveMITMCACert(w, r, pki.ca, pki.raSign) {
					return
				}
				inner, err := DegenerateCertificates(tc.certs)
				require.NoError(t, err)
				der, err := buildSignedData(signOptions{content: inner, cert: pki.ca, key: pki.caKey, hash: crypto.SHA256})
				require.NoError(t, err)
				w.Header().Set("Content-Type", "application/x-x509-next-ca-cert")
				w.Write(der)
			}))
			got, err := (&Client{URL: ts.URL, CAFingerprint: fp[:]}).GetNextCACert(context.Background())
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, tc.certs[:1], got)
				return
			}
			require.ErrorIs(t, err, ErrBadReply)
			require.Nil(t, got)
		})
	}
}
