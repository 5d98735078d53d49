package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/internal/scepclienttest"
)

func TestParseCAName(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ca, ra  string // RFC 4514 form of the CA's and the RA's subject, suffix "S"
		openssl string // first RDN first, as openssl prints it by default
		wantErr string
	}{
		{in: "CN=scepkit CA,O=scepkit", ca: "CN=scepkit CA S,O=scepkit", ra: "CN=scepkit RA S,O=scepkit", openssl: "O=scepkit/CN=scepkit CA S"},
		{in: "CN=Example Device CA,O=Example,C=FR", ca: "CN=Example Device CA S,O=Example,C=FR",
			ra: "CN=Example Device RA S,O=Example,C=FR", openssl: "C=FR/O=Example/CN=Example Device CA S"},
		{in: "cn = Issuing , ou=PKI, o=Example\\, Inc.", ca: "CN=Issuing S,OU=PKI,O=Example\\, Inc.",
			ra: "CN=Issuing RA S,OU=PKI,O=Example\\, Inc.", openssl: "O=Example, Inc./OU=PKI/CN=Issuing S"},
		{in: "CN=Caf\\C3\\A9 CA", ca: "CN=Café CA S", ra: "CN=Café RA S", openssl: "CN=Café CA S"},
		{in: "CN=A\\+B\\=C\\\\D\\ ", ca: "CN=A\\+B=C\\\\D  S", ra: "CN=A\\+B=C\\\\D  RA S", openssl: "CN=A+B=C\\D  S"},
		{in: "", wantErr: "empty"},
		{in: "O=Example", wantErr: "no CN"},
		{in: "CN=a,CN=b", wantErr: "two CNs"},
		{in: "CN=a+O=b", wantErr: "multi-valued"},
		{in: "CN=a;O=b", wantErr: "use ','"},
		{in: "CN=", wantErr: "empty value"},
		{in: "CN", wantErr: "not KEY=value"},
		{in: "DC=example,CN=a", wantErr: "the attributes are"},
		{in: "CN=a,\u017ft=Paris", wantErr: "the attributes are"}, // a long s, not ST
		{in: "CN=a,C=France", wantErr: "two-letter"},
		{in: "CN=a,C=F\\C3\\A9", wantErr: "PrintableString"},
		{in: "CN=" + strings.Repeat("x", 43), wantErr: "at most 42"},
		{in: "CN=a,O=" + strings.Repeat("x", 65), wantErr: "at most 64"},
		{in: "CN=#0403414243", wantErr: "hex-encoded"},
		{in: "CN=a\\", wantErr: "lone backslash"},
		{in: "CN=a\\q", wantErr: "escapes nothing"},
		{in: "CN=a<b", wantErr: "must be escaped"},
		{in: "CN=a=b", ca: "CN=a=b S", ra: "CN=a=b RA S", openssl: "CN=a=b S"},
		{in: "CN=\\20\\20", wantErr: "empty value"},
		{in: "CN=a\u0085b", wantErr: "control character"},
		{in: "CN=a,C=fr", wantErr: "capitals"},
		{in: "CN=a,C=12", wantErr: "capitals"},
		{in: "CN=a\\FF", wantErr: "not UTF-8"},
		{in: "CN=a\x01", wantErr: "control character"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			n, err := parseCAName(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			ca, ra := n.subject("CA", "S"), n.subject("RA", "S")
			require.Equal(t, tc.ca, ca.String())
			require.Equal(t, tc.ra, ra.String())
			var parts []string
			for _, rdn := range ca.ToRDNSequence() {
				require.Len(t, rdn, 1)
				parts = append(parts, shortName(rdn[0].Type)+"="+rdn[0].Value.(string))
			}
			require.Equal(t, tc.openssl, strings.Join(parts, "/"), "encoded order")
		})
	}
}

func shortName(oid asn1.ObjectIdentifier) string {
	for k, v := range caNameKeywords {
		if v.oid.Equal(oid) {
			return k
		}
	}
	return oid.String()
}

// TestCAName: the CA a gateway makes on its first start, and the one rollover-prepare
// makes, carry ca_name (the latter with its date), their RAs alike; a device enrolls
// and its certificate names that issuer. Before, every gateway's CA was
// CN=scepkit CA,O=scepkit whatever the operator's organisation.
func TestCAName(t *testing.T) {
	f := newFixture(t)
	const name = `CN=Example Device CA,O=Example\, Inc.,C=FR`
	cfg := f.config(t, "ca_name = '"+name+"'\n", "")
	r := start(t, cfg)
	ca, err := catemplate.LoadCA(f.path("state"))
	require.NoError(t, err)
	require.Equal(t, name, ca.Certificate.Subject.String())
	ra, err := catemplate.LoadRA(f.path("state"))
	require.NoError(t, err)
	require.Equal(t, `CN=Example Device RA,O=Example\, Inc.,C=FR`, ra.SigningCertificate.Subject.String())

	dev := scepclienttest.NewDevice(t)
	out, err := dev.Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.Equal(t, name, cert.Issuer.String())
	require.NoError(t, cert.CheckSignatureFrom(ca.Certificate))
	r.stop(t)

	next := f.path("next")
	outb, err := exec.Command(bin, "rollover-prepare", "-config", cfg, "-dir", next).CombinedOutput()
	require.NoError(t, err, string(outb))
	nextCA, err := catemplate.LoadCA(next)
	require.NoError(t, err)
	require.Regexp(t, `^CN=Example Device CA \d{4}-\d\d-\d\dT\d{6}Z,O=Example\\, Inc\.,C=FR$`, nextCA.Certificate.Subject.String())
	require.True(t, nextCA.Certificate.IsCA)
	require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, nextCA.Certificate.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign))

	// A name that cannot be is refused at start, naming the setting.
	g := newFixture(t)
	outb, err = exec.Command(bin, "serve", "-config", g.config(t, "ca_name = 'O=Example'\n", "")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(outb), "setting ca_name (SCEPKIT_CA_NAME): no CN")
}

// TestRANameForCurrentCA: rollover-prepare -ra-only names the new RA after the CA in
// force, whatever ca_name says now (it may have been set after that CA was made).
func TestRANameForCurrentCA(t *testing.T) {
	for _, tc := range []struct {
		ca   pkix.Name
		want string
	}{
		{pkix.Name{CommonName: "scepkit CA", Organization: []string{"scepkit"}}, "CN=scepkit RA S,O=scepkit"},
		{pkix.Name{CommonName: "Old Issuing", Country: []string{"FR"}}, "CN=Old Issuing RA S,C=FR"},
		{pkix.Name{CommonName: "Example Corporation Device Issuing CA 2026-01-02T150405Z"},
			"CN=Example Corporation Device Issuing RA S"},
	} {
		der, err := asn1.Marshal(tc.ca.ToRDNSequence())
		require.NoError(t, err)
		got, err := raNameFor(der, "S")
		require.NoError(t, err)
		require.Equal(t, tc.want, got.String())
	}
	der, err := asn1.Marshal(pkix.Name{CommonName: strings.Repeat("x", 62)}.ToRDNSequence())
	require.NoError(t, err)
	_, err = raNameFor(der, "2027-01-02T150405Z")
	require.ErrorContains(t, err, "longer than 64")
}
