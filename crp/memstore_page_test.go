package crp_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
)

// TestMemoryCertificatesPageBounded: a page of MemoryCertificates.Certificates holds
// at most its limit while it is made, not every certificate the query selects: a page
// of 10 among 20,000 allocates a few KB. Before, each page gathered and sorted all of
// them (8 bytes a certificate and more, 8 MB a page at a million).
func TestMemoryCertificatesPageBounded(t *testing.T) {
	ctx := context.Background()
	var m crp.MemoryCertificates
	base := time.Now().Truncate(time.Second)
	const n = 20000
	for i := range n {
		c := &x509.Certificate{SerialNumber: big.NewInt(int64(n - i)), NotAfter: base.Add(time.Duration(i%500) * time.Hour)}
		require.NoError(t, m.Add(ctx, &crp.IssuedCertificate{Certificate: c}))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	page, err := m.Certificates(ctx, crp.CertificateQuery{Limit: 10})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	require.Len(t, page, 10)
	for i := 1; i < len(page); i++ {
		require.Negative(t, crp.CertificateOrder(page[i-1], page[i]))
	}
	require.Equal(t, base, page[0].Certificate.NotAfter)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(32<<10), "bytes allocated for a page of 10")

	// Paging through all of it with such pages lists each once, in order.
	seen := map[int64]bool{}
	var last *crp.IssuedCertificate
	for {
		page, err := m.Certificates(ctx, crp.CertificateQuery{Limit: 1000, After: last})
		require.NoError(t, err)
		for _, c := range page {
			if last != nil {
				require.Negative(t, crp.CertificateOrder(last, c))
			}
			last = c
			seen[c.Certificate.SerialNumber.Int64()] = true
		}
		if len(page) < 1000 {
			break
		}
	}
	require.Len(t, seen, n)
}
