package challenge

import (
	"context"
	"crypto/sha256"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestMemoryReplayStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t: t0}
	s := &MemoryReplayStore{Now: clk.Now}
	id := "ok0Yt9_5xJbteaVClSLjFQ"

	require.NoError(t, s.Claim(ctx, id, t0.Add(time.Hour)))
	require.ErrorIs(t, s.Claim(ctx, id, t0.Add(time.Hour)), ErrReplayed)
	require.NoError(t, s.Claim(ctx, "another id, hashed", t0.Add(time.Hour)))
	require.ErrorIs(t, s.Claim(ctx, "another id, hashed", t0.Add(time.Hour)), ErrReplayed)
	require.ErrorIs(t, s.Claim(ctx, "", t0.Add(time.Hour)), ErrMissingClaim)

	// Release gives the id back.
	require.NoError(t, s.Release(ctx, id))
	require.NoError(t, s.Claim(ctx, id, t0.Add(time.Hour)))

	// Until in the past: still claimed once, kept one minute.
	require.NoError(t, s.Claim(ctx, "late", t0.Add(-time.Second)))
	require.ErrorIs(t, s.Claim(ctx, "late", t0.Add(-time.Second)), ErrReplayed)

	// After until the id is forgotten.
	clk.Add(time.Hour)
	require.NoError(t, s.Claim(ctx, id, t0.Add(2*time.Hour)))

	// Canceled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, s.Claim(cctx, "x", t0.Add(3*time.Hour)), context.Canceled)
}

func TestMemoryReplayStoreEvicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t: t0}
	s := &MemoryReplayStore{Now: clk.Now}
	const n = 20000
	for i := range n {
		require.NoError(t, s.Claim(ctx, fmt.Sprint("a", i), t0.Add(time.Duration(i%60)*time.Minute)))
	}
	require.Equal(t, n, s.Len())
	// Two hours later every entry has expired; later claims evict them a
	// few at a time (amortized), never all in one call.
	clk.Add(2 * time.Hour)
	for i := range n / 4 {
		require.NoError(t, s.Claim(ctx, fmt.Sprint("b", i), clk.Now().Add(time.Hour)))
	}
	require.Equal(t, n/4, s.Len(), "all expired entries evicted")
	for i := range n / 4 {
		require.ErrorIs(t, s.Claim(ctx, fmt.Sprint("b", i), clk.Now().Add(time.Hour)), ErrReplayed)
	}
}

func TestMemoryReplayStoreConcurrent(t *testing.T) {
	t.Parallel()
	s := new(MemoryReplayStore)
	const ids, per = 64, 32
	var wins [ids]atomic.Int32
	var wg sync.WaitGroup
	until := time.Now().Add(time.Hour)
	for i := range ids * per {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("id-", i%ids)
			if s.Claim(context.Background(), id, until) == nil {
				wins[i%ids].Add(1)
			}
		}()
	}
	wg.Wait()
	for i := range wins {
		require.EqualValues(t, 1, wins[i].Load(), "id %d", i)
	}
}

// TestMemoryReplayStoreMillion measures the heap held by 1,000,000 live
// entries (jti minted by Issuer: 16 random bytes). Target: <= 128 MiB.
func TestMemoryReplayStoreMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 1,000,000 entries")
	}
	if raceEnabled {
		t.Skip("the race detector inflates the heap")
	}
	ids := make([]string, 1_000_000)
	for i := range ids {
		var b [16]byte
		b[0], b[1], b[2], b[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		b[15] = byte(i * 7)
		ids[i] = b64.EncodeToString(b[:])
	}
	until := t0.Add(time.Hour)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	s := &MemoryReplayStore{Now: fixedClock(t0)}
	ctx := context.Background()
	for i, id := range ids {
		if err := s.Claim(ctx, id, until.Add(time.Duration(i%3600)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	runtime.KeepAlive(ids)
	require.Equal(t, len(ids), s.Len())
	mib := float64(after-before) / (1 << 20)
	t.Logf("1,000,000 live entries: %.1f MiB heap (%.0f bytes/entry)", mib, float64(after-before)/1e6)
	require.LessOrEqual(t, mib, 128.0)
	runtime.KeepAlive(s)
}

// TestMemoryReplayStoreKeepsIDsApart: ids are compared as whole strings
// (ReplayStore). An id that spells, in a jti's base64url, the key another id
// is stored under must neither collide with that id when claimed nor release it.
func TestMemoryReplayStoreKeepsIDsApart(t *testing.T) {
	t.Parallel()
	lookalike := func(id string) string {
		sum := sha256.Sum256([]byte(id))
		return b64.EncodeToString(sum[:16])
	}
	for _, victim := range []string{
		"external:" + strings.Repeat("ab", 32), // an external challenge's claim
		"decide:" + strings.Repeat("cd", 32),   // a pending request's decision
		"a jti minted by another MDM",
	} {
		t.Run(victim, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := &MemoryReplayStore{Now: fixedClock(t0)}
			until := t0.Add(time.Hour)
			other := lookalike(victim)
			require.NoError(t, s.Claim(ctx, victim, until))
			require.NoError(t, s.Claim(ctx, other, until), "a fresh id %q found replayed: it shares %q's key", other, victim)
			require.NoError(t, s.Release(ctx, other))
			require.ErrorIs(t, s.Claim(ctx, victim, until), ErrReplayed, "releasing %q released %q", other, victim)
		})
	}
}
