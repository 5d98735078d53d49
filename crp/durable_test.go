package crp_test

// Nothing is acknowledged to a device before it is durable: a certificate whose
// inventory record or transaction record could not be written is withheld (FAILURE),
// and the CA's signature is logged for revocation. (Before: the write error was
// logged and the certificate sent anyway, so the device held a certificate the
// inventory did not know and that no resend could find.)

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

var errDiskFull = errors.New("disk full")

// fullDisk is a store whose writes fail, as a store on a full disk does.
type fullDisk struct{ crp.MemoryStore }

func (*fullDisk) Add(context.Context, *crp.IssuedCertificate) error { return errDiskFull }
func (*fullDisk) Put(context.Context, *crp.Record) error            { return errDiskFull }
func (*fullDisk) Create(context.Context, *crp.Record) error         { return errDiskFull }

func TestUnrecordedCertificateIsWithheld(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(env *crptest.Env, s *fullDisk)
	}{
		{"inventory write fails", func(env *crptest.Env, s *fullDisk) { env.RP.Certificates = s }},
		{"transaction write fails", func(env *crptest.Env, s *fullDisk) { env.RP.Transactions = s }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			var logs bytes.Buffer
			env.RP.Logger = slogTo(&logs)
			tc.set(env, &fullDisk{})
			ctx := context.Background()
			self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice"}, nil)
			require.NoError(t, err)
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: "tx-full",
				CSR: csr(t, deviceKey, "alice@example.com", ch), Signer: self, ChallengePassword: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e, "the device must get FAILURE, got %+v", resp)
			require.Nil(t, resp)
			require.Equal(t, crp.PhaseIssue, e.Phase)
			require.ErrorIs(t, err, errDiskFull)
			require.Contains(t, logs.String(), "withheld from the device; revoke it")
		})
	}
}

// countingStore is a MemoryStore that counts its writes and can write a certificate
// and its transaction record in one (crp.IssuanceRecorder).
type countingStore struct {
	crp.MemoryStore
	adds, puts, together int
	fail                 error
}

func (s *countingStore) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	s.adds++
	return s.MemoryStore.Add(ctx, c)
}

func (s *countingStore) Put(ctx context.Context, r *crp.Record) error {
	s.puts++
	return s.MemoryStore.Put(ctx, r)
}

// Create counts as a Put: a record's first write.
func (s *countingStore) Create(ctx context.Context, r *crp.Record) error {
	s.puts++
	return s.MemoryStore.Create(ctx, r)
}

func (s *countingStore) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	s.together++
	if s.fail != nil {
		return s.fail
	}
	if err := s.MemoryStore.Add(ctx, c); err != nil {
		return err
	}
	return s.MemoryStore.Put(ctx, r)
}

// A store that is both the inventory and the transaction store and implements
// crp.IssuanceRecorder gets an issued certificate and its record in one write (one
// commit instead of two); separate stores get Add then Put; a failed combined write
// withholds the certificate.
func TestIssuanceRecordedInOneWrite(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		separate, fail       bool
		adds, puts, together int
	}{
		{name: "one store", together: 1},
		{name: "separate stores", separate: true, adds: 1, puts: 1},
		{name: "combined write fails", fail: true, together: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			var logs bytes.Buffer
			env.RP.Logger = slogTo(&logs)
			s := &countingStore{}
			if tc.fail {
				s.fail = errDiskFull
			}
			env.RP.Transactions, env.RP.Certificates = s, s
			if tc.separate {
				env.RP.Certificates = &struct{ crp.CertificateStore }{s}
			}
			ctx := context.Background()
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-once",
				CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
			require.Equal(t, [3]int{tc.adds, tc.puts, tc.together}, [3]int{s.adds, s.puts, s.together},
				"writes (Add, Put, RecordIssuance)")
			if tc.fail {
				require.ErrorIs(t, err, errDiskFull)
				require.Nil(t, res.Certificate, "a certificate that could not be recorded must be withheld")
				require.Contains(t, logs.String(), "withheld from the device; revoke it")
				return
			}
			require.NoError(t, err)
			got, err := s.Lookup(ctx, res.Certificate.SerialNumber)
			require.NoError(t, err)
			require.Equal(t, "tx-once", got.TransactionID)
			rec, err := s.Get(ctx, "tx-once")
			require.NoError(t, err)
			require.Equal(t, scep.Success, rec.Status)
			require.True(t, rec.Certificate.Equal(res.Certificate))
		})
	}
}

// writeLog is a one-commit store (a boltstore) that logs its writes of transaction
// records and certificates, by method.
type writeLog struct {
	*boltstore.Store
	writes *[]string
}

func (s writeLog) log(method string, err error) error {
	*s.writes = append(*s.writes, method)
	return err
}

func (s writeLog) Put(ctx context.Context, r *crp.Record) error {
	return s.log("Put", s.Store.Put(ctx, r))
}

func (s writeLog) Create(ctx context.Context, r *crp.Record) error {
	return s.log("Create", s.Store.Create(ctx, r))
}

func (s writeLog) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	return s.log("Add", s.Store.Add(ctx, c))
}

func (s writeLog) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	return s.log("RecordIssuance", s.Store.RecordIssuance(ctx, c, r))
}

func (s writeLog) CreateIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	return s.log("CreateIssuance", s.Store.CreateIssuance(ctx, c, r))
}

func (s writeLog) Replace(ctx context.Context, old, r *crp.Record) error {
	return s.log("Replace", s.Store.Replace(ctx, old, r))
}

func (s writeLog) ReplaceIssuance(ctx context.Context, c *crp.IssuedCertificate, old, r *crp.Record) error {
	return s.log("ReplaceIssuance", s.Store.ReplaceIssuance(ctx, c, old, r))
}

// TestNotifiedIssuanceInTwoWrites: on a store that writes a certificate and its
// record in one commit, a certificate whose notification is required costs two
// writes: the record of the certificate withheld while the MDM is told, with the
// inventory's entry marked withheld (CreateIssuance), then the SUCCESS record with the
// entry unmarked (ReplaceIssuance, a compare-and-swap). The device gets the
// certificate, and the inventory lists it as issued.
func TestNotifiedIssuanceInTwoWrites(t *testing.T) {
	keys(t)
	env, err := crptest.New(crptest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	var writes []string
	s := writeLog{env.Store.(*boltstore.Store), &writes}
	env.RP.Transactions, env.RP.Certificates = s, s
	requireEnrolledNotified(t, env, "two")
	require.Equal(t, []string{"CreateIssuance", "ReplaceIssuance"}, writes)
	rec, err := env.Store.Get(context.Background(), "two")
	require.NoError(t, err)
	require.Equal(t, scep.Success, rec.Status)
	listed, err := env.Store.Lookup(context.Background(), rec.Certificate.SerialNumber)
	require.NoError(t, err)
	require.False(t, listed.Withheld, "the inventory lists the device's certificate as withheld")
}
