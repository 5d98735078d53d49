package intune_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/stretchr/testify/require"
)

func scepclient(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("scepclient")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("scepclient not installed (apt-get install scep): %v", err)
		}
		t.Skip("scepclient not installed (apt-get install scep)")
	}
	return p
}

// enroll runs scepclient as one device and returns the certificate it saved, if one
// from our CA.
func enroll(t *testing.T, g *gateway, bin, url, cn, ch string) (*x509.Certificate, string, error) {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command(bin, "-server-url", url, "-private-key", filepath.Join(dir, "key.pem"),
		"-certificate", filepath.Join(dir, "cert.pem"), "-cn", cn, "-organization", "", "-ou", "", "-country", "",
		"-challenge", ch).CombinedOutput()
	b, rerr := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if rerr != nil {
		return nil, string(out), err
	}
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	cert, perr := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, perr)
	if cert.CheckSignatureFrom(g.CA.Certificate) != nil {
		return nil, string(out), err // scepclient's own self-signed certificate
	}
	return cert, string(out), err
}

// TestScepclient: scep.Server + crp + intune + the emulator, enrolled with micromdm's
// scepclient.
func TestScepclient(t *testing.T) {
	bin := scepclient(t)
	g := newGateway(t, true)
	ts := httptest.NewServer(g.Server)
	defer ts.Close()
	url := ts.URL + "/scep"

	// Accepted: a certificate, and Intune told with its thumbprint and serial.
	ch := g.Emu.Challenge(intunetest.Verdict{})
	cert, out, err := enroll(t, g, bin, url, "WIN-DEVICE-01", ch)
	require.NoError(t, err, out)
	require.NotNil(t, cert, out)
	require.Equal(t, "WIN-DEVICE-01", cert.Subject.CommonName)
	s := g.Emu.Successes()
	require.Len(t, s, 1)
	require.Equal(t, intune.Thumbprint(cert), s[0].Notification.CertificateThumbprint)
	require.Equal(t, intune.SerialHex(cert.SerialNumber), s[0].Notification.CertificateSerialNumber)
	v := g.Emu.Validations()
	require.Len(t, v, 1)
	require.Equal(t, v[0].Request.TransactionID, s[0].Notification.TransactionID, "one transactionID across the calls")
	require.Equal(t, 1, g.Issuer.Count())

	// Judged by the emulator from the CSR: a challenge minted for WIN-DEVICE-05 and
	// RSA 2048 enrolls WIN-DEVICE-05, and is refused for any other subject.
	minted := intunetest.Profile{Subject: pkix.Name{CommonName: "WIN-DEVICE-05"}, KeySize: 2048}
	ch = g.Emu.Mint(minted)
	cert, out, err = enroll(t, g, bin, url, "WIN-DEVICE-05", ch)
	require.NoError(t, err, out)
	require.NotNil(t, cert, out)
	cert, out, err = enroll(t, g, bin, url, "evil-admin", g.Emu.Mint(minted))
	require.Error(t, err, out)
	require.Nil(t, cert)
	require.Contains(t, out, "badRequest")
	// The used challenge again (a new key, the subject it was minted for): refused,
	// the gateway claimed it at its first use.
	cert, out, err = enroll(t, g, bin, url, "WIN-DEVICE-05", ch)
	require.Error(t, err, out)
	require.Nil(t, cert)
	require.Contains(t, out, "badRequest")
	require.Equal(t, 2, g.Issuer.Count())

	// Refused by Intune: FAILURE, no certificate.
	ch = g.Emu.Challenge(intunetest.Verdict{Code: intune.CodeSubjectNameMismatch})
	cert, out, err = enroll(t, g, bin, url, "WIN-DEVICE-02", ch)
	require.Error(t, err, out)
	require.Nil(t, cert)
	require.Contains(t, out, "badRequest")
	ch = g.Emu.Challenge(intunetest.Verdict{Code: intune.CodeChallengeExpired})
	cert, out, err = enroll(t, g, bin, url, "WIN-DEVICE-03", ch)
	require.Error(t, err, out)
	require.Nil(t, cert)
	require.Contains(t, out, "badTime")
	require.Equal(t, 2, g.Issuer.Count())

	// The success notification fails: the CA signed, the device gets FAILURE.
	g.Emu.SetFault(intunetest.OpSuccess, intunetest.Fault{Status: 500, Times: 5})
	ch = g.Emu.Challenge(intunetest.Verdict{})
	cert, out, err = enroll(t, g, bin, url, "WIN-DEVICE-04", ch)
	require.Error(t, err, out)
	require.Nil(t, cert)
	require.Contains(t, out, "badRequest")
	require.Equal(t, 3, g.Issuer.Count(), "signed but withheld")
	require.Len(t, g.Emu.Successes(), 2)
	require.Empty(t, g.Emu.Failures())
	require.Empty(t, g.Emu.Violations())
}
