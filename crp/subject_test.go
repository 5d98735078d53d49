package crp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// cnName returns the DER of the Name CN=v with v encoded with tag, whatever v holds.
func cnName(tag cbasn1.Tag, v string) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier([]int{2, 5, 4, 3})
				b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(v)) })
			})
		})
	})
	return b.BytesOrPanic()
}

// TestMistypedSubject: a CSR whose CN=bob@example.com is a PrintableString (as
// certmonger sends it; '@' is outside PrintableString) matches the profile by value and
// is issued with the CN as a UTF8String, whether the template takes the subject from
// the profile or from the request; a mistyped subject that names someone else is
// still a mismatch, and nothing is issued for it.
func TestMistypedSubject(t *testing.T) {
	keys(t)
	ctx := context.Background()
	mistyped := func(t *testing.T, env *crptest.Env, cn string) (*x509.CertificateRequest, string) {
		ch := mint(t, env, "bob@example.com", "bob-phone")
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			RawSubject: cnName(cbasn1.PrintableString, cn)}, deviceKey)
		require.NoError(t, err)
		der, err = scep.AddChallengePassword(der, ch, deviceKey, nil)
		require.NoError(t, err)
		_, err = x509.ParseCertificateRequest(der)
		require.Error(t, err, "crypto/x509 refuses the request")
		req, err := scep.ParseCertificateRequest(der)
		require.NoError(t, err)
		return req, ch
	}
	for _, fromRequest := range []bool{false, true} {
		t.Run(map[bool]string{false: "subject from profile", true: "subject from request"}[fromRequest], func(t *testing.T) {
			env := newEnv(t)
			env.Templates[crptest.TemplateName].SubjectFromRequest = fromRequest
			req, ch := mistyped(t, env, "bob@example.com")
			res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "mistyped", CSR: req, Challenge: ch})
			require.NoError(t, err)
			require.Equal(t, cnName(cbasn1.UTF8String, "bob@example.com"), res.Certificate.RawSubject)
			strict, err := x509.ParseCertificate(res.Certificate.Raw)
			require.NoError(t, err, "crypto/x509 reads the issued certificate")
			require.Equal(t, "bob@example.com", strict.Subject.CommonName)

			req, ch = mistyped(t, env, "eve@example.com")
			_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "mistyped-eve", CSR: req, Challenge: ch})
			var ce *crp.Error
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, crp.ReasonCSRMismatch, ce.Reason)
			require.Equal(t, 1, env.Issuer.Count(), "nothing issued for eve")

			// Signed over the well-typed subject, sent mis-typed: read, but the signature
			// is checked over the bytes received and fails; nothing is issued.
			ch = mint(t, env, "bob@example.com", "bob-phone")
			good := cnName(cbasn1.UTF8String, "bob@example.com")
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: good}, deviceKey)
			require.NoError(t, err)
			der, err = scep.AddChallengePassword(der, ch, deviceKey, nil)
			require.NoError(t, err)
			i := bytes.Index(der, good)
			require.Positive(t, i)
			der[i+len(good)-len("bob@example.com")-2] = byte(cbasn1.PrintableString)
			req, err = scep.ParseCertificateRequest(der)
			require.NoError(t, err)
			_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "mistyped-forged", CSR: req, Challenge: ch})
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, crp.ReasonCSRSignature, ce.Reason)
			require.Equal(t, 1, env.Issuer.Count(), "nothing issued for a CSR whose signature does not verify")
		})
	}
}
