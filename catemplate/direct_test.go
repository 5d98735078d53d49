package catemplate

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

// directCAs returns CAs of every key kind the direct encoder handles.
func directCAs(t *testing.T) map[string]*CA {
	t.Helper()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	cas := map[string]*CA{}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	require.NoError(t, err)
	for name, opts := range map[string]CAOptions{
		"rsa2048": {KeySize: 2048},
		"p256":    {KeyType: profile.ECDSAP256},
		"p384":    {KeyType: profile.ECDSAP384},
		"p521":    {Signer: p521},
		"ed25519": {Signer: edKey},
	} {
		opts.Now = func() time.Time { return testNow }
		ca, err := NewCA(opts)
		require.NoError(t, err, name)
		cas[name] = ca
	}
	// A CA certificate without a subject key identifier: no authorityKeyIdentifier.
	noSKI := *cas["rsa2048"].Certificate
	noSKI.SubjectKeyId = nil
	cas["rsa2048-no-ski"] = &CA{Certificate: &noSKI, Signer: cas["rsa2048"].Signer, Now: cas["rsa2048"].Now}
	return cas
}

// TestSignDirectMatchesCreateCertificate holds the direct encoder to crypto/x509's
// output: for every template shape Apply produces, and a few it could, the
// certificate's to-be-signed bytes are identical to CreateCertificate's, and the whole
// certificate too where the signature is deterministic (RSA PKCS #1 v1.5, Ed25519).
func TestSignDirectMatchesCreateCertificate(t *testing.T) {
	keys(t)
	_, edDevice, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)

	base := func(t *testing.T, ca *CA) *x509.Certificate {
		tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, rand.Reader)
		require.NoError(t, err)
		return tmpl
	}
	mods := []struct {
		name string
		pub  crypto.PublicKey
		mod  func(tmpl *x509.Certificate, ca *CA)
	}{
		{"as applied", nil, nil},
		{"p256 device key", &p256.PublicKey, nil},
		{"p384 device key", &p384.PublicKey, nil},
		{"ed25519 device key", edDevice.Public(), nil},
		{"no key usage, no eku", nil, func(c *x509.Certificate, _ *CA) { c.KeyUsage, c.ExtKeyUsage = 0, nil }},
		{"one key usage bit", nil, func(c *x509.Certificate, _ *CA) { c.KeyUsage = x509.KeyUsageDigitalSignature }},
		{"eighth key usage bit", nil, func(c *x509.Certificate, _ *CA) { c.KeyUsage = x509.KeyUsageEncipherOnly }},
		{"every key usage bit", nil, func(c *x509.Certificate, _ *CA) { c.KeyUsage = 1<<9 - 1 }},
		{"decipher only", nil, func(c *x509.Certificate, _ *CA) {
			c.KeyUsage = x509.KeyUsageKeyAgreement | x509.KeyUsageDecipherOnly
		}},
		{"every known eku and unknown ones", nil, func(c *x509.Certificate, _ *CA) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth,
				x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageIPSECEndSystem,
				x509.ExtKeyUsageIPSECTunnel, x509.ExtKeyUsageIPSECUser, x509.ExtKeyUsageTimeStamping, x509.ExtKeyUsageOCSPSigning}
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 20, 2, 2}, {1, 3, 6, 1, 4, 1, 311, 10, 3, 4}}
		}},
		{"unknown eku only", nil, func(c *x509.Certificate, _ *CA) {
			c.ExtKeyUsage = nil
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 20, 2, 2}}
		}},
		{"no basic constraints", nil, func(c *x509.Certificate, _ *CA) { c.BasicConstraintsValid = false }},
		{"no subject key id", nil, func(c *x509.Certificate, _ *CA) { c.SubjectKeyId = nil }},
		{"nothing but the names", nil, func(c *x509.Certificate, _ *CA) {
			c.KeyUsage, c.ExtKeyUsage, c.BasicConstraintsValid, c.SubjectKeyId = 0, nil, false, nil
		}},
		{"no extensions at all", nil, func(c *x509.Certificate, _ *CA) {
			c.KeyUsage, c.ExtKeyUsage, c.BasicConstraintsValid, c.SubjectKeyId, c.ExtraExtensions = 0, nil, false, nil, nil
		}},
		{"empty subject, critical SAN", nil, func(c *x509.Certificate, _ *CA) {
			c.RawSubject = emptyRDNSequence
			c.ExtraExtensions[0].Critical = true
		}},
		{"more extra extensions", nil, func(c *x509.Certificate, _ *CA) {
			c.ExtraExtensions = append(c.ExtraExtensions,
				pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 7}, Critical: true, Value: []byte{0x30, 0x03, 0x02, 0x01, 0x64}},
				pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{0x05, 0x00}})
		}},
		{"self-issued (subject is the CA's)", nil, func(c *x509.Certificate, ca *CA) { c.RawSubject = ca.Certificate.RawSubject }},
		{"serial with the high bit set", nil, func(c *x509.Certificate, _ *CA) {
			c.SerialNumber = new(big.Int).SetBytes(bytes.Repeat([]byte{0xff}, 16))
		}},
		{"serial 1", nil, func(c *x509.Certificate, _ *CA) { c.SerialNumber = big.NewInt(1) }},
		{"times in another zone with nanoseconds", nil, func(c *x509.Certificate, _ *CA) {
			loc := time.FixedZone("UTC+5:30", 5*3600+1800)
			c.NotBefore = c.NotBefore.In(loc).Add(123456789)
			c.NotAfter = c.NotAfter.In(loc).Add(987654321)
		}},
		{"generalized time from 2050", nil, func(c *x509.Certificate, _ *CA) {
			c.NotAfter = time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)
		}},
		{"last UTCTime second", nil, func(c *x509.Certificate, _ *CA) {
			c.NotAfter = time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)
		}},
		{"generalized time before 1950", nil, func(c *x509.Certificate, _ *CA) {
			c.NotBefore = time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC)
		}},
	}
	for caName, ca := range directCAs(t) {
		for _, m := range mods {
			t.Run(caName+"/"+m.name, func(t *testing.T) {
				tmpl := base(t, ca)
				pub := m.pub
				if pub == nil {
					pub = csr.PublicKey
				}
				if m.mod != nil {
					m.mod(tmpl, ca)
				}
				got, err := ca.signDirect(tmpl, pub)
				require.NoError(t, err)
				want, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate, pub, ca.Signer)
				require.NoError(t, err)

				gotCert, err := x509.ParseCertificate(got)
				require.NoError(t, err)
				wantCert, err := x509.ParseCertificate(want)
				require.NoError(t, err)
				require.Equal(t, wantCert.RawTBSCertificate, gotCert.RawTBSCertificate)
				require.Equal(t, wantCert.SignatureAlgorithm, gotCert.SignatureAlgorithm)
				require.NoError(t, gotCert.CheckSignatureFrom(ca.Certificate))
				if _, ecdsaCA := ca.Signer.(*ecdsa.PrivateKey); !ecdsaCA {
					require.Equal(t, want, got, "deterministic signature: the whole DER must match")
				}
			})
		}
	}
}

