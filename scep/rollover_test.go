package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRolloverPreviousRA: after an RA rollover, a request still encrypted to the
// previous RA (from a device that fetched GetCACert before the switch) is served only
// while that device can verify the reply, which the previous signing certificate
// signs (RFC 8894 §3.5.2). Once that certificate has expired, the request is refused
// before the Responder sees it: nothing is issued for a reply no device could accept,
// and its one-time challenge is not spent.
func TestRolloverPreviousRA(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	// The previous RA signing certificate ends before its encryption certificate.
	oldSign := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(20), Subject: pkix.Name{CommonName: "previous RA signing"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent}}, p.ca, p.raKey.Public(), p.caKey)
	nextKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	next := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(21), Subject: pkix.Name{CommonName: "next RA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * time.Hour),
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent}}, p.ca, nextKey.Public(), p.caKey)

	var mu sync.Mutex
	clock := now
	srv := p.server(false)
	srv.SignerCert = oldSign
	srv.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	srv.Rollover = &Rollover{At: now.Add(time.Hour), CACerts: []*x509.Certificate{p.ca}, SignerCert: next, Signer: nextKey,
		Recipients: []Recipient{{Certificate: next, Key: nextKey}}}
	require.NoError(t, srv.Validate())
	ts := httptest.NewServer(srv)
	defer ts.Close()
	runStale(t, p, ts.URL, p.raEnc, func(d time.Duration) { mu.Lock(); clock = now.Add(d); mu.Unlock() }, []staleCase{
		{"after the switch, the previous RA can sign", 90 * time.Minute, oldSign, Success},
		{"the previous signing certificate expired", 3 * time.Hour, next, Failure},
	})
}

// TestRolloverPreviousCAKey: a server that also decrypts requests encrypted to its CA
// (CAKey) keeps doing so after a CA rollover for devices that pinned the previous CA,
// but only while the previous CA certificate, which signs their CertRep, is valid.
// After, such a request is refused before the Responder sees it (before: decrypted
// with the previous CA's key, a certificate issued, and the reply signed by an expired
// CA certificate).
func TestRolloverPreviousCAKey(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	nextKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	nextCATmpl := &x509.Certificate{SerialNumber: big.NewInt(30), Subject: pkix.Name{CommonName: "next CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(72 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	nextCA := mkCert(t, nextCATmpl, nextCATmpl, nextKey.Public(), nextKey)

	var mu sync.Mutex
	clock := now
	srv := p.server(false)
	srv.CAKey = p.caKey
	srv.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	srv.Rollover = &Rollover{At: now.Add(time.Hour), CACerts: []*x509.Certificate{nextCA}, SignerCert: nextCA,
		Signer: nextKey, Recipients: []Recipient{{Certificate: nextCA, Key: nextKey}}}
	require.NoError(t, srv.Validate())
	ts := httptest.NewServer(srv)
	defer ts.Close()
	runStale(t, p, ts.URL, p.ca, func(d time.Duration) { mu.Lock(); clock = now.Add(d); mu.Unlock() }, []staleCase{
		{"after the switch, the previous CA is valid", 2 * time.Hour, p.ca, Success},
		{"the previous CA expired", 25 * time.Hour, nextCA, Failure},
	})
}

// staleCase is a request from a device that fetched GetCACert before a rollover,
// sent at a time from the test's start: who must sign the CertRep, with what status.
type staleCase struct {
	name     string
	at       time.Duration
	signedBy *x509.Certificate
	status   PKIStatus
}

// runStale sends each case's PKCSReq encrypted to to, at its time (set moves the
// server's clock): a SUCCESS issues one certificate, a FAILURE is badMessageCheck and
// issues none.
func runStale(t *testing.T, p *testPKI, url string, to *x509.Certificate, set func(time.Duration), cases []staleCase) {
	d := newDevice(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set(tc.at)
			issued := p.issuedCount()
			der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "stale-" + tc.at.String(),
				Payload: newCSR(t, d.key, "device", "secret"), Recipient: to, SignerCert: d.self, Signer: d.key})
			require.NoError(t, err)
			code, _, body := post(t, url, der)
			require.Equal(t, 200, code, "%s", body)
			rep, err := ParsePKIMessage(body, ParseOptions{})
			require.NoError(t, err)
			require.True(t, rep.Signer.Equal(tc.signedBy), "CertRep signed by %s", rep.Signer.Subject)
			require.Equal(t, tc.status, rep.Status, "failInfo %v", rep.FailInfo)
			if tc.status == Success {
				require.Equal(t, issued+1, p.issuedCount())
				return
			}
			require.Equal(t, BadMessageCheck, rep.FailInfo)
			require.Equal(t, issued, p.issuedCount(), "a certificate was issued for a reply the device cannot verify")
		})
	}
}

