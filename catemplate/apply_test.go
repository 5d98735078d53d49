package catemplate

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

func TestApplyAndSign(t *testing.T) {
	keys(t)
	ca := testCA(t, 10*365*24*time.Hour)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	require.NoError(t, profile.Check(csr, r))

	tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, nil)
	require.NoError(t, err)
	cert, err := ca.Sign(context.Background(), tmpl, csr.PublicKey)
	require.NoError(t, err)

	require.Equal(t, r.RawSubject, cert.RawSubject)
	require.Equal(t, "CN=jane@contoso.com,O=Contoso", cert.Subject.String())
	require.Equal(t, []string{"laptop.contoso.com"}, cert.DNSNames)
	require.Equal(t, []string{"jane@contoso.com"}, cert.EmailAddresses)
	require.Equal(t, "urn:intune:dev-1", cert.URIs[0].String())
	require.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, cert.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
	require.False(t, cert.IsCA)
	require.Equal(t, testNow, cert.NotBefore)
	require.Equal(t, testNow.AddDate(1, 0, 0), cert.NotAfter)
	require.Equal(t, ca.Certificate.SubjectKeyId, cert.AuthorityKeyId)
	require.NotEmpty(t, cert.SubjectKeyId)

	// The UPN made it into the issued certificate, read back by our own parser.
	var sanValue []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(profile.OIDSubjectAltName) {
			sanValue = e.Value
			require.False(t, e.Critical)
		}
	}
	alt, err := profile.ParseAltNames(sanValue)
	require.NoError(t, err)
	require.Equal(t, []string{"jane@contoso.com"}, alt.UPNs)

	// The certificate chains to the CA.
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
}

func TestApplySerial(t *testing.T) {
	keys(t)
	ca := testCA(t, 0)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	seen := map[string]bool{}
	for range 200 {
		tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, nil)
		require.NoError(t, err)
		require.Positive(t, tmpl.SerialNumber.Sign())
		require.LessOrEqual(t, tmpl.SerialNumber.BitLen(), 128)
		require.False(t, seen[tmpl.SerialNumber.String()])
		seen[tmpl.SerialNumber.String()] = true
	}
	// A zero stream is redrawn, then refused.
	_, err := RandomSerial(bytes.NewReader(make([]byte, 1024)))
	require.Error(t, err)
	s, err := RandomSerial(bytes.NewReader(append(make([]byte, 16), bytes.Repeat([]byte{0xff}, 16)...)))
	require.NoError(t, err)
	require.Equal(t, 128, s.BitLen())
}

// TestApplyValidity: the issued lifetime is the shortest of template, profile and CA.
func TestApplyValidity(t *testing.T) {
	keys(t)
	r := render(t) // profile: 1 year
	csr := makeCSR(t, r, rsa2048)
	day := 24 * time.Hour
	cases := []struct {
		name       string
		caValidity time.Duration
		tmplValid  time.Duration
		backdate   time.Duration
		now        time.Time
		want       time.Time
		err        error
	}{
		{"template shortest", 10 * 365 * day, 30 * day, 0, testNow, testNow.Add(30 * day), nil},
		{"profile shortest", 10 * 365 * day, 5 * 365 * day, 0, testNow, testNow.AddDate(1, 0, 0), nil},
		{"clamped at CA expiry", 100 * day, 365 * day, 0, testNow, testNow.Add(100 * day), nil},
		{"one second before CA expiry", 100 * day, 365 * day, 0, testNow.Add(100*day - time.Second), testNow.Add(100 * day), nil},
		{"at CA expiry", 100 * day, 365 * day, 0, testNow.Add(100 * day), time.Time{}, ErrCAExpired},
		{"after CA expiry", 100 * day, 365 * day, 0, testNow.Add(200 * day), time.Time{}, ErrCAExpired},
		{"before CA validity", 100 * day, 365 * day, 0, testNow.Add(-CABackdate - time.Second), time.Time{}, ErrCAExpired},
		{"backdate clamped to CA start", 100 * day, 365 * day, time.Hour, testNow, testNow.Add(100 * day), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ca := testCA(t, c.caValidity)
			tp := clientTemplate()
			tp.Validity = c.tmplValid
			tp.Backdate = c.backdate
			tmpl, err := Apply(tp, csr, r, ca.Certificate, c.now, nil)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, tmpl.NotAfter)
			require.False(t, tmpl.NotBefore.Before(ca.Certificate.NotBefore))
			require.False(t, tmpl.NotAfter.After(ca.Certificate.NotAfter))
			cert, err := ca.Sign(context.Background(), tmpl, csr.PublicKey)
			require.NoError(t, err)
			require.Equal(t, c.want, cert.NotAfter)
		})
	}
}

