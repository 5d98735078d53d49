package intune_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	profilepkg "github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// request describes a device's CSR.
type request struct {
	cn   string
	dns  []string
	ku   x509.KeyUsage // 0: no keyUsage extension
	ekus []asn1.ObjectIdentifier
	key  crypto.Signer
}

var (
	oidClientAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidServerAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
)

func (r request) csr(t *testing.T, ch string) *x509.CertificateRequest {
	t.Helper()
	k := r.key
	if k == nil {
		k = key(t)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: r.cn}, DNSNames: r.dns}
	if r.ku != 0 {
		var bits []byte
		n := 0
		for i := 0; i < 9; i++ {
			if r.ku&(1<<uint(i)) != 0 {
				for len(bits) <= i/8 {
					bits = append(bits, 0)
				}
				bits[i/8] |= 0x80 >> uint(i%8)
				n = i + 1
			}
		}
		v, err := asn1.Marshal(asn1.BitString{Bytes: bits, BitLength: n})
		require.NoError(t, err)
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: v})
	}
	if len(r.ekus) > 0 {
		v, err := asn1.Marshal(r.ekus)
		require.NoError(t, err)
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: v})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	require.NoError(t, err)
	der, err = scep.AddChallengePassword(der, ch, k, nil)
	require.NoError(t, err)
	c, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return c
}

// The emulator judges each CSR against what its challenge was minted for, and the
// gateway refuses with the service's code: no verdict is scripted here.
func TestJudgedByEmulator(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	profile := intunetest.Profile{Subject: pkix.Name{CommonName: "LAPTOP-0042"}, DNSNames: []string{"laptop-0042.contoso.com"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, KeySize: 2048,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, DeviceID: "d-0042"}
	good := request{cn: "LAPTOP-0042", dns: []string{"laptop-0042.contoso.com"}, ku: profile.KeyUsage,
		ekus: []asn1.ObjectIdentifier{oidClientAuth}}
	with := func(f func(*request)) request { r := good; f(&r); return r }
	for _, c := range []struct {
		name string
		req  request
		want intune.Code
	}{
		{"matches", good, intune.CodeSuccess},
		{"other subject", with(func(r *request) { r.cn = "evil-admin" }), intune.CodeSubjectNameMismatch},
		{"no subject", with(func(r *request) { r.cn = "" }), intune.CodeSubjectNameMissing},
		{"no SAN", with(func(r *request) { r.dns = nil }), intune.CodeSubjectAltNameMissing},
		{"other SAN", with(func(r *request) { r.dns = []string{"dc01.contoso.com"} }), intune.CodeSubjectAltNameMismatch},
		{"extra SAN", with(func(r *request) { r.dns = append(r.dns, "dc01.contoso.com") }), intune.CodeSubjectAltNameMismatch},
		{"other key usage", with(func(r *request) { r.ku = x509.KeyUsageCertSign }), intune.CodeKeyUsageMismatch},
		{"no key usage", with(func(r *request) { r.ku = 0 }), intune.CodeKeyUsageMismatch},
		{"1024-bit key", with(func(r *request) { r.key = small }), intune.CodeKeyLengthMismatch},
		{"ECDSA key", with(func(r *request) { r.key = ec }), intune.CodeKeyLengthMismatch},
		{"no EKU", with(func(r *request) { r.ekus = nil }), intune.CodeEnhancedKeyUsageMissing},
		{"server auth", with(func(r *request) { r.ekus = []asn1.ObjectIdentifier{oidServerAuth} }), intune.CodeEnhancedKeyUsageMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := g.Emu.Mint(profile)
			before := g.Issuer.Count()
			res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-" + c.name, CSR: c.req.csr(t, ch), Challenge: ch})
			if c.want == intune.CodeSuccess {
				require.NoError(t, err)
				require.Equal(t, "LAPTOP-0042", res.Certificate.Subject.CommonName)
				return
			}
			var se *intune.ServiceError
			require.ErrorAs(t, err, &se)
			require.Equal(t, c.want, se.Code)
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.PhaseMapping, e.Phase)
			require.Equal(t, scep.BadRequest, e.FailInfo())
			require.Nil(t, res.Certificate)
			require.Equal(t, before, g.Issuer.Count(), "nothing issued")
		})
	}

	// Expiry is judged from the minting time.
	now := time.Now()
	g.Emu.SetNow(func() time.Time { return now })
	ch := g.Emu.Mint(profile)
	g.Emu.SetNow(func() time.Time { return now.Add(61 * time.Minute) })
	res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-late", CSR: good.csr(t, ch), Challenge: ch})
	var se *intune.ServiceError
	require.ErrorAs(t, err, &se)
	require.Equal(t, intune.CodeChallengeExpired, se.Code)
	require.Nil(t, res.Certificate)
	require.Equal(t, 1, g.Issuer.Count())

	// The device is retired: its challenges are no longer honoured.
	g.Emu.SetNow(time.Now)
	ch = g.Emu.Mint(profile)
	g.Emu.Retire(profile.DeviceID)
	res, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-retired", CSR: good.csr(t, ch), Challenge: ch})
	require.ErrorAs(t, err, &se)
	require.Equal(t, intune.CodeScepProfileNoLongerTargetedToTheClient, se.Code)
	require.Nil(t, res.Certificate)
	require.Equal(t, 1, g.Issuer.Count())
	require.Empty(t, g.Emu.Failures())
	require.Empty(t, g.Emu.Violations())
}

// TestJudgedByEmulatorUPN: the emulator judges user principal names (otherName
// 1.3.6.1.4.1.311.20.2.3), one of the SAN types of an Intune profile. Before, its
// Profile had no UPNs, so a CSR with another user's UPN passed validateRequest.
func TestJudgedByEmulatorUPN(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	prof := intunetest.Profile{Subject: pkix.Name{CommonName: "jane"}, UPNs: []string{"jane@contoso.com"}, DeviceID: "d-7"}
	csrWith := func(t *testing.T, ch string, upns ...string) *x509.CertificateRequest {
		k := key(t)
		ext, err := (&profilepkg.AltNames{UPNs: upns}).Extension(false)
		require.NoError(t, err)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "jane"},
			ExtraExtensions: []pkix.Extension{ext}}, k)
		require.NoError(t, err)
		der, err = scep.AddChallengePassword(der, ch, k, nil)
		require.NoError(t, err)
		c, err := x509.ParseCertificateRequest(der)
		require.NoError(t, err)
		return c
	}
	for _, c := range []struct {
		name string
		upns []string
		want intune.Code
	}{
		{"another user's UPN", []string{"ceo@contoso.com"}, intune.CodeSubjectAltNameMismatch},
		{"an extra UPN", []string{"jane@contoso.com", "ceo@contoso.com"}, intune.CodeSubjectAltNameMismatch},
		{"matches", []string{"jane@contoso.com"}, intune.CodeSuccess},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := g.Emu.Mint(prof)
			before := g.Issuer.Count()
			_, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "upn-" + c.name, CSR: csrWith(t, ch, c.upns...), Challenge: ch})
			if c.want == intune.CodeSuccess {
				require.NoError(t, err)
				require.Equal(t, before+1, g.Issuer.Count())
				return
			}
			var se *intune.ServiceError
			require.ErrorAs(t, err, &se)
			require.Equal(t, c.want, se.Code)
			require.Equal(t, before, g.Issuer.Count(), "nothing issued")
		})
	}
}
