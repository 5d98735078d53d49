package profile

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustRender(t testing.TB, p *Profile) *Rendered {
	t.Helper()
	r, err := Render(p, testUser(), testDevice(), nil)
	require.NoError(t, err)
	return r
}

func replaceExt(tmpl *x509.CertificateRequest, oid asn1.ObjectIdentifier, ext *pkix.Extension) {
	var out []pkix.Extension
	for _, e := range tmpl.ExtraExtensions {
		if !e.Id.Equal(oid) {
			out = append(out, e)
		}
	}
	if ext != nil {
		out = append(out, *ext)
	}
	tmpl.ExtraExtensions = out
}

func sanExt(t testing.TB, a *AltNames) *pkix.Extension {
	t.Helper()
	e, err := a.Extension(false)
	require.NoError(t, err)
	return &e
}

func TestCheck(t *testing.T) {
	testKeys(t)
	r := mustRender(t, testProfile())
	base := r.AltNames()
	withAlt := func(mod func(a *AltNames)) func(*x509.CertificateRequest) {
		return func(tmpl *x509.CertificateRequest) {
			a := *base
			mod(&a)
			replaceExt(tmpl, OIDSubjectAltName, sanExt(t, &a))
		}
	}
	subject := func(s string) func(*x509.CertificateRequest) {
		return func(tmpl *x509.CertificateRequest) {
			f, err := parseDN(s, false)
			require.NoError(t, err)
			var attrs []Attribute
			for i, rdn := range f.rdns {
				for _, a := range rdn {
					attrs = append(attrs, Attribute{Type: a.typ.oid, Value: a.value[0].lit, RDN: i})
				}
			}
			tmpl.RawSubject, err = marshalRDNs(attrs)
			require.NoError(t, err)
		}
	}
	cases := []struct {
		name   string
		key    crypto.Signer
		mod    func(*x509.CertificateRequest)
		fields []string // nil: match
	}{
		{"match", nil, nil, nil},
		{"match reordered RDNs", nil, subject("C=US,O=Contoso,OU=Devices,CN=jane@contoso.com"), nil},
		{"match multi-valued", nil, subject("C=US+O=Contoso,OU=Devices+CN=jane@contoso.com"), nil},
		{"subject other CN", nil, subject("CN=admin@contoso.com,OU=Devices,O=Contoso,C=US"), []string{"subject"}},
		{"subject extra attribute", nil, subject("CN=jane@contoso.com,OU=Devices,O=Contoso,C=US,OU=Admins"), []string{"subject"}},
		{"subject missing attribute", nil, subject("CN=jane@contoso.com,O=Contoso,C=US"), []string{"subject"}},
		{"subject case differs", nil, subject("CN=Jane@contoso.com,OU=Devices,O=Contoso,C=US"), []string{"subject"}},
		{"subject duplicated", nil, subject("CN=jane@contoso.com,CN=jane@contoso.com,OU=Devices,O=Contoso,C=US"), []string{"subject"}},
		{"dns case-insensitive", nil, withAlt(func(a *AltNames) { a.DNSNames = []string{"JANES-LAPTOP.corp.contoso.com"} }), nil},
		{"dns other", nil, withAlt(func(a *AltNames) { a.DNSNames = []string{"evil.com"} }), []string{"san.dns"}},
		{"dns extra", nil, withAlt(func(a *AltNames) { a.DNSNames = append(a.DNSNames, "evil.com") }), []string{"san.dns"}},
		{"email missing", nil, withAlt(func(a *AltNames) { a.EmailAddresses = nil }), []string{"san.email"}},
		{"upn other", nil, withAlt(func(a *AltNames) { a.UPNs = []string{"admin@contoso.com"} }), []string{"san.upn"}},
		{"uri other", nil, withAlt(func(a *AltNames) { a.URIs = []*url.URL{{Scheme: "urn", Opaque: "device:x"}} }), []string{"san.uri"}},
		{"ip added", nil, withAlt(func(a *AltNames) { a.IPAddresses = append(a.IPAddresses, []byte{10, 0, 0, 1}) }), []string{"san.ip"}},
		{"other name added", nil, withAlt(func(a *AltNames) { a.Others = [][]byte{{0x88, 0x03, 0x2a, 0x03, 0x04}} }), []string{"san.other"}},
		{"no SAN at all", nil, func(tmpl *x509.CertificateRequest) { replaceExt(tmpl, OIDSubjectAltName, nil) }, []string{"san.dns", "san.email", "san.upn", "san.uri"}},
		{"malformed SAN", nil, func(tmpl *x509.CertificateRequest) {
			replaceExt(tmpl, OIDSubjectAltName, &pkix.Extension{Id: OIDSubjectAltName, Value: []byte{0x30, 0x13, 0xa0, 0x11, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03, 0xa0, 0x03, 0x16, 0x01, 0x61}}) // UPN as IA5String
		}, []string{"san"}},
		{"key size", rsaKey3, nil, []string{"key.size"}},
		{"key type", ecKey, nil, []string{"key.type"}},
		{"key usage", nil, func(tmpl *x509.CertificateRequest) {
			ku, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
			replaceExt(tmpl, oidKeyUsage, &pkix.Extension{Id: oidKeyUsage, Value: ku})
		}, []string{"key.usage"}},
		{"key usage absent", nil, func(tmpl *x509.CertificateRequest) { replaceExt(tmpl, oidKeyUsage, nil) }, nil},
		{"eku other", nil, func(tmpl *x509.CertificateRequest) {
			v, _ := asn1.Marshal([]asn1.ObjectIdentifier{EKUServerAuth.OID})
			replaceExt(tmpl, oidExtKeyUsage, &pkix.Extension{Id: oidExtKeyUsage, Value: v})
		}, []string{"eku"}},
		{"eku absent", nil, func(tmpl *x509.CertificateRequest) { replaceExt(tmpl, oidExtKeyUsage, nil) }, nil},
		{"basic constraints CA", nil, func(tmpl *x509.CertificateRequest) {
			v, _ := asn1.Marshal(struct{ IsCA bool }{true})
			replaceExt(tmpl, oidBasicConstraints, &pkix.Extension{Id: oidBasicConstraints, Value: v})
		}, []string{"extension.basicConstraints"}},
		{"basic constraints leaf", nil, func(tmpl *x509.CertificateRequest) {
			v, _ := asn1.Marshal(struct{}{})
			replaceExt(tmpl, oidBasicConstraints, &pkix.Extension{Id: oidBasicConstraints, Value: v})
		}, nil},
		{"unknown critical", nil, func(tmpl *x509.CertificateRequest) {
			replaceExt(tmpl, asn1.ObjectIdentifier{1, 2, 3}, &pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3}, Critical: true, Value: []byte{5, 0}})
		}, []string{"extension.1.2.3"}},
		{"unknown non-critical", nil, func(tmpl *x509.CertificateRequest) {
			replaceExt(tmpl, asn1.ObjectIdentifier{1, 2, 3}, &pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3}, Value: []byte{5, 0}})
		}, nil},
		{"sha1 signature", nil, func(tmpl *x509.CertificateRequest) { tmpl.SignatureAlgorithm = x509.SHA1WithRSA }, []string{"hash"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			key := c.key
			if key == nil {
				key = rsaKey
			}
			csr := csrFor(t, r, key, c.mod)
			err := Check(csr, r)
			if c.fields == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrMismatch)
			var got []string
			for _, e := range unwrapAll(err) {
				var me *MismatchError
				if errors.As(e, &me) {
					got = append(got, me.Field)
				}
			}
			require.ElementsMatch(t, c.fields, got)
		})
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestCheckSHA1Legacy(t *testing.T) {
	testKeys(t)
	p := testProfile()
	p.Hash = SHA1
	p.AllowLegacyHash = true
	r := mustRender(t, p)
	csr := csrFor(t, r, rsaKey, func(tmpl *x509.CertificateRequest) { tmpl.SignatureAlgorithm = x509.SHA1WithRSA })
	require.NoError(t, Check(csr, r))
	// Apple devices choose their own hash.
	p = testProfile()
	p.Platform = IOS
	r = mustRender(t, p)
	csr = csrFor(t, r, rsaKey, func(tmpl *x509.CertificateRequest) { tmpl.SignatureAlgorithm = x509.SHA1WithRSA })
	require.NoError(t, Check(csr, r))
}

