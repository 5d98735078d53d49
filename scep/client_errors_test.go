package scep

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// uncutCertificate returns the DER of a certificate the pinned CA signed whose
// subjectAltName holds a 900 KB URI that crypto/x509 refuses, quoting it whole in
// its error.
func uncutCertificate(t *testing.T, pki *testPKI) []byte {
	t.Helper()
	uri := "http://[" + strings.Repeat("a", 900_000)
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}})
	require.NoError(t, err)
	now := time.Now()
	der, err := x509.CreateCertificate(nil, &x509.Certificate{SerialNumber: big.NewInt(61), Subject: pkix.Name{CommonName: "long URI"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}}}, pki.ca, rsaKeys[1].Public(), pki.caKey)
	require.NoError(t, err)
	_, err = x509.ParseCertificate(der)
	require.ErrorContains(t, err, uri, "crypto/x509 no longer quotes the URI: the test proves nothing")
	return der
}

// TestClientErrorsBoundPeerCertificates: wherever the server, or anyone answering for
// it, puts a certificate crypto/x509 refuses (GetCACert, a CertRep's certificates, the
// certificates it issues, a GetNextCACert answer), the Client's error quotes the parser's
// error cut short. A 900 KB URI made a 1.8 MB error.
func TestClientErrorsBoundPeerCertificates(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	bad := uncutCertificate(t, pki)
	badCert := &x509.Certificate{Raw: bad} // only its DER is sent
	signedBy := func(cert *x509.Certificate, key crypto.Signer, content []byte) []byte {
		der, err := buildSignedData(signOptions{content: content, cert: cert, key: key, hash: crypto.SHA256})
		require.NoError(t, err)
		return der
	}
	onlyBad, err := degenerate(badCert, nil, nil)
	require.NoError(t, err)
	ra := Replier{Cert: pki.raSign, Key: pki.raKey}
	for _, c := range []struct {
		name string
		h    *scriptedServer
		call func(*Client) error
	}{
		{
			name: "GetCACert, one certificate",
			h:    &scriptedServer{caCertDER: bad},
			call: func(cl *Client) error { _, err := cl.GetCACert(context.Background()); return err },
		},
		{
			name: "GetCACert, certs-only SignedData",
			h:    &scriptedServer{certs: []*x509.Certificate{pki.ca, badCert}},
			call: func(cl *Client) error { _, err := cl.GetCACert(context.Background()); return err },
		},
		{
			name: "a CertRep's certificates",
			h: &scriptedServer{reply: func(m *PKIMessage) []byte {
				rep, err := (&Replier{Cert: pki.raSign, Key: pki.raKey, Certificates: []*x509.Certificate{badCert}}).Pending(m)
				require.NoError(t, err)
				return rep
			}},
			call: func(cl *Client) error {
				_, err := cl.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
				return err
			},
		},
		{
			name: "the certificates a CertRep issues",
			h: &scriptedServer{reply: func(m *PKIMessage) []byte {
				rep, err := ra.Success(m, badCert)
				require.NoError(t, err)
				return rep
			}},
			call: func(cl *Client) error {
				_, err := cl.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
				return err
			},
		},
		{
			name: "GetNextCACert",
			h:    &scriptedServer{next: signedBy(pki.raSign, pki.raKey, onlyBad)},
			call: func(cl *Client) error { _, err := cl.GetNextCACert(context.Background()); return err },
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.h.t = t
			c.h.caps = "AES\nSHA-256\nPOSTPKIOperation\n"
			if c.h.certs == nil {
				c.h.certs = []*x509.Certificate{pki.ca, pki.raSign, pki.raEnc}
			}
			c.h.recipients = []Recipient{{Certificate: pki.raEnc, Key: pki.raEncK}}
			cl := c.h.client(pki.ca)
			if c.h.caCertDER != nil {
				cl.CAFingerprint, cl.InsecureSkipCAVerify = nil, true
			}
			err := c.call(cl)
			require.ErrorIs(t, err, ErrBadReply)
			require.Less(t, len(err.Error()), 1024, "%.200s", err)
		})
	}
}