func TestApplyRefusals(t *testing.T) {
	keys(t)
	ca := testCA(t, 0)
	r := render(t)
	good := makeCSR(t, r, rsa2048)
	tampered := *good
	tampered.Signature = append([]byte(nil), good.Signature...)
	tampered.Signature[0] ^= 1
	small := makeCSR(t, r, rsa1024)
	ec := makeCSR(t, r, p256)
	// A key the requester chose, under a signature that does not verify: refused for
	// its size before the signature is checked with it.
	withKey := func(pub *rsa.PublicKey) *x509.CertificateRequest {
		c := *good
		c.PublicKey = pub
		return &c
	}
	ones := func(bits uint) *big.Int {
		return new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits), big.NewInt(1))
	}

	cases := []struct {
		name string
		mod  func(*Template)
		csr  *x509.CertificateRequest
		r    *profile.Rendered
		err  error
	}{
		{"bad signature", nil, &tampered, r, ErrBadSignature},
		{"nil csr", nil, nil, r, ErrBadSignature},
		{"key too small", nil, small, r, ErrKeyTooSmall},
		{"rsa key over 8192 bits", nil, withKey(&rsa.PublicKey{N: ones(16384), E: 65537}), r, ErrKeyTooLarge},
		{"rsa exponent over 2^31-1", nil, withKey(&rsa.PublicKey{N: ones(2048), E: 1 << 31}), r, ErrKeyTooLarge},
		{"ecdsa not allowed", nil, ec, r, ErrKeyType},
		{"ecdsa allowed", func(t *Template) { t.KeyTypes = []profile.KeyType{profile.RSA, profile.ECDSAP256} }, ec, r, nil},
		{"ecdsa curve too small", func(t *Template) {
			t.KeyTypes = []profile.KeyType{profile.ECDSAP256}
			t.MinECDSASize = 384
		}, ec, r, ErrKeyTooSmall},
		{"rsa not allowed", func(t *Template) { t.KeyTypes = []profile.KeyType{profile.ECDSAP256} }, good, r, ErrKeyType},
		{"not published", func(t *Template) { t.Published = false }, good, r, ErrNotPublished},
		{"invalid template", func(t *Template) { t.Validity = 0 }, good, r, ErrInvalidTemplate},
		{"no subject, no SAN", nil, good, nil, ErrNoSubject},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp := clientTemplate()
			if c.mod != nil {
				c.mod(tp)
			}
			_, err := Apply(tp, c.csr, c.r, ca.Certificate, testNow, nil)
			if c.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, c.err)
			var te *TemplateError
			require.True(t, errors.As(err, &te))
		})
	}
}

