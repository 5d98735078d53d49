package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// TestWithheldCertificateUnusable: a certificate our CA signed that the device was
// refused (it did not match the decision) is in the inventory, marked withheld, for an
// operator to revoke; GetCert does not hand it to the key it was issued for, and it
// renews nothing. Without the mark, recording it let its requester fetch it with
// GetCert and renew it into a valid certificate, although its challenge was spent.
func TestWithheldCertificateUnusable(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	ca := env.Issuer.Next
	env.Issuer.Next = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		r.Template.SerialNumber = big.NewInt(7)
		r.Template.ExtKeyUsage = append(r.Template.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		return env.CA.Sign(ctx, r.Template, r.PublicKey)
	})
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "mismatch", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonCertMismatch, e.Reason)
	env.Issuer.Next = ca

	ic, err := env.Certificates.Lookup(ctx, big.NewInt(7))
	require.NoError(t, err, "listed, to be revoked")
	require.True(t, ic.Withheld)
	withheld := ic.Certificate

	// GetCert signed with the very key it was issued for.
	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.GetCert, TransactionID: "get", Signer: self,
		IssuerAndSerial: &scep.IssuerAndSerial{Issuer: withheld.RawIssuer, Serial: withheld.SerialNumber}})
	require.Nil(t, resp)
	require.Equal(t, scep.BadCertID, scep.FailInfoOf(err), "%v", err)

	// A renewal signed by it.
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	req := csr(t, newKey, "alice@example.com", "")
	proof, err := crp.SignatureProof(withheld, req, signCSR(t, deviceKey, req))
	require.NoError(t, err)
	issuedBefore := env.Issuer.Count()
	_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "renew", CSR: req, Proof: proof})
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonRenewalSigner, e.Reason, "%v", err)
	require.Equal(t, issuedBefore, env.Issuer.Count(), "nothing issued")
}
