package crp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestRekeyThenRenew: a device that rekeys (a request for a new key, signed with its
// certificate) and later renews the new certificate (signed with it). Clients name a
// transaction by the SHA-1 of their CSR's key (RFC 8894 §3.2.1.1; certmonger, and
// scep.Client), so both requests carry the same transactionID from two signer keys.
// Before, the second was refused ("transactionID in use by another requester key")
// and every renewal after a certmonger rekey failed until the certificate expired.
// Another key still cannot take the transaction over, with the embedded store as with
// memory.
func TestRekeyThenRenew(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) crptest.Options
	}{
		{"memory", func(*testing.T) crptest.Options { return crptest.Options{} }},
		{"boltstore", func(t *testing.T) crptest.Options { return crptest.Options{Dir: t.TempDir()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys(t)
			env, err := crptest.New(tc.opts(t))
			require.NoError(t, err)
			defer env.Close()
			ts := httptest.NewServer(env.Server)
			defer ts.Close()
			ctx := context.Background()
			client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}
			cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", mint(t, env, "alice@example.com", "alice-laptop")).Raw, deviceKey)
			require.NoError(t, err)

			newKey, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			rekeyed, err := client.Renew(ctx, csr(t, newKey, "alice@example.com", "").Raw, cert, deviceKey)
			require.NoError(t, err, "rekey")
			require.True(t, rekeyed.PublicKey.(*rsa.PublicKey).Equal(newKey.Public()))

			renewed, err := client.Renew(ctx, csr(t, newKey, "alice@example.com", "").Raw, rekeyed, newKey)
			require.NoError(t, err, "renewal of the rekeyed certificate, same transactionID, signed with it")
			require.NotEqual(t, rekeyed.SerialNumber, renewed.SerialNumber)
			require.Equal(t, 3, env.Issuer.Count())

			// Another key, self-signed, under that transactionID: refused, nothing issued.
			intruder, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			self := selfSigned(t, intruder)
			der, _, err := scep.NewRequest(scep.RequestOptions{Type: scep.PKCSReq, TransactionID: transactionIDOf(t, newKey),
				Payload:   csr(t, intruder, "alice@example.com", mint(t, env, "alice@example.com", "alice-laptop")).Raw,
				Recipient: env.RA.EncryptionCertificate, SignerCert: self, Signer: intruder})
			require.NoError(t, err)
			rec := httptest.NewRecorder()
			env.Server.ServeHTTP(rec, httptest.NewRequest("POST", "/?operation=PKIOperation", bytes.NewReader(der)))
			rep, err := scep.ParsePKIMessage(rec.Body.Bytes(), scep.ParseOptions{})
			require.NoError(t, err)
			require.Equal(t, scep.Failure, rep.Status)
			require.Equal(t, scep.BadRequest, rep.FailInfo)
			require.Equal(t, 3, env.Issuer.Count(), "a certificate for the intruder")
			got, err := env.RP.Transactions.Get(ctx, transactionIDOf(t, newKey))
			require.NoError(t, err)
			require.Equal(t, renewed.SerialNumber, got.Certificate.SerialNumber, "the record was replaced")
		})
	}
}

func selfSigned(t testing.TB, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject: pkix.Name{CommonName: "intruder"}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour)}, &x509.Certificate{Subject: pkix.Name{CommonName: "intruder"}},
		key.Public(), key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// TestApproveRenewalOfRevokedSigner: a renewal that waits for approval is not
// approved once its signer has been revoked meanwhile. Before, Approve checked the
// user, device, profile and template again but not the signer, and issued.
func TestApproveRenewalOfRevokedSigner(t *testing.T) {
	env := newEnv(t)
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	ctx := context.Background()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), PollInterval: 100 * time.Millisecond}
	cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", mint(t, env, "alice@example.com", "alice-laptop")).Raw, deviceKey)
	require.NoError(t, err)

	env.Templates[crptest.TemplateName].RequiresApproval = true
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = client.Renew(pctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	require.ErrorIs(t, err, scep.ErrPending)
	require.NoError(t, env.CA.Revoke(cert.SerialNumber, 1, time.Now()))

	_, err = env.RP.Approve(ctx, transactionIDOf(t, deviceKey))
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonRenewalSigner, e.Reason)
	require.Equal(t, 1, env.Issuer.Count(), "a certificate for a revoked signer's renewal")
}
