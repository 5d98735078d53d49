package boltstore_test

import (
	"context"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/scep"
)

// keys returns the number of keys of a bucket in the file alone (without its journal).
func keys(t *testing.T, path, bucket string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	n := 0
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucket)).Stats().KeyN
		return nil
	}))
	return n
}

// journalOnly returns Options whose stores make no checkpoint before their journal is
// full or they are closed: the writes a test makes before Abandon are in the journal
// alone, however long they take (a checkpoint every second moved them into the file
// on a loaded machine, and the tests below then failed or tested nothing).
func journalOnly() *boltstore.Options {
	o := &boltstore.Options{}
	boltstore.NoTimedCheckpoints(o)
	return o
}

// TestJournalReplayed: writes that returned nil are in the journal; a process that
// ends without Close (before any checkpoint) leaves them out of the file, and the next
// Open applies them: the claim still refuses a replay, the pending request is still
// pending, the certificate and its record and the revocation are there. A write
// undone by its failure is not.
func TestJournalReplayed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path, journalOnly())
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour)
	cert := storetest.Certificate(t, 4242, exp.Truncate(time.Second))
	require.NoError(t, s.Claim(ctx, "challenge-1", exp))
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "tx-pending", Status: scep.Pending, Expires: exp}))
	require.NoError(t, s.RecordIssuance(ctx, &crp.IssuedCertificate{Certificate: cert, UserID: "alice", DeviceID: "laptop"},
		&crp.Record{TransactionID: "tx-issued", Status: scep.Success, Certificate: cert, Expires: exp}))
	_, err = s.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(4242), Reason: 1, RevokedAt: time.Now()})
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, "challenge-2", exp))
	require.NoError(t, s.Release(ctx, "challenge-2"))
	require.Zero(t, boltstore.Checkpoints(s), "a checkpoint ran: the test would not test the journal")
	require.NoError(t, boltstore.Abandon(s))

	require.Zero(t, keys(t, path, "claims"), "the file alone has the writes: the journal is not what keeps them")
	require.Zero(t, keys(t, path, "certs"))

	s, err = boltstore.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	require.ErrorIs(t, s.Claim(ctx, "challenge-1", exp), challenge.ErrReplayed)
	require.NoError(t, s.Claim(ctx, "challenge-2", exp), "a released claim came back")
	pending, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, "tx-pending", pending[0].TransactionID)
	r, err := s.Get(ctx, "tx-issued")
	require.NoError(t, err)
	require.Equal(t, cert.Raw, r.Certificate.Raw)
	list, err := s.Certificates(ctx, crp.CertificateQuery{DeviceID: "laptop"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	revoked, err := s.IsRevoked(ctx, cert)
	require.NoError(t, err)
	require.True(t, revoked)
	require.NoError(t, boltstore.Check(s))

}

// TestJournalMissing: a file whose last run did not end with Close may lack writes
// that only its journal holds. Without the journal (a backup of state.db alone, a
// journal deleted as if it were a temporary file) Open refuses with
// ErrJournalMissing and creates nothing (before: it created an empty journal and
// opened without the acknowledged claim: the challenge could be used again). With the
// journal put back, the claim is there. After a Close, the file holds everything and
// opens without its journal; an empty journal created by the operator opens a file
// without the writes that are lost.
func TestJournalMissing(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for _, c := range []struct {
		name  string
		close func(s *boltstore.Store) error
		want  error
	}{
		{"after a crash", boltstore.Abandon, boltstore.ErrJournalMissing},
		{"after Close", (*boltstore.Store).Close, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			s, err := boltstore.Open(path, journalOnly())
			require.NoError(t, err)
			require.NoError(t, s.Claim(ctx, "claimed", exp))
			c.close(s)
			jpath := path + "-journal"
			require.NoError(t, os.Rename(jpath, jpath+".saved"))

			s, err = boltstore.Open(path, nil)
			if c.want != nil {
				require.ErrorIs(t, err, c.want)
				require.NoFileExists(t, jpath, "a refused Open created the journal")
				require.NoError(t, os.Rename(jpath+".saved", jpath))
				s, err = boltstore.Open(path, nil)
			}
			require.NoError(t, err)
			require.ErrorIs(t, s.Claim(ctx, "claimed", exp), challenge.ErrReplayed, "acknowledged claim lost")
			require.NoError(t, s.Close())
		})
	}
	t.Run("empty journal created", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		s, err := boltstore.Open(path, journalOnly())
		require.NoError(t, err)
		require.NoError(t, s.Claim(ctx, "claimed", exp))
		boltstore.Abandon(s)
		require.NoError(t, os.WriteFile(path+"-journal", nil, 0o600))
		s, err = boltstore.Open(path, nil)
		require.NoError(t, err, "an empty journal is the operator's choice to open without it")
		require.NoError(t, s.Claim(ctx, "claimed", exp))
		require.NoError(t, s.Close())
	})
}

// TestRestoredFileJournalAhead: a state.db restored from a backup beside the journal
// of a later run (its entries of later epochs) is older than its journal: Open cannot
// tell it from a file whose newest checkpoint was damaged, and refuses it with
// ErrJournalAhead (before: it opened, skipping the journal's epochs, which lost a
// damaged checkpoint's writes silently). Once the operator empties the journal, the
// file opens as restored, and an entry left from the discarded run is never applied
// (here, the claim "zombie", made only in the discarded run).
func TestRestoredFileJournalAhead(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	backup, err := os.ReadFile(path)
	require.NoError(t, err)

	s, err = boltstore.Open(path, journalOnly()) // the run the restore discards
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, "a", exp))
	require.NoError(t, s.Claim(ctx, "zombie", exp))
	require.NoError(t, s.Close())

	require.NoError(t, os.WriteFile(path, backup, 0o600)) // the restore, state.db alone
	_, err = boltstore.Open(path, journalOnly())
	require.ErrorIs(t, err, boltstore.ErrJournalAhead)
	require.Contains(t, err.Error(), path+"-journal")
	require.NoError(t, os.Truncate(path+"-journal", 0)) // the operator's choice
	s, err = boltstore.Open(path, journalOnly())
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, "b", exp)) // an entry as long as the discarded run's first
	require.NoError(t, boltstore.Abandon(s))

	s, err = boltstore.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	require.ErrorIs(t, s.Claim(ctx, "b", exp), challenge.ErrReplayed, "acknowledged claim lost")
	require.NoError(t, s.Claim(ctx, "zombie", exp), "a claim of the discarded run was applied")
}
