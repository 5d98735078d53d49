package challenge

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ReplayStore records one-time use of challenge ids.
//
// Claim returns nil exactly once per id until the time until, and an error
// matching [ErrReplayed] for every later Claim of that id before until.
// After until the store may forget the id (a verifier refuses the challenge
// as expired by then, by a day: [Verifier.Claim] adds [ClaimMargin] for
// clocks that disagree). An until that is already past when Claim runs (a
// challenge that expired in flight, clocks that differ between gateways)
// still records the id for a while: a second Claim of it right after must
// return ErrReplayed, never nil. The stores of this module keep such an id
// one minute from the claim ([MemoryReplayStore.Claim]).
//
// Ids are compared as whole strings: a store that keys them by a digest or
// a shortened form must keep distinct ids apart, so that an id chosen to
// look like another's stored key neither collides with it when claimed nor
// releases it. An empty id must be refused (an error matching
// [ErrMissingClaim]), never treated as fresh. Any other error means the
// store could not decide (for example it is unreachable); the caller must
// then refuse the challenge for now. Claim must be safe for concurrent use
// and atomic: of N concurrent claims of one id, exactly one succeeds (the
// others get ErrReplayed), also across processes when several gateways
// share the store.
//
// The conformance suite in package crp/storetest checks these rules.
type ReplayStore interface {
	Claim(ctx context.Context, id string, until time.Time) error
}

// ReplayFunc adapts a function to a [ReplayStore]. It cannot give a claim back (it
// is no [Releaser]): a challenge claimed before a transient failure later in the
// enrollment (a CA that cannot be reached) stays spent, and the device needs a new
// one. Implement Releaser as well where that matters.
type ReplayFunc func(ctx context.Context, id string, until time.Time) error

// Claim calls f.
func (f ReplayFunc) Claim(ctx context.Context, id string, until time.Time) error {
	return f(ctx, id, until)
}

// Releaser is an optional upgrade of a [ReplayStore]: Release undoes a
// successful Claim of id, so that a challenge whose issuance failed for a
// transient reason (the CA unreachable) can be presented again. After
// Release, the next Claim of id returns nil and the one after it
// [ErrReplayed], as for an id never claimed. Releasing an id that is not
// claimed is not an error, and releases no other id.
type Releaser interface {
	Release(ctx context.Context, id string) error
}

const (
	replayShards = 64
	// bucketWidth groups entries by expiry for eviction.
	bucketWidth = int64(time.Minute)
	// sweepBudget bounds the expired entries one Claim evicts, so that no
	// call pays for a backlog; each Claim adds one entry and may evict up
	// to this many, so the backlog always drains.
	sweepBudget = 32
	// minRetention is how long an id claimed with an until already past
	// is kept.
	minRetention = time.Minute
)

type replayKey [16]byte

// bucket lists the keys whose until falls in [start, start+bucketWidth).
type bucket struct {
	start int64 // unix nanoseconds, a multiple of bucketWidth
	keys  []replayKey
	next  int // keys[:next] are already swept
}

type replayShard struct {
	mu      sync.Mutex
	m       map[replayKey]int64 // until, unix nanoseconds
	buckets []bucket            // ascending by start
	peak    int                 // largest len(m) since the map was last rebuilt
	_       [64]byte            // keep shards on separate cache lines
}

// MemoryReplayStore is an in-process [ReplayStore] and [Releaser]. Its zero
// value is ready to use; it must not be copied after first use. It is safe
// for concurrent use and sharded (64 locks chosen by the id), so claims of
// different ids rarely contend.
//
// Each id is stored as 16 bytes, the first 16 of its SHA-256, so that ids
// are kept apart as whole strings whatever their shape. Expired entries are
// evicted a few at a time by later claims (amortized, never a full scan), in
// buckets of one minute of expiry; the map is rebuilt when it has shrunk to a
// quarter of its peak, so memory comes back after a burst. See the package
// documentation for measured memory per million entries.
//
// It serves one process: gateways running side by side need a shared store
// (for example in Redis) behind the same interface.
type MemoryReplayStore struct {
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time

	shards [replayShards]replayShard
}

