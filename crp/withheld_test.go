package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
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

// failingPuts is a TransactionStore whose Put fails.
type failingPuts struct{ crp.TransactionStore }

func (failingPuts) Put(context.Context, *crp.Record) error { return errors.New("disk full") }

// TestWithheldAfterIssuanceMarked: a certificate the CA issued and the device did not
// get, because a required notification failed or its transaction record could not be
// written, is marked withheld in the inventory whether it was written there with its
// record (one commit) or alone before it: GetCert does not serve it. Before, it was
// listed as issued, and its requester could fetch it and renew it.
func TestWithheldAfterIssuanceMarked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(env *crptest.Env)
		reason crp.Reason
	}{
		{"notification refused, one commit", func(env *crptest.Env) {
			env.RP.RequireNotification = true
			env.RP.Notifier = crp.NotifierFunc(func(context.Context, *crp.Notification) error { return errors.New("MDM down") })
		}, crp.ReasonNotifyFailed},
		{"notification refused, inventory alone", func(env *crptest.Env) {
			env.RP.Transactions = &crp.MemoryTransactions{}
			env.RP.RequireNotification = true
			env.RP.Notifier = crp.NotifierFunc(func(context.Context, *crp.Notification) error { return errors.New("MDM down") })
		}, crp.ReasonNotifyFailed},
		{"record not written, inventory alone", func(env *crptest.Env) {
			env.RP.Transactions = failingPuts{&crp.MemoryTransactions{}}
		}, crp.ReasonInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			ctx := context.Background()
			tc.setup(env)
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "withheld", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, tc.reason, e.Reason, "%v", err)
			require.Nil(t, res.Certificate)
			require.Equal(t, 1, env.Issuer.Count())

			list, err := env.Certificates.Certificates(ctx, crp.CertificateQuery{DeviceID: "alice-laptop"})
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.True(t, list[0].Withheld, "marked")
			cert := list[0].Certificate
			self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
			require.NoError(t, err)
			resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.GetCert, TransactionID: "get", Signer: self,
				IssuerAndSerial: &scep.IssuerAndSerial{Issuer: cert.RawIssuer, Serial: cert.SerialNumber}})
			require.Nil(t, resp)
			require.Equal(t, scep.BadCertID, scep.FailInfoOf(err), "%v", err)
		})
	}
}

// hideOnce is a CertificateStore whose first Lookup of serial answers ErrNotFound, as
// when a concurrent completion's write has not landed yet.
type hideOnce struct {
	crp.CertificateStore
	serial *big.Int
	hidden bool
}

func (h *hideOnce) Lookup(ctx context.Context, serial *big.Int) (*crp.IssuedCertificate, error) {
	if !h.hidden && serial.Cmp(h.serial) == 0 {
		h.hidden = true
		return nil, crp.ErrNotFound
	}
	return h.CertificateStore.Lookup(ctx, serial)
}

// TestConcurrentSameCompletionStaysIssued: a second completion of the certificate
// the device got, racing the first (it found no entry, the first recorded it, then it
// wrote its own), does not leave that certificate marked withheld: its transaction
// record says the device has it.
func TestConcurrentSameCompletionStaysIssued(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	d, req, _ := decideAlice(t, env, "twice")
	cert := signDecided(t, env.CA, d, 4711, req.PublicKey)
	hide := &hideOnce{CertificateStore: env.RP.Certificates, serial: cert.SerialNumber}
	require.NoError(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "twice", Certificate: cert}))
	env.RP.Certificates = hide
	err := env.RP.Complete(ctx, &crp.Completion{TransactionID: "twice", Certificate: cert})
	require.ErrorIs(t, err, crp.ErrCompleted)
	require.True(t, hide.hidden)
	got, err := env.Certificates.Lookup(ctx, cert.SerialNumber)
	require.NoError(t, err)
	require.False(t, got.Withheld, "the device's certificate")
}