// TestSignDirectFallsBack: templates with anything the direct encoder does not write
// are not encoded by it, and CA.Sign still honours them through CreateCertificate.
func TestSignDirectFallsBack(t *testing.T) {
	keys(t)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	ca := testCA(t, 10*365*24*time.Hour)
	cases := []struct {
		name  string
		mod   func(*x509.Certificate)
		check func(*testing.T, *x509.Certificate)
	}{
		{"DNS names", func(c *x509.Certificate) { c.ExtraExtensions = nil; c.DNSNames = []string{"a.example"} },
			func(t *testing.T, c *x509.Certificate) { require.Equal(t, []string{"a.example"}, c.DNSNames) }},
		{"subject from fields", func(c *x509.Certificate) { c.RawSubject = nil; c.Subject = pkix.Name{CommonName: "field"} },
			func(t *testing.T, c *x509.Certificate) { require.Equal(t, "field", c.Subject.CommonName) }},
		{"key usage as an extra extension", func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oidKeyUsage, Critical: true, Value: []byte{3, 2, 7, 0x80}})
		}, func(t *testing.T, c *x509.Certificate) { require.Equal(t, x509.KeyUsageDigitalSignature, c.KeyUsage) }},
		{"authority key id", func(c *x509.Certificate) { c.AuthorityKeyId = []byte{1, 2, 3} }, nil},
		{"signature algorithm", func(c *x509.Certificate) { c.SignatureAlgorithm = x509.SHA384WithRSA },
			func(t *testing.T, c *x509.Certificate) { require.Equal(t, x509.SHA384WithRSA, c.SignatureAlgorithm) }},
		{"microsoft eku", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageMicrosoftKernelCodeSigning}
		}, func(t *testing.T, c *x509.Certificate) {
			require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageMicrosoftKernelCodeSigning}, c.ExtKeyUsage)
		}},
		{"CRL distribution point", func(c *x509.Certificate) { c.CRLDistributionPoints = []string{"http://127.0.0.1/ca.crl"} },
			func(t *testing.T, c *x509.Certificate) {
				require.Equal(t, []string{"http://127.0.0.1/ca.crl"}, c.CRLDistributionPoints)
			}},
		{"policies", func(c *x509.Certificate) {
			oid, err := x509.OIDFromInts([]uint64{1, 2, 3, 4})
			require.NoError(t, err)
			c.Policies = []x509.OID{oid}
		}, func(t *testing.T, c *x509.Certificate) { require.Len(t, c.Policies, 1) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, rand.Reader)
			require.NoError(t, err)
			c.mod(tmpl)
			_, err = ca.signDirect(tmpl, csr.PublicKey)
			require.ErrorIs(t, err, errNotDirect)
			cert, err := ca.Sign(t.Context(), tmpl, csr.PublicKey)
			require.NoError(t, err)
			require.NoError(t, cert.CheckSignatureFrom(ca.Certificate))
			if c.check != nil {
				c.check(t, cert)
			}
		})
	}
}

