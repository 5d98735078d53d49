package scep

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClientGetCRLSignature: GetCRL returns a CRL only when the CA its request names
// signed it, and, when the request asks about the signer's own certificate, the CA
// that issued that certificate (two issuing CAs of one name under the pinned root, as
// during a rollover). A CRL signed in the CA's name with another key (the RA's), by
// the other CA of the same name, by the pinned root for a certificate of an issuing
// CA, or not a CRL at all is refused with ErrBadReply, however well the RA signed
// the reply around it.
func TestClientGetCRLSignature(t *testing.T) {
	pki := newTestPKI(t)
	now := time.Now()
	issuing := func(serial int64) (*x509.Certificate, crypto.Signer) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "scepkit issuing CA"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, pki.ca, key.Public(), pki.caKey), key
	}
	previous, previousKey := issuing(10)
	next, nextKey := issuing(11)
	// The CA's name and key usage on the RA's key: what an RA (or whoever holds its
	// key) would sign a CRL of its own with.
	forgedTmpl := *pki.ca
	forgedTmpl.PublicKey, forgedTmpl.SubjectKeyId, forgedTmpl.AuthorityKeyId = nil, nil, nil
	forged := mkCert(t, &forgedTmpl, &forgedTmpl, pki.raKey.Public(), pki.raKey)

	crl := func(ca *x509.Certificate, key crypto.Signer) []byte {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
			ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, ca, key)
		require.NoError(t, err)
		return der
	}
	var mu sync.Mutex
	var answer []byte // the CRL the server answers GetCRL with
	s := pki.server(false)
	s.CACerts = []*x509.Certificate{pki.ca, previous, next}
	s.Responder = ResponderFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if req.MessageType != GetCRL {
			return pki.respond(ctx, req)
		}
		mu.Lock()
		defer mu.Unlock()
		return &Response{CRL: answer}, nil
	})
	require.NoError(t, s.Validate())
	ts := httptestServer(t, s)
	fp := sha256.Sum256(pki.ca.Raw)
	c := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	ctx := context.Background()
	d := newDevice(t)
	ofRoot, err := c.Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
	require.NoError(t, err)
	ofPrevious := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "device"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}, previous, d.key.Public(), previousKey)

	for _, tc := range []struct {
		name   string
		asked  *x509.Certificate
		answer []byte
		ok     bool
	}{
		{"the pinned CA's CRL", ofRoot, crl(pki.ca, pki.caKey), true},
		{"signed in the CA's name with the RA's key", ofRoot, crl(forged, pki.raKey), false},
		{"an issuing CA's CRL for a certificate of the pinned CA", ofRoot, crl(previous, previousKey), false},
		{"the issuing CA's CRL", ofPrevious, crl(previous, previousKey), true},
		{"the other issuing CA of the same name", ofPrevious, crl(next, nextKey), false},
		{"the pinned CA's CRL for a certificate of an issuing CA", ofPrevious, crl(pki.ca, pki.caKey), false},
		{"not a CRL", ofRoot, []byte{0x30, 0x03, 0x02, 0x01, 0x01}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			answer = tc.answer
			mu.Unlock()
			got, err := c.GetCRL(ctx, tc.asked.RawIssuer, tc.asked.SerialNumber, tc.asked, d.key)
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, tc.answer, got.Raw)
				return
			}
			require.ErrorIs(t, err, ErrBadReply)
			require.Nil(t, got)
		})
	}
}

// TestClientGetCRLFreshness: GetCRL refuses a CRL the CA really signed whose
// nextUpdate is past by more than ClockSkew, with ErrStaleCRL: an old CRL replayed
// hides the revocations since. A current one and one past its nextUpdate within the
// skew are returned. A CRL a year stale was returned.
func TestClientGetCRLFreshness(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	now := time.Now()
	day := 24 * time.Hour
	for _, c := range []struct {
		name       string
		thisUpdate time.Time
		nextUpdate time.Time
		stale      bool
	}{
		{"current", now.Add(-time.Hour), now.Add(day), false},
		{"past nextUpdate within the clock skew", now.Add(-day), now.Add(-ClockSkew / 2), false},
		{"past nextUpdate by a year", now.Add(-400 * day), now.Add(-300 * day), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: c.thisUpdate, NextUpdate: c.nextUpdate}
			crl, err := x509.CreateRevocationList(rand.Reader, tmpl, pki.ca, pki.caKey)
			require.NoError(t, err)
			h := &scriptedServer{t: t, caps: "AES\nSHA-256\nPOSTPKIOperation\n",
				certs:      []*x509.Certificate{pki.ca, pki.raSign, pki.raEnc},
				recipients: []Recipient{{Certificate: pki.raEnc, Key: pki.raEncK}}}
			h.reply = func(m *PKIMessage) []byte {
				rep, err := (&Replier{Cert: pki.raSign, Key: pki.raKey}).SuccessCRL(m, crl)
				require.NoError(t, err)
				return rep
			}
			got, err := h.client(pki.ca).GetCRL(context.Background(), pki.ca.RawSubject, big.NewInt(5), d.self, d.key)
			if !c.stale {
				require.NoError(t, err)
				require.Equal(t, crl, got.Raw)
				return
			}
			require.ErrorIs(t, err, ErrBadReply)
			require.ErrorIs(t, err, ErrStaleCRL)
			require.Nil(t, got)
		})
	}
}