func TestCheckECDSA(t *testing.T) {
	testKeys(t)
	p := testProfile()
	p.Platform = Android
	p.KeyType = ECDSAP256
	p.KeySize = 0
	r := mustRender(t, p)
	require.Equal(t, 256, r.KeySize)
	require.NoError(t, Check(csrFor(t, r, ecKey, nil), r))
	err := Check(csrFor(t, r, rsaKey, nil), r)
	var me *MismatchError
	require.ErrorAs(t, err, &me)
	require.Equal(t, "key.type", me.Field)
}

func TestCheckNil(t *testing.T) {
	require.ErrorIs(t, Check(nil, nil), ErrMismatch)
}

func TestAltNamesRoundTrip(t *testing.T) {
	a := &AltNames{
		DNSNames:       []string{"a.example", "b.example"},
		EmailAddresses: []string{"x@example.com"},
		UPNs:           []string{"jäne@contoso.com", "second@contoso.com"},
		URIs:           []*url.URL{{Scheme: "https", Host: "example.com", Path: "/x"}},
		IPAddresses:    []net.IP{{192, 0, 2, 1}},
	}
	der, err := a.Marshal()
	require.NoError(t, err)
	b, err := ParseAltNames(der)
	require.NoError(t, err)
	require.Equal(t, a.DNSNames, b.DNSNames)
	require.Equal(t, a.EmailAddresses, b.EmailAddresses)
	require.Equal(t, a.UPNs, b.UPNs)
	require.Equal(t, a.URIs[0].String(), b.URIs[0].String())
	require.Len(t, b.IPAddresses, 1)
	again, err := b.Marshal()
	require.NoError(t, err)
	require.Equal(t, der, again)

	// crypto/x509 agrees on the parts it knows.
	testKeys(t)
	ext, _ := a.Extension(false)
	csrDER, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{ext}}, rsaKey)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(csrDER)
	require.NoError(t, err)
	require.Equal(t, a.DNSNames, csr.DNSNames)
	require.Equal(t, a.EmailAddresses, csr.EmailAddresses)

	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x02, 0x81, 0x01}, {0x30, 0x00, 0x00}, {0x30, 0x03, 0x81, 0x01, 0xff},
		{0x30, 0x04, 0x87, 0x02, 1, 2}, {0x30, 0x05, 0xa0, 0x03, 0x06, 0x01, 0x2a}} {
		_, err := ParseAltNames(bad)
		require.ErrorIs(t, err, ErrAltNames, "%x", bad)
	}
}