// faultySigner signs with a real key and then damages the signature, as a broken HSM
// might.
type faultySigner struct{ crypto.Signer }

// failingSigner fails as a token does when it is removed.
type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("pkcs11: 0x32: CKR_DEVICE_REMOVED")
}

// withDNS is tmpl with a DNS SAN, which signDirect leaves to crypto/x509.
func withDNS(tmpl *x509.Certificate) *x509.Certificate {
	c := *tmpl
	c.ExtraExtensions, c.DNSNames = nil, []string{"a.example"}
	return &c
}

func (f faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.Signer.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)/2] ^= 1
	}
	return sig, err
}

// TestSignDirectRefusesBadSigners: a signer whose key is not the CA certificate's, or
// that returns a wrong signature, yields an error and no certificate.
func TestSignDirectRefusesBadSigners(t *testing.T) {
	keys(t)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	ca := testCA(t, 10*365*24*time.Hour)
	tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, rand.Reader)
	require.NoError(t, err)

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ec, err := NewCA(CAOptions{KeyType: profile.ECDSAP256, Now: func() time.Time { return testNow }})
	require.NoError(t, err)
	ecTmpl, err := Apply(clientTemplate(), csr, r, ec.Certificate, testNow, rand.Reader)
	require.NoError(t, err)
	cases := []struct {
		name string
		ca   *CA
		tmpl *x509.Certificate
	}{
		{"another rsa key", &CA{Certificate: ca.Certificate, Signer: other}, tmpl},
		{"a p256 key", &CA{Certificate: ca.Certificate, Signer: p256}, tmpl},
		{"faulty rsa signer", &CA{Certificate: ca.Certificate, Signer: faultySigner{ca.Signer}}, tmpl},
		{"faulty ecdsa signer", &CA{Certificate: ec.Certificate, Signer: faultySigner{ec.Signer}}, ecTmpl},
		{"failing signer", &CA{Certificate: ca.Certificate, Signer: failingSigner{ca.Signer}}, tmpl},
		// Templates crypto/x509 encodes (signDirect declines them): the same errors.
		{"another rsa key, x509 encoder", &CA{Certificate: ca.Certificate, Signer: other}, withDNS(tmpl)},
		{"faulty rsa signer, x509 encoder", &CA{Certificate: ca.Certificate, Signer: faultySigner{ca.Signer}}, withDNS(tmpl)},
		{"failing signer, x509 encoder", &CA{Certificate: ca.Certificate, Signer: failingSigner{ca.Signer}}, withDNS(tmpl)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cert, err := c.ca.Sign(t.Context(), c.tmpl, csr.PublicKey)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrSigner, "the CA's key failed, not the request")
			require.NotErrorIs(t, err, ErrRefused)
			require.False(t, errors.Is(err, errNotDirect))
			require.Equal(t, 1, strings.Count(err.Error(), "catemplate:"), "one prefix: %v", err)
			require.Nil(t, cert)
		})
	}
}

// TestSignDirectDeclinesWhereEncodersDisagree: templates on which signDirect and
// CreateCertificate used to part ways (found by FuzzSignDirect) are left to
// CreateCertificate. A missing serial number made signDirect panic where
// CreateCertificate draws one; a negative one was encoded where CreateCertificate
// refuses it; an object identifier with a negative arc made cryptobyte fail where
// encoding/asn1 writes a malformed identifier. Path lengths, which CreateCertificate
// checks, are its alone too.
func TestSignDirectDeclinesWhereEncodersDisagree(t *testing.T) {
	keys(t)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	ca := testCA(t, 10*365*24*time.Hour)
	cases := []struct {
		name      string
		mod       func(*x509.Certificate)
		x509Fails bool
	}{
		{"no serial", func(c *x509.Certificate) { c.SerialNumber = nil }, false},
		{"negative serial", func(c *x509.Certificate) { c.SerialNumber = big.NewInt(-5) }, true},
		{"unknown eku with a negative arc", func(c *x509.Certificate) {
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 2, -1}}
		}, false},
		{"unknown eku with a negative first arc", func(c *x509.Certificate) {
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{-1, 2}}
		}, false},
		{"extension with a negative arc", func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, -6}})
		}, false},
		{"unknown eku of one arc", func(c *x509.Certificate) {
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1}}
		}, true},
		{"extension without an id", func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Value: []byte{5, 0}})
		}, true},
		// Path length rules are CreateCertificate's to apply: the direct encoder takes
		// neither MaxPathLen nor MaxPathLenZero.
		{"path length on an end entity", func(c *x509.Certificate) { c.MaxPathLen = 1 }, true},
		{"path length zero on an end entity", func(c *x509.Certificate) { c.MaxPathLenZero = true }, true},
		{"path length below -1", func(c *x509.Certificate) { c.MaxPathLen = -2 }, true},
		{"no path length (-1)", func(c *x509.Certificate) { c.MaxPathLen = -1 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, rand.Reader)
			require.NoError(t, err)
			c.mod(tmpl)
			_, err = ca.signDirect(tmpl, csr.PublicKey)
			require.ErrorIs(t, err, errNotDirect)
			_, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate, csr.PublicKey, ca.Signer)
			require.Equal(t, c.x509Fails, err != nil, "CreateCertificate: %v", err)
		})
	}
}

