package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/scep"
)

// earlierPutSQL is Put's statement in the releases of schema version 5, before
// records kept when they were written: its upsert sets the columns it knows only.
const earlierPutSQL = `INSERT INTO scepkit_transactions (id, signer_key, request, csr, status, certificate, phase,
		reason, user_id, device_id, profile_id, template, validator, expires, tx_id, ca)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
	ON CONFLICT (id) DO UPDATE SET tx_id = EXCLUDED.tx_id, signer_key = EXCLUDED.signer_key, request = EXCLUDED.request,
		csr = EXCLUDED.csr, status = EXCLUDED.status, certificate = EXCLUDED.certificate,
		phase = EXCLUDED.phase, reason = EXCLUDED.reason, user_id = EXCLUDED.user_id,
		device_id = EXCLUDED.device_id, profile_id = EXCLUDED.profile_id,
		template = EXCLUDED.template, validator = EXCLUDED.validator, expires = EXCLUDED.expires, ca = EXCLUDED.ca`

// TestWrittenAcrossReleases: a record's write time (crp.Record.Written) is only ever
// that of the record in the row. A gateway of the earlier release, still running
// during a rolling upgrade, writes rows without it: a new row reads Written zero (the
// reader judges it by its Expires, as before), and so does its upsert over a row this
// release wrote, whose written belonged to the record it replaced (a pending request
// written hours before the old gateway approved it and wrote the record of its
// notification). Before, that upsert left the previous record's written, and a
// gateway reading the notifying record took its writer for one that stopped hours ago
// and ended the transaction at once. Its write that keeps the record's Expires (the
// end of a notifying record, which keeps its Written) keeps written.
func TestWrittenAcrossReleases(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	s, err := pgstore.Open(ctx, dsn, nil)
	require.NoError(t, err)
	defer s.Close()
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer pool.Close()
	earlier := func(id string, status scep.PKIStatus, reason crp.Reason, expires time.Time) {
		t.Helper()
		_, err := pool.Exec(ctx, earlierPutSQL, id, nil, []byte("req"), nil, int(status), nil, 0, string(reason),
			"", "", "", "", "", expires, []byte(id), nil)
		require.NoError(t, err)
	}
	written := func(id string) time.Time {
		t.Helper()
		r, err := s.Get(ctx, id)
		require.NoError(t, err)
		return r.Written
	}

	now := time.Now().Truncate(time.Microsecond)
	pending := &crp.Record{TransactionID: "approved", Request: []byte("req"), Status: scep.Pending,
		Written: now.Add(-3 * time.Hour), Expires: now.Add(21 * time.Hour)}
	require.NoError(t, s.Put(ctx, pending))
	require.True(t, written("approved").Equal(pending.Written))
	earlier("approved", scep.Failure, crp.ReasonNotifying, now.Add(24*time.Hour))
	require.True(t, written("approved").IsZero(), "the earlier release's record read as written %v, its predecessor's write",
		written("approved"))

	earlier("new", scep.Failure, crp.ReasonNotifying, now.Add(24*time.Hour))
	require.True(t, written("new").IsZero())

	held := &crp.Record{TransactionID: "ended", Request: []byte("req"), Status: scep.Failure, Reason: crp.ReasonNotifying,
		Written: now, Expires: now.Add(24 * time.Hour)}
	require.NoError(t, s.Put(ctx, held))
	earlier("ended", scep.Failure, crp.ReasonNotifyFailed, held.Expires)
	require.True(t, written("ended").Equal(now), "the end of a record kept its Expires, and keeps its Written")
}
