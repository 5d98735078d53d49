package crp_test

import (
	"context"
	"crypto/x509"
	"net/http/httptest"
	"testing"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// A registration point whose Issuer is the built-in CA needs no CACert, and
// NewServer wires the SCEP server from it and the RA: a device enrolls and renews
// over HTTP with scep.Client.
func TestNewServer(t *testing.T) {
	env := newEnv(t)
	parent, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048})
	require.NoError(t, err)
	ca := &catemplate.CA{Certificate: env.CA.Certificate, Signer: env.CA.Signer,
		Chain: []*x509.Certificate{parent.Certificate}} // as if an intermediate
	rp := &crp.RegistrationPoint{Verifier: env.Verifier, Users: env.Users, Devices: env.Devices,
		Profiles: env.Profiles, Templates: env.RP.Templates, Issuer: crp.CAIssuer{CA: ca}}
	require.NoError(t, rp.Validate())

	srv := crp.NewServer(rp, env.RA)
	require.NoError(t, srv.Validate())
	require.Equal(t, []*x509.Certificate{ca.Certificate, parent.Certificate}, srv.CACerts)
	require.Equal(t, env.RA.SigningCertificate, srv.SignerCert)
	require.Equal(t, env.RA.Signer, srv.Signer)
	require.Equal(t, []scep.Recipient{{Certificate: env.RA.EncryptionCertificate, Key: env.RA.Decrypter}}, srv.Recipients)
	require.True(t, srv.Renewal)
	require.False(t, srv.AllowLegacy)

	ts := httptest.NewServer(srv)
	defer ts.Close()
	ctx := context.Background()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca.Certificate))

	renewed, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	require.NoError(t, err, "the renewal signer chains to the CAIssuer's CA")
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)

	// An explicit CACert still wins; renewals off means no Renewal capability.
	rp2 := &crp.RegistrationPoint{Verifier: env.Verifier, Users: env.Users, Devices: env.Devices,
		Profiles: env.Profiles, Templates: env.RP.Templates, Issuer: env.Issuer, CACert: env.CA.Certificate,
		Renewal: crp.RenewalPolicy{Disabled: true}}
	srv2 := crp.NewServer(rp2, env.RA)
	require.Equal(t, []*x509.Certificate{env.CA.Certificate}, srv2.CACerts)
	require.False(t, srv2.Renewal)
	require.NotContains(t, srv2.Caps(), scep.CapRenewal)
}

// Without CACert, only an Issuer that is the built-in CA says which CA it is.
func TestValidateCACert(t *testing.T) {
	env := newEnv(t)
	base := func() *crp.RegistrationPoint {
		return &crp.RegistrationPoint{Verifier: env.Verifier, Users: env.Users, Devices: env.Devices,
			Profiles: env.Profiles, Templates: env.RP.Templates}
	}
	for _, tc := range []struct {
		name    string
		issuer  crp.Issuer
		missing bool
	}{
		{"CAIssuer", crp.CAIssuer{CA: env.CA}, false},
		{"*CAIssuer", &crp.CAIssuer{CA: env.CA}, false},
		{"CAIssuer without a CA", crp.CAIssuer{}, true},
		{"another Issuer", env.Issuer, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := base()
			rp.Issuer = tc.issuer
			if tc.missing {
				require.ErrorContains(t, rp.Validate(), "needs CACert")
				return
			}
			require.NoError(t, rp.Validate())
		})
	}
}