// TestApplyFromRequest: the template decides whether CSR subject and SANs are used.
func TestApplyFromRequest(t *testing.T) {
	keys(t)
	ca := testCA(t, 0)
	r := render(t)
	other, err := profile.Render(userProfile(),
		profile.User{UserPrincipalName: "admin@contoso.com", Email: "admin@contoso.com"},
		profile.Device{ID: "dev-9", Name: "server"}, nil)
	require.NoError(t, err)
	csr := makeCSR(t, other, rsa2048) // asks for someone else's names

	tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, nil)
	require.NoError(t, err)
	cert, err := ca.Sign(context.Background(), tmpl, csr.PublicKey)
	require.NoError(t, err)
	require.Equal(t, "CN=jane@contoso.com,O=Contoso", cert.Subject.String())
	require.Equal(t, []string{"laptop.contoso.com"}, cert.DNSNames)

	tp := clientTemplate()
	tp.SubjectFromRequest = true
	tmpl, err = Apply(tp, csr, r, ca.Certificate, testNow, nil)
	require.NoError(t, err)
	cert, err = ca.Sign(context.Background(), tmpl, csr.PublicKey)
	require.NoError(t, err)
	require.Equal(t, "CN=admin@contoso.com,O=Contoso", cert.Subject.String())
	require.Equal(t, []string{"laptop.contoso.com"}, cert.DNSNames)

	tp.SANsFromRequest = true
	tmpl, err = Apply(tp, csr, r, ca.Certificate, testNow, nil)
	require.NoError(t, err)
	cert, err = ca.Sign(context.Background(), tmpl, csr.PublicKey)
	require.NoError(t, err)
	require.Equal(t, []string{"server.contoso.com"}, cert.DNSNames)

	// Only SANs, empty subject: the SAN extension is critical.
	p := userProfile()
	p.SubjectNameFormat = ""
	p.Platform = profile.IOS // Windows requires a subject name
	onlySAN, err := profile.Render(p, profile.User{UserPrincipalName: "jane@contoso.com", Email: "jane@contoso.com"}, profile.Device{ID: "d", Name: "laptop"}, nil)
	require.NoError(t, err)
	tmpl, err = Apply(clientTemplate(), makeCSR(t, onlySAN, rsa2048), onlySAN, ca.Certificate, testNow, nil)
	require.NoError(t, err)
	require.True(t, tmpl.ExtraExtensions[0].Critical)
	cert, err = ca.Sign(context.Background(), tmpl, rsa2048.Public())
	require.NoError(t, err)
	require.Empty(t, cert.Subject.Names)
}

func TestSignRefusals(t *testing.T) {
	keys(t)
	ca := testCA(t, 0)
	base := func() *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: testNow, NotAfter: testNow.Add(time.Hour)}
	}
	ctx := context.Background()
	_, err := ca.Sign(ctx, base(), rsa2048.Public())
	require.NoError(t, err)
	longest := base()
	longest.SerialNumber = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))
	_, err = ca.Sign(ctx, longest, rsa2048.Public())
	require.NoError(t, err, "a 159-bit serial encodes in 20 octets")
	for name, mod := range map[string]func(*x509.Certificate){
		"CA template":     func(c *x509.Certificate) { c.IsCA = true; c.BasicConstraintsValid = true },
		"no serial":       func(c *x509.Certificate) { c.SerialNumber = nil },
		"negative serial": func(c *x509.Certificate) { c.SerialNumber = big.NewInt(-1) },
		"21-octet serial": func(c *x509.Certificate) { c.SerialNumber = new(big.Int).Lsh(big.NewInt(1), 159) },
		"negative arc in an extension": func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, -1}, Value: []byte{5, 0}}}
		},
		"one-arc extended key usage": func(c *x509.Certificate) {
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1}}
		},
		"outlives CA":      func(c *x509.Certificate) { c.NotAfter = ca.Certificate.NotAfter.Add(time.Second) },
		"before CA starts": func(c *x509.Certificate) { c.NotBefore = ca.Certificate.NotBefore.Add(-time.Second) },
	} {
		c := base()
		mod(c)
		_, err := ca.Sign(ctx, c, rsa2048.Public())
		require.ErrorIs(t, err, ErrRefused, name)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = ca.Sign(cctx, base(), rsa2048.Public())
	require.ErrorIs(t, err, context.Canceled)
	_, err = (&CA{}).Sign(ctx, base(), rsa2048.Public())
	require.ErrorIs(t, err, ErrRefused)
	// A CA certificate without a readable public key cannot be matched with its
	// Signer: refused, even with a template the direct encoder would not take.
	noKey := *ca.Certificate
	noKey.PublicKey = nil
	for _, tmpl := range []*x509.Certificate{base(), func() *x509.Certificate { c := base(); c.DNSNames = []string{"a.example"}; return c }()} {
		_, err = (&CA{Certificate: &noKey, Signer: p256}).Sign(ctx, tmpl, rsa2048.Public())
		require.ErrorIs(t, err, ErrRefused)
	}
}