// A subject mismatch shows both subjects in one notation, the one profiles are
// written in (keywords, quoted values), so an operator can compare them.
func TestCheckSubjectMismatchText(t *testing.T) {
	testKeys(t)
	r := mustRender(t, testProfile())
	for _, tc := range []struct{ got, shown string }{
		{"CN=admin@contoso.com,OU=Devices,O=Contoso,C=US", "CN=admin@contoso.com, OU=Devices, O=Contoso, C=US"},
		{`CN="admin, x"+OU=Devices,O=Contoso`, `OU=Devices+CN="admin, x", O=Contoso`}, // DER orders a SET OF
		{"", "an empty subject"},
		{"OID.1.2.3.4=x", "OID.1.2.3.4=x"},
	} {
		csr := csrFor(t, r, rsaKey, func(tmpl *x509.CertificateRequest) {
			if tc.got == "" {
				tmpl.RawSubject = []byte{0x30, 0}
				return
			}
			f, err := parseDN(tc.got, false)
			require.NoError(t, err)
			var attrs []Attribute
			for i, rdn := range f.rdns {
				for _, a := range rdn {
					attrs = append(attrs, Attribute{Type: a.typ.oid, Value: a.value[0].lit, RDN: i})
				}
			}
			tmpl.RawSubject, err = marshalRDNs(attrs)
			require.NoError(t, err)
		})
		require.EqualError(t, Check(csr, r),
			"profile: request does not match: subject: want "+r.SubjectString()+", got "+tc.shown)
	}
}
