package intune_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// How an Intune device renews (Microsoft's SCEP profile documentation, "Renewal
// threshold"): when the threshold is reached the device requests a new certificate
// with a new key pair, through the profile, so with a fresh challenge Intune mints
// for it, and the gateway asks validateRequest again. End to end over SCEP with
// scep.Client: the renewal as a PKCSReq with a fresh challenge and a new key,
// signed by a self-signed certificate or by the certificate being renewed
// (RFC 8894 section 3.3.1.2), and as a RenewalReq that carries the fresh
// challenge. A RenewalReq without a challenge is refused: no verdict of Intune
// covers it. Each renewal is a new transaction Intune is told about.
func TestRenewal(t *testing.T) {
	g := newGateway(t, false)
	ts := httptest.NewServer(g.Server)
	defer ts.Close()
	ctx := context.Background()
	sc := &scep.Client{URL: ts.URL + "/scep", CAFingerprint: g.CAFingerprint()}
	profile := intunetest.Profile{Subject: pkix.Name{CommonName: "LAPTOP-0042"}, KeySize: 2048, DeviceID: "d-0042"}
	request := func(key *rsa.PrivateKey, ch string) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: profile.Subject}, key)
		require.NoError(t, err)
		if ch != "" {
			der, err = scep.AddChallengePassword(der, ch, key, nil)
			require.NoError(t, err)
		}
		return der
	}
	newKey := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		return k
	}

	k1 := newKey()
	first, err := sc.Enroll(ctx, request(k1, g.Emu.Mint(profile)), k1)
	require.NoError(t, err)

	// The threshold is reached: a fresh challenge for the same profile, a new key.
	k2 := newKey()
	second, err := sc.Enroll(ctx, request(k2, g.Emu.Mint(profile)), k2)
	require.NoError(t, err, "PKCSReq, self-signed")
	k3 := newKey()
	caps, err := sc.GetCACaps(ctx)
	require.NoError(t, err)
	require.True(t, caps.Has(scep.CapRenewal), "the gateway lists Renewal: scep.Client.Renew sends a RenewalReq")
	third, err := sc.Renew(ctx, request(k3, g.Emu.Mint(profile)), second, k2)
	require.NoError(t, err, "RenewalReq signed by the old certificate, with a fresh challenge")
	for _, c := range []*x509.Certificate{first, second, third} {
		require.Equal(t, "LAPTOP-0042", c.Subject.CommonName)
	}
	require.NotEqual(t, first.PublicKey, second.PublicKey)

	// A RenewalReq without a challenge: FAILURE, nothing issued, Intune not asked.
	k4 := newKey()
	_, err = sc.Renew(ctx, request(k4, ""), third, k3)
	var fe *scep.FailError
	require.True(t, errors.As(err, &fe), "%v", err)
	// A renewal with a fresh challenge whose CSR asks for another subject is refused by
	// Intune, like any enrollment.
	k5 := newKey()
	bad, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil-admin"}}, k5)
	require.NoError(t, err)
	bad, err = scep.AddChallengePassword(bad, g.Emu.Mint(profile), k5, nil)
	require.NoError(t, err)
	_, err = sc.Renew(ctx, bad, third, k3)
	require.True(t, errors.As(err, &fe), "%v", err)
	require.Equal(t, scep.BadRequest, fe.Info)

	require.Equal(t, 3, g.Issuer.Count())
	require.Len(t, g.Emu.Validations(), 4)
	s := g.Emu.Successes()
	require.Len(t, s, 3)
	for i, c := range []*x509.Certificate{first, second, third} {
		require.Equal(t, intune.SerialHex(c.SerialNumber), s[i].Notification.CertificateSerialNumber)
	}
	require.Empty(t, g.Emu.Violations())
}
