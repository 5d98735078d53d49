package boltstore_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// notifiedGateway is a gateway on s whose certificates reach their device only once
// the MDM has heard of them (RequireNotification), when required is set.
func notifiedGateway(t *testing.T, s crp.Store, required bool) *crptest.Env {
	t.Helper()
	env, err := crptest.New(crptest.Options{Store: s})
	require.NoError(t, err)
	env.RP.RequireNotification = required
	env.RP.Notifier = &crp.MemoryNotifier{}
	return env
}

// deviceKey is alice's laptop's key (RSA: the demo profile's).
var deviceKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// enroll has alice's laptop enroll at env under transaction id, and returns its
// certificate.
func enroll(t *testing.T, env *crptest.Env, id string) *x509.Certificate {
	t.Helper()
	key, err := deviceKey()
	require.NoError(t, err)
	ch, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: id, CSR: csr, Challenge: ch})
	require.NoError(t, err)
	require.NotNil(t, res.Certificate)
	return res.Certificate
}

// openQuiet opens a store in dir that checkpoints only when closed (or its journal
// is full), so that each write it makes is one journal entry and one fdatasync.
func openQuiet(t *testing.T, dir string) *boltstore.Store {
	t.Helper()
	var o boltstore.Options
	boltstore.NoTimedCheckpoints(&o)
	s, err := boltstore.Open(filepath.Join(dir, boltstore.FileName), &o)
	require.NoError(t, err)
	return s
}

// TestNotifiedEnrollmentCommits: an enrollment costs two commits (the challenge's
// claim, then its certificate and record together), and one whose notification is
// required one more (the record of the certificate withheld while the MDM is told,
// then the SUCCESS record with the inventory's entry unmarked), not two.
func TestNotifiedEnrollmentCommits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		required bool
		commits  int64
	}{
		{"notification not required", false, 2},
		{"notification required", true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openQuiet(t, t.TempDir())
			defer s.Close()
			env := notifiedGateway(t, s, tc.required)
			enroll(t, env, "warm-up") // the first write of a store may checkpoint
			syncs, ckpts := boltstore.Syncs(s), boltstore.Checkpoints(s)
			enroll(t, env, "counted")
			commits := boltstore.Syncs(s) - syncs - 2*(boltstore.Checkpoints(s)-ckpts)
			require.Equal(t, tc.commits, commits, "journal entries (one fdatasync each) of one enrollment")
		})
	}
}

// crashAfterSuccess is a gateway's store whose process is killed (the store
// abandoned as a crash leaves it: what is durable is in the journal) as soon as a
// transaction's SUCCESS record is durable.
type crashAfterSuccess struct {
	*boltstore.Store
	t *testing.T
}

func (s crashAfterSuccess) Replace(ctx context.Context, old, r *crp.Record) error {
	return s.crashAfter(r, s.Store.Replace(ctx, old, r))
}

func (s crashAfterSuccess) ReplaceIssuance(ctx context.Context, c *crp.IssuedCertificate, old, r *crp.Record) error {
	return s.crashAfter(r, s.Store.ReplaceIssuance(ctx, c, old, r))
}

func (s crashAfterSuccess) crashAfter(r *crp.Record, err error) error {
	if err == nil && r.Status == scep.Success {
		if aerr := boltstore.Abandon(s.Store); aerr != nil {
			s.t.Error(aerr)
		}
	}
	return err
}

// TestNotifiedSuccessCrash: the gateway is killed as soon as the SUCCESS record of a
// certificate whose notification was required is durable. After the restart the
// record gives the device its certificate, and the inventory lists it as issued, not
// withheld: GetCert serves it and renewals signed by it are accepted.
func TestNotifiedSuccessCrash(t *testing.T) {
	dir := t.TempDir()
	s := openQuiet(t, dir)
	env := notifiedGateway(t, crashAfterSuccess{s, t}, true)
	cert := enroll(t, env, "crash")

	s, err := boltstore.Open(filepath.Join(dir, boltstore.FileName), nil)
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	rec, err := s.Get(ctx, "crash")
	require.NoError(t, err)
	require.Equal(t, scep.Success, rec.Status)
	require.True(t, rec.Certificate.Equal(cert))
	listed, err := s.Lookup(ctx, cert.SerialNumber)
	require.NoError(t, err)
	require.False(t, listed.Withheld, "the inventory lists the device's certificate as withheld")
}
