package redisstore_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/redisstore"
)

// BenchmarkRedisClaim measures Claim of fresh ids against a local redis-server (one
// round trip: SET NX PX), from parallel goroutines sharing one go-redis client.
func BenchmarkRedisClaim(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Claim(ctx, "bench-"+strconv.FormatInt(n.Add(1), 10), until); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRedisClaimReplayed measures the refusal path (SET NX finds the key, then a
// GET: two round trips).
func BenchmarkRedisClaimReplayed(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	if err := s.Claim(ctx, "used", until); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Claim(ctx, "used", until); err == nil {
				b.Error("claimed twice")
				return
			}
		}
	})
}

var _ = redisstore.DefaultPrefix