func TestSignConcurrent(t *testing.T) {
	keys(t)
	ca := testCA(t, 0)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, nil)
			if err == nil {
				_, err = ca.Sign(context.Background(), tmpl, csr.PublicKey)
			}
			if err == nil {
				err = ca.Revoke(tmpl.SerialNumber, 1, testNow)
			}
			errs <- err
		}()
	}
	for range 16 {
		require.NoError(t, <-errs)
	}
}

var _ = asn1.ObjectIdentifier{}

// TestApplyVerified: ApplyVerified skips the CSR signature check and only that.
func TestApplyVerified(t *testing.T) {
	keys(t)
	ca := testCA(t, 0)
	r := render(t)
	good := makeCSR(t, r, rsa2048)
	tampered := *good
	tampered.Signature = append([]byte(nil), good.Signature...)
	tampered.Signature[0] ^= 1
	_, err := Apply(clientTemplate(), &tampered, r, ca.Certificate, testNow, nil)
	require.ErrorIs(t, err, ErrBadSignature)
	tmpl, err := ApplyVerified(clientTemplate(), &tampered, r, ca.Certificate, testNow, nil)
	require.NoError(t, err)
	want, err := Apply(clientTemplate(), good, r, ca.Certificate, testNow, nil)
	require.NoError(t, err)
	require.Equal(t, want.RawSubject, tmpl.RawSubject)
	require.Equal(t, want.NotAfter, tmpl.NotAfter)
	small := makeCSR(t, r, rsa1024)
	_, err = ApplyVerified(clientTemplate(), small, r, ca.Certificate, testNow, nil)
	require.ErrorIs(t, err, ErrKeyTooSmall, "every other check still runs")
}

// TestApplyValidityApple: on iOS and macOS the template's validity applies, not the
// profile's, as in Intune (the Apple SCEP payload carries none). Before, a 30-day
// profile cut the 365-day template's certificates to 30 days on every platform.
func TestApplyValidityApple(t *testing.T) {
	keys(t)
	day := 24 * time.Hour
	for _, c := range []struct {
		platform profile.Platform
		want     time.Time
	}{
		{profile.Windows, testNow.Add(30 * day)},
		{profile.Android, testNow.Add(30 * day)},
		{profile.IOS, testNow.Add(365 * day)},
		{profile.MacOS, testNow.Add(365 * day)},
	} {
		t.Run(c.platform.String(), func(t *testing.T) {
			p := userProfile()
			p.Platform = c.platform
			p.Validity = profile.ValidityPeriod{Value: 30, Unit: profile.Days}
			if c.platform != profile.Windows {
				p.KeyStorageProvider, p.Hash, p.TemplateName = 0, 0, ""
			}
			require.NoError(t, p.Validate())
			r, err := profile.Render(p, profile.User{UserPrincipalName: "jane@contoso.com", Email: "jane@contoso.com"},
				profile.Device{ID: "dev-1", Name: "laptop"}, nil)
			require.NoError(t, err)
			tp := clientTemplate()
			tp.Validity = 365 * day
			tmpl, err := Apply(tp, makeCSR(t, r, rsa2048), r, testCA(t, 10*365*day).Certificate, testNow, nil)
			require.NoError(t, err)
			require.Equal(t, c.want, tmpl.NotAfter)
		})
	}
}
