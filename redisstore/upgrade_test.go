package redisstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// TestPendingListsRecordsOfEarlierRelease: pending requests stored by a release
// before the pending index (testdata/pending-record-unindexed.json, and one under a
// hashed long id) are listed by Pending after an upgrade, beside those this release
// indexed, and drop out once decided. Before, Pending read the index alone: the
// operator of an upgraded gateway could not find them to approve, and they waited
// until they expired.
func TestPendingListsRecordsOfEarlierRelease(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	old, err := os.ReadFile("testdata/pending-record-unindexed.json")
	require.NoError(t, err)
	old = bytes.TrimSpace(old)
	var head struct {
		TID     string    `json:"tid"`
		Expires time.Time `json:"expires"`
	}
	require.NoError(t, json.Unmarshal(old, &head))
	now := head.Expires.Add(-time.Hour)
	s.Now = func() time.Time { return now }
	require.NoError(t, s.Client.Set(ctx, "test:tx:"+head.TID, old, time.Hour).Err())

	// A record of a long id, written by this release, its index entry removed as
	// an earlier release never made one.
	long := strings.Repeat("L", 200)
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: long, Status: scep.Pending, UserID: "carol",
		Expires: now.Add(30 * time.Minute)}))
	require.NoError(t, s.Client.ZRem(ctx, "test:pending", long).Err())
	// Values it cannot read are left alone: a key of another type, a record of
	// another version.
	require.NoError(t, s.Client.HSet(ctx, "test:tx:not-a-string", "f", "v").Err())
	require.NoError(t, s.Client.Set(ctx, "test:tx:v2", `{"v":2,"tid":"v2","status":3}`, time.Hour).Err())
	// One this release indexed.
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "new-1", Status: scep.Pending, UserID: "dave",
		Expires: now.Add(2 * time.Hour)}))

	ids := func() []string {
		t.Helper()
		recs, err := s.Pending(ctx, "", 0)
		require.NoError(t, err)
		var out []string
		for _, r := range recs {
			out = append(out, r.TransactionID)
		}
		return out
	}
	require.Equal(t, []string{head.TID, long, "new-1"}, ids())
	r, err := s.Get(ctx, head.TID)
	require.NoError(t, err)
	require.Equal(t, "u11@example.com", r.UserID)
	require.NotEmpty(t, r.CSR)

	// Decided, it is no longer listed; listed again it is not.
	r.Status = scep.Failure
	require.NoError(t, s.Put(ctx, r))
	require.Equal(t, []string{long, "new-1"}, ids())
	require.Equal(t, []string{long, "new-1"}, ids())
}