var (
	_ ReplayStore = (*MemoryReplayStore)(nil)
	_ ReplayStore = ReplayFunc(nil)
	_ Releaser    = (*MemoryReplayStore)(nil)
)

func (s *MemoryReplayStore) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// keyOf is the key id is stored under: the first 16 bytes of its SHA-256, for every
// id alike. (A jti's 16 decoded bytes would share that space with the hashes of the
// other ids: a 22-character id spelling another id's hash would then claim or
// release that id.)
func keyOf(id string) replayKey {
	var k replayKey
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:16])
	return k
}

func (s *MemoryReplayStore) shard(k replayKey) *replayShard {
	return &s.shards[k[0]%replayShards]
}

// Claim records id until the time until. It returns nil the first time,
// and an error matching [ErrReplayed] for every later claim of id before
// until. An until already past is treated as one minute from now. An empty
// id is refused with [ErrMissingClaim].
func (s *MemoryReplayStore) Claim(ctx context.Context, id string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("%w: empty id", ErrMissingClaim)
	}
	now := s.now().UnixNano()
	u := until.UnixNano()
	if u <= now {
		u = now + int64(minRetention)
	}
	k := keyOf(id)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[replayKey]int64)
	}
	if have, ok := sh.m[k]; ok && have > now {
		return ErrReplayed
	}
	sh.m[k] = u
	sh.add(k, u)
	sh.sweep(now)
	if n := len(sh.m); n > sh.peak {
		sh.peak = n
	}
	return nil
}

// Release forgets id, so that it can be claimed again.
func (s *MemoryReplayStore) Release(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := keyOf(id)
	sh := s.shard(k)
	sh.mu.Lock()
	delete(sh.m, k) // its bucket entry is skipped when swept
	sh.mu.Unlock()
	return nil
}

// Len returns the number of ids held, expired ones not yet evicted included.
func (s *MemoryReplayStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (sh *replayShard) add(k replayKey, until int64) {
	start := until - until%bucketWidth
	n := len(sh.buckets)
	// Most claims expire an hour from now: the last bucket, or a new one.
	if n > 0 && sh.buckets[n-1].start == start {
		sh.buckets[n-1].keys = append(sh.buckets[n-1].keys, k)
		return
	}
	i, found := slices.BinarySearchFunc(sh.buckets, start, func(b bucket, t int64) int {
		switch {
		case b.start < t:
			return -1
		case b.start > t:
			return 1
		}
		return 0
	})
	if found {
		sh.buckets[i].keys = append(sh.buckets[i].keys, k)
		return
	}
	sh.buckets = slices.Insert(sh.buckets, i, bucket{start: start, keys: []replayKey{k}})
}

// sweep evicts up to sweepBudget expired entries from buckets that ended.
func (sh *replayShard) sweep(now int64) {
	budget := sweepBudget
	for len(sh.buckets) > 0 && budget > 0 {
		b := &sh.buckets[0]
		if b.start+bucketWidth > now {
			break
		}
		for b.next < len(b.keys) && budget > 0 {
			k := b.keys[b.next]
			b.next++
			budget--
			if until, ok := sh.m[k]; ok && until <= now {
				delete(sh.m, k)
			}
		}
		if b.next == len(b.keys) {
			sh.buckets[0] = bucket{}
			sh.buckets = slices.Delete(sh.buckets, 0, 1)
		}
	}
	// Go maps keep their memory after deletions: rebuild a map that has
	// shrunk to a quarter of its peak (amortized over the deletions).
	if sh.peak >= 1024 && len(sh.m) < sh.peak/4 {
		m := make(map[replayKey]int64, len(sh.m))
		for k, v := range sh.m {
			m[k] = v
		}
		sh.m = m
		sh.peak = len(m)
	}
}