// TestGetNextCACertSigner: GetNextCACert's answer is signed by the current CA signing
// key (RFC 8894 §4.7.1, and the application/x-x509-next-ca-cert registration) when the
// server holds it (CAKey): clients that trust only the CA certificate can verify it.
// Without CAKey the server has only the RA's key, and the RA signs.
func TestGetNextCACertSigner(t *testing.T) {
	p := newTestPKI(t)
	next := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(51), Subject: pkix.Name{CommonName: "next CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, p.ca, rsaKeys[3].Public(), p.caKey)
	for _, tc := range []struct {
		name   string
		caKey  bool
		signer *x509.Certificate
	}{
		{"RA only", false, p.raSign},
		{"with the CA key", true, p.ca},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := p.server(false)
			srv.NextCACerts = []*x509.Certificate{next}
			if tc.caKey {
				srv.CAKey = p.caKey
			}
			require.NoError(t, srv.Validate())
			rec := httptestRecorder(srv, "GET", "/?operation=GetNextCACert", nil)
			require.Equal(t, 200, rec.Code, rec.Body.String())
			sd, err := parseSignedData(rec.Body.Bytes())
			require.NoError(t, err)
			require.Len(t, sd.signers, 1)
			signer := sd.signers[0].findSigner([]*x509.Certificate{tc.signer})
			require.NotNil(t, signer, "not signed by %s", tc.signer.Subject)
			_, err = sd.signers[0].verify(signer, sd.content, false)
			require.NoError(t, err)
		})
	}
}

// TestRolloverValidAtSwitch: Validate refuses a Rollover whose certificates are not
// valid at its switch time (not yet valid, or expired by then): the server would
// switch to a set no device can enroll with, and find out only at At.
func TestRolloverValidAtSwitch(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	ra := func(notBefore, notAfter time.Time) *x509.Certificate {
		return mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(40), Subject: pkix.Name{CommonName: "next RA"},
			NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent}}, p.ca, p.raKey.Public(), p.caKey)
	}
	at := now.Add(2 * time.Hour)
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		ok   bool
	}{
		{"valid at the switch", ra(now, now.Add(10*time.Hour)), true},
		{"valid from the switch on", ra(at, now.Add(10*time.Hour)), true},
		{"not yet valid at the switch", ra(at.Add(time.Minute), now.Add(10*time.Hour)), false},
		{"expired by the switch", ra(now, at.Add(-time.Minute)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := p.server(false)
			srv.Rollover = &Rollover{At: at, CACerts: []*x509.Certificate{p.ca}, SignerCert: tc.cert, Signer: p.raKey,
				Recipients: []Recipient{{Certificate: tc.cert, Key: rsaKeys[1]}}}
			err := srv.Validate()
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "at the rollover")
		})
	}
	// A switch already past needs certificates valid now, not at At.
	srv := p.server(false)
	cert := ra(now.Add(-time.Hour), now.Add(10*time.Hour))
	srv.Rollover = &Rollover{At: now.Add(-3 * time.Hour), CACerts: []*x509.Certificate{p.ca}, SignerCert: cert,
		Signer: p.raKey, Recipients: []Recipient{{Certificate: cert, Key: rsaKeys[1]}}}
	require.NoError(t, srv.Validate())
}

