package catemplate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

// TestDistributionPointsInIssuedCertificates: a CA with CRL and caIssuers URLs
// writes them into every certificate it signs (RFC 5280 sections 4.2.1.13 and
// 4.2.2.1), keeps a template's own, and leaves the caller's template unchanged.
func TestDistributionPointsInIssuedCertificates(t *testing.T) {
	ca, err := NewCA(CAOptions{KeyType: profile.ECDSAP256})
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := func(serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "device"},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	}
	cases := []struct {
		name             string
		cdp, aia         []string
		tmplCDP, tmplAIA []string
		wantCDP, wantAIA []string
	}{
		{"none configured", nil, nil, nil, nil, nil, nil},
		{"both", []string{"http://127.0.0.1/crl"}, []string{"http://127.0.0.1/ca.cer"}, nil, nil,
			[]string{"http://127.0.0.1/crl"}, []string{"http://127.0.0.1/ca.cer"}},
		{"CRL only", []string{"http://127.0.0.1/crl"}, nil, nil, nil, []string{"http://127.0.0.1/crl"}, nil},
		{"template's own kept", []string{"http://127.0.0.1/crl"}, []string{"http://127.0.0.1/ca.cer"},
			[]string{"http://127.0.0.2/own.crl"}, nil, []string{"http://127.0.0.2/own.crl"}, []string{"http://127.0.0.1/ca.cer"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca.CRLDistributionPoints, ca.IssuingCertificateURL = tc.cdp, tc.aia
			in := tmpl(int64(i + 1))
			in.CRLDistributionPoints, in.IssuingCertificateURL = tc.tmplCDP, tc.tmplAIA
			cert, err := ca.Sign(context.Background(), in, key.Public())
			require.NoError(t, err)
			require.Equal(t, tc.wantCDP, cert.CRLDistributionPoints)
			require.Equal(t, tc.wantAIA, cert.IssuingCertificateURL)
			require.Equal(t, tc.tmplCDP, in.CRLDistributionPoints, "the caller's template is unchanged")
			require.Equal(t, tc.tmplAIA, in.IssuingCertificateURL)
			require.NoError(t, cert.CheckSignatureFrom(ca.Certificate))
		})
	}
}

func TestSignCRLRefuses(t *testing.T) {
	ca, err := NewCA(CAOptions{KeyType: profile.ECDSAP256})
	require.NoError(t, err)
	now := time.Now()
	huge := new(big.Int).Lsh(big.NewInt(1), 160)
	for name, crl := range map[string]*x509.RevocationList{
		"nil":             nil,
		"no number":       {NextUpdate: now.Add(time.Hour)},
		"zero number":     {Number: big.NewInt(0), NextUpdate: now.Add(time.Hour)},
		"number too long": {Number: huge, NextUpdate: now.Add(time.Hour)},
		"next before":     {Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(-time.Second)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ca.SignCRL(context.Background(), crl)
			require.Error(t, err)
		})
	}
	der, err := ca.SignCRL(context.Background(), &x509.RevocationList{Number: big.NewInt(7), NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(9), RevocationTime: now}, {SerialNumber: big.NewInt(3), RevocationTime: now, ReasonCode: 1}}})
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(ca.Certificate))
	require.Equal(t, int64(3), crl.RevokedCertificateEntries[0].SerialNumber.Int64(), "listed in serial order")
}

// TestCRLNumberGrowsAcrossLoadCA: the CRL number of CA.CRL grows from one CRL to the
// next (RFC 5280 section 5.2.3) also across a restart, a CA saved and loaded again,
// and between CRLs signed at the same instant. It was a counter in memory that
// started again at 1 on every LoadCA, so a relying party holding the CRL signed
// before the restart saw the number go back.
func TestCRLNumberGrowsAcrossLoadCA(t *testing.T) {
	ctx := context.Background()
	ca, err := NewCA(CAOptions{KeyType: profile.ECDSAP256, Now: func() time.Time { return testNow }})
	require.NoError(t, err)
	number := func(ca *CA) *big.Int {
		t.Helper()
		der, err := ca.CRL(ctx, testNow.Add(24*time.Hour))
		require.NoError(t, err)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, crl.CheckSignatureFrom(ca.Certificate))
		require.Positive(t, crl.Number.Sign())
		require.LessOrEqual(t, crl.Number.BitLen(), 159, "at most 20 octets")
		return crl.Number
	}
	var last *big.Int
	grows := func(n *big.Int, what string) {
		t.Helper()
		if last != nil {
			require.Equal(t, 1, n.Cmp(last), "%s: CRL number %v after %v", what, n, last)
		}
		last = n
	}
	for i := 0; i < 5; i++ {
		grows(number(ca), "signed at the same instant")
	}
	dir := t.TempDir()
	require.NoError(t, SaveCA(dir, ca))
	for _, after := range []time.Duration{time.Second, time.Second + time.Millisecond, time.Second + 2*time.Millisecond} {
		// One restart after another, each a little later: a second, then a
		// millisecond apart, each signing twice at one instant.
		reloaded, err := LoadCA(dir)
		require.NoError(t, err)
		reloaded.Now = func() time.Time { return testNow.Add(after) }
		grows(number(reloaded), "the first CRL after LoadCA")
		grows(number(reloaded), "the next one at the same instant")
	}
}
