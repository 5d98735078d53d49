package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestSCEPAnswersWithinDeadline: work behind a SCEP answer slower than the server's
// write timeout (Intune's validation and notification with their retries can take
// three minutes; the write timeout is one) is cut at the handler's deadline, so that
// the device gets a FAILURE it can act on instead of a closed connection, and the
// challenge is released for its retry.
func TestSCEPAnswersWithinDeadline(t *testing.T) {
	// The work is cut at answerWithin; recording and notifying a signed certificate
	// take up to 30 s more (crp's bound); the answer must still leave in time.
	require.Less(t, answerWithin+30*time.Second, writeTimeout-5*time.Second)
	env, err := crptest.New(crptest.Options{})
	require.NoError(t, err)
	defer env.Close()
	issuer := env.RP.Issuer
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, _ *crp.IssueRequest) (*x509.Certificate, error) {
		<-ctx.Done() // slower than any deadline
		return nil, ctx.Err()
	})
	ts := httptest.NewServer(withDeadline(env.Server, 300*time.Millisecond))
	defer ts.Close()
	ch, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
	require.NoError(t, err)
	der, err = scep.AddChallengePassword(der, ch, key, nil)
	require.NoError(t, err)
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = client.Enroll(ctx, der, key)
	require.Error(t, err)
	var fe *scep.FailError
	require.ErrorAs(t, err, &fe, "a CertRep FAILURE, not a dropped connection: %v", err)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Zero(t, env.Issuer.Count())

	env.RP.Issuer = issuer // the CA is back: the same challenge enrolls
	cert, err := client.Enroll(ctx, der, key)
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", cert.Subject.CommonName)
}