// TestRolloverNextCAKey: with Rollover.CAKey, clients that pin the CA keep enrolling
// after a switch to a next CA: a request encrypted to the next CA is decrypted with
// its key and answered signed by it. Before, only the previous CA's key was held, and
// scepclient -ca-fingerprint with the next CA's fingerprint got FAILURE ("envelope not
// addressed to this server") from the switch until the rollover was promoted.
func TestRolloverNextCAKey(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	nextKey, raKey := rsaKeys[3], rsaKeys[2]
	nextCATmpl := &x509.Certificate{SerialNumber: big.NewInt(40), Subject: pkix.Name{CommonName: "next CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(72 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	nextCA := mkCert(t, nextCATmpl, nextCATmpl, nextKey.Public(), nextKey)
	nextRA := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(41), Subject: pkix.Name{CommonName: "next RA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent}}, nextCA, raKey.Public(), nextKey)

	for _, withKey := range []bool{false, true} {
		var mu sync.Mutex
		clock := now
		srv := p.server(false)
		srv.CAKey = p.caKey
		srv.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
		srv.Rollover = &Rollover{At: now.Add(time.Hour), CACerts: []*x509.Certificate{nextCA}, SignerCert: nextRA,
			Signer: raKey, Recipients: []Recipient{{Certificate: nextRA, Key: raKey}}}
		want := staleCase{"pinned to the next CA, after the switch, without its key", 2 * time.Hour, nextRA, Failure}
		if withKey {
			srv.Rollover.CAKey = nextKey
			want = staleCase{"pinned to the next CA, after the switch, with its key", 2 * time.Hour, nextCA, Success}
		}
		require.NoError(t, srv.Validate())
		ts := httptest.NewServer(srv)
		runStale(t, p, ts.URL, nextCA, func(d time.Duration) { mu.Lock(); clock = now.Add(d); mu.Unlock() }, []staleCase{want})
		ts.Close()
	}
	// A CAKey that is not the next CA's is refused.
	srv := p.server(false)
	srv.Rollover = &Rollover{At: now.Add(time.Hour), CACerts: []*x509.Certificate{nextCA}, SignerCert: nextRA,
		Signer: raKey, Recipients: []Recipient{{Certificate: nextRA, Key: raKey}}, CAKey: raKey}
	require.ErrorContains(t, srv.Validate(), "Rollover.CAKey")
}

// countingKey is an RSA key that counts its signatures.
type countingKey struct {
	*rsa.PrivateKey
	n atomic.Int32
}

func (k *countingKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.n.Add(1)
	return k.PrivateKey.Sign(r, digest, opts)
}

// TestGetNextCACertSignedOnce: GetNextCACert, an unauthenticated GET outside the
// PKIOperation bound (MaxInFlight), costs no private-key operation once its answer
// is made: the signed answer is made once per signer and announced set, and served
// again. Before, every GET made the RA (or, with CAKey, the CA) sign anew: a flood of
// GETs spent the key, an HSM's too, without any bound. A change of the announced
// certificates is signed anew.
func TestGetNextCACertSignedOnce(t *testing.T) {
	p := newTestPKI(t)
	next := func(serial int64) *x509.Certificate {
		return mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "next CA"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}, p.ca, rsaKeys[3].Public(), p.caKey)
	}
	for _, withCAKey := range []bool{false, true} {
		t.Run(fmt.Sprint("CAKey ", withCAKey), func(t *testing.T) {
			srv := p.server(false)
			srv.NextCACerts = []*x509.Certificate{next(60)}
			key := &countingKey{PrivateKey: p.raKey.(*rsa.PrivateKey)}
			signer := p.raSign
			if withCAKey {
				key.PrivateKey = p.caKey.(*rsa.PrivateKey)
				srv.CAKey, signer = key, p.ca
			} else {
				srv.Signer = key
			}
			require.NoError(t, srv.Validate())
			get := func() []byte {
				rec := httptestRecorder(srv, "GET", "/?operation=GetNextCACert", nil)
				require.Equal(t, 200, rec.Code, rec.Body.String())
				sd, err := parseSignedData(rec.Body.Bytes())
				require.NoError(t, err)
				_, err = sd.signers[0].verify(sd.signers[0].findSigner([]*x509.Certificate{signer}), sd.content, false)
				require.NoError(t, err)
				return rec.Body.Bytes()
			}
			first := get()
			for range 5 {
				require.Equal(t, first, get())
			}
			require.EqualValues(t, 1, key.n.Load(), "one signature for six GETs")
			srv.NextCACerts = []*x509.Certificate{next(61)}
			require.NotEqual(t, first, get(), "another announcement is signed anew")
			require.EqualValues(t, 2, key.n.Load())
		})
	}
}
