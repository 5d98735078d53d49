package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/redisstore"
	"github.com/scepkit/scepkit/scep"
)

// TestRefusedCreateKeepsPendingListed: a pending Create refused because another
// requester's pending record lives under the id must not shorten that record's place
// in the pending index: it stays listed for as long as it lives, though the refused
// record would have expired sooner.
func TestRefusedCreateKeepsPendingListed(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	now := time.Now()
	s := &redisstore.Store{Client: c}
	require.NoError(t, s.Create(ctx, &crp.Record{TransactionID: "tx", Status: scep.Pending, UserID: "bob",
		Expires: now.Add(2 * time.Hour)}))
	err := s.Create(ctx, &crp.Record{TransactionID: "tx", Status: scep.Pending, UserID: "alice",
		Expires: now.Add(time.Hour)})
	require.ErrorIs(t, err, crp.ErrRecordExists)

	later := &redisstore.Store{Client: c, Now: func() time.Time { return now.Add(90 * time.Minute) }}
	rec, err := later.Get(ctx, "tx")
	require.NoError(t, err)
	require.Equal(t, "bob", rec.UserID)
	list, err := later.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, list, 1, "bob's pending record, alive, is missing from the pending list")
	require.Equal(t, "bob", list[0].UserID)
}

// TestCreateExpiredKeepsLiveRecord: a Create of a record already expired writes
// nothing where a live record of its id is stored (ErrRecordExists), as a Create of
// a live one: it does not delete the live record as Put does.
func TestCreateExpiredKeepsLiveRecord(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s := &redisstore.Store{Client: srv.Client(t)}
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "tx", Status: scep.Pending, UserID: "bob",
		Expires: time.Now().Add(time.Hour)}))
	err := s.Create(ctx, &crp.Record{TransactionID: "tx", Status: scep.Failure, UserID: "alice",
		Phase: crp.PhaseIssue, Reason: crp.ReasonRejected, Expires: time.Now().Add(-time.Second)})
	require.ErrorIs(t, err, crp.ErrRecordExists)
	rec, err := s.Get(ctx, "tx")
	require.NoError(t, err, "a refused Create deleted the live record")
	require.Equal(t, "bob", rec.UserID)
}

// lostReply applies the first command that matches and then reports a connection
// reset, as when the connection breaks after Redis applied the command and before
// its reply came back.
type lostReply struct {
	match func(args []any) bool
	done  atomic.Bool
}

func (*lostReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *lostReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && h.match(cmd.Args()) && h.done.CompareAndSwap(false, true) {
			cmd.SetErr(syscall.ECONNRESET)
			return syscall.ECONNRESET
		}
		return err
	}
}
func (*lostReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestCreateReplyLost: a Create whose SET NX Redis applied but whose reply was lost
// (a connection reset, which Create retries) has written its record: it returns nil,
// not ErrRecordExists for the record it wrote itself.
func TestCreateReplyLost(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	c.AddHook(&lostReply{match: func(args []any) bool {
		return len(args) > 0 && strings.EqualFold(fmt.Sprint(args[0]), "set") &&
			strings.EqualFold(fmt.Sprint(args[len(args)-1]), "nx")
	}})
	s := &redisstore.Store{Client: c}
	require.NoError(t, s.Create(ctx, &crp.Record{TransactionID: "tx", Status: scep.Pending, UserID: "bob",
		Expires: time.Now().Add(time.Hour)}), "its own record, written on the first attempt")
	rec, err := s.Get(ctx, "tx")
	require.NoError(t, err)
	require.Equal(t, "bob", rec.UserID)
}

// TestCreateKeepsRecordItCannotRead: a record written by a newer gateway (a record
// version this Store does not know, during a rolling upgrade), or one that is not a
// record at all, is not replaced by a Create: Get cannot read it, so nothing says it
// has expired or is another requester's. It was taken for none, and replaced.
func TestCreateKeepsRecordItCannotRead(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	s := &redisstore.Store{Client: c}
	for id, stored := range map[string]string{
		"tx-newer":   `{"v":99,"id":"tx-newer","expires":"2999-01-01T00:00:00Z"}`,
		"tx-garbage": `not a record`,
	} {
		require.NoError(t, c.Set(ctx, redisstore.DefaultPrefix+"tx:"+id, stored, time.Hour).Err())
		err := s.Create(ctx, &crp.Record{TransactionID: id, Status: scep.Pending, UserID: "alice",
			Expires: time.Now().Add(time.Hour)})
		require.ErrorIs(t, err, crp.ErrRecordExists, id)
		got, err := c.Get(ctx, redisstore.DefaultPrefix+"tx:"+id).Result()
		require.NoError(t, err)
		require.Equal(t, stored, got, "%s was replaced", id)
	}
}

// lostExecReply applies the first MULTI/EXEC and then reports a connection reset, as
// when the connection breaks after Redis applied the transaction and before its reply
// came back.
type lostExecReply struct{ done atomic.Bool }

func (*lostExecReply) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*lostExecReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *lostExecReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil && h.done.CompareAndSwap(false, true) {
			for _, c := range cmds {
				c.SetErr(syscall.ECONNRESET)
			}
			return syscall.ECONNRESET
		}
		return err
	}
}

// TestReplaceReplyLost: a Replace whose MULTI/EXEC Redis applied but whose reply was
// lost (a connection reset, which Replace retries) has written its record: it returns
// nil, not ErrRecordExists for the record it wrote itself, so that the gateway ending
// a transaction tells the MDM the failure.
func TestReplaceReplyLost(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	s := &redisstore.Store{Client: c}
	held := &crp.Record{TransactionID: "tx", Request: []byte{1}, Status: scep.Failure, Phase: crp.PhaseNotify,
		Reason: crp.ReasonNotifying, Expires: time.Now().Add(time.Hour)}
	require.NoError(t, s.Put(ctx, held))
	old, err := s.Get(ctx, "tx")
	require.NoError(t, err)
	final := *old
	final.Reason = crp.ReasonNotifyFailed
	h := &lostExecReply{}
	c.AddHook(h)
	require.NoError(t, s.Replace(ctx, old, &final), "its own record, written on the first attempt")
	require.True(t, h.done.Load(), "the reply was lost")
	rec, err := s.Get(ctx, "tx")
	require.NoError(t, err)
	require.Equal(t, crp.ReasonNotifyFailed, rec.Reason)
	require.ErrorIs(t, s.Replace(ctx, old, &final), crp.ErrRecordExists, "another Replace of that version")
}