// TestDirectOID: the identifiers signDirect writes itself are those encoding/asn1
// encodes the same way.
func TestDirectOID(t *testing.T) {
	for _, c := range []struct {
		oid  asn1.ObjectIdentifier
		want bool
	}{
		{asn1.ObjectIdentifier{0, 0}, true},
		{asn1.ObjectIdentifier{1, 39, 5}, true},
		{asn1.ObjectIdentifier{2, 999, math.MaxInt}, true},
		{asn1.ObjectIdentifier{2, math.MaxInt - 80}, true},
		{asn1.ObjectIdentifier{2, math.MaxInt - 79}, false}, // 40*2+arc overflows an int
		{asn1.ObjectIdentifier{1, 40}, false},
		{asn1.ObjectIdentifier{3, 1}, false},
		{asn1.ObjectIdentifier{1}, false},
		{nil, false},
		{asn1.ObjectIdentifier{1, 2, -1}, false},
		{asn1.ObjectIdentifier{-1, 2}, false},
	} {
		require.Equal(t, c.want, directOID(c.oid), "%v", c.oid)
		if c.want {
			_, err := asn1.Marshal(c.oid)
			require.NoError(t, err, "%v", c.oid)
		}
	}
}

// TestSignDirectP224CA: for a P-224 CA key, which the direct encoder does not take,
// CA.Sign issues through CreateCertificate (ECDSA with SHA-256, as crypto/x509 picks).
func TestSignDirectP224CA(t *testing.T) {
	keys(t)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	ca, err := NewCA(CAOptions{Signer: key, Now: func() time.Time { return testNow }})
	require.NoError(t, err)
	tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, rand.Reader)
	require.NoError(t, err)
	_, err = ca.signDirect(tmpl, csr.PublicKey)
	require.ErrorIs(t, err, errNotDirect)
	cert, err := ca.Sign(t.Context(), tmpl, csr.PublicKey)
	require.NoError(t, err)
	require.Equal(t, x509.ECDSAWithSHA256, cert.SignatureAlgorithm)
	require.NoError(t, cert.CheckSignatureFrom(ca.Certificate))
}

// messageOnlySigner signs messages (crypto.MessageSigner) and refuses digests, as a
// signer that hashes inside its token may.
type messageOnlySigner struct{ key *rsa.PrivateKey }

func (m messageOnlySigner) Public() crypto.PublicKey { return m.key.Public() }

func (m messageOnlySigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("this signer takes messages, not digests")
}

func (m messageOnlySigner) SignMessage(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return crypto.SignMessage(m.key, rand, msg, opts)
}

// TestSignMessageSigner: a crypto.MessageSigner is asked for SignMessage on both
// encoders. Through crypto/x509 the wrapper that watches the signer hid the
// interface, and such a signer failed every template the direct encoder leaves.
func TestSignMessageSigner(t *testing.T) {
	keys(t)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	base := testCA(t, 10*365*24*time.Hour)
	ca := &CA{Certificate: base.Certificate, Signer: messageOnlySigner{base.Signer.(*rsa.PrivateKey)},
		Now: func() time.Time { return testNow }}
	for _, tc := range []struct {
		name string
		mod  func(*x509.Certificate)
	}{
		{"direct", func(*x509.Certificate) {}},
		{"crypto/x509", func(c *x509.Certificate) { c.CRLDistributionPoints = []string{"http://127.0.0.1/ca.crl"} }},
	} {
		tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, rand.Reader)
		require.NoError(t, err)
		tc.mod(tmpl)
		cert, err := ca.Sign(t.Context(), tmpl, csr.PublicKey)
		require.NoError(t, err, tc.name)
		require.NoError(t, cert.CheckSignatureFrom(ca.Certificate), tc.name)
	}
}
