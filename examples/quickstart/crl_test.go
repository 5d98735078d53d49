package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/stretchr/testify/require"
)

// TestCRLFromStore: the gateway's CRL lists the revocations in its store, after a
// restart too, and GetCRL after GetCRL is one signature, not one each (the CRL was
// signed for every request and listed only the CA's revocations in memory, none
// after a restart).
func TestCRLFromStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func() *gateway {
		g, err := newGateway(dir, "http://127.0.0.1:1/scep", false, true, logger)
		require.NoError(t, err)
		return g
	}
	crl := func(g *gateway) ([]byte, *x509.RevocationList) {
		der, err := g.RP.CRL(ctx)
		require.NoError(t, err)
		l, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, l.CheckSignatureFrom(g.CA.Certificate))
		return der, l
	}
	listed := func(l *x509.RevocationList, serial *big.Int) bool {
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(serial) == 0 {
				return true
			}
		}
		return false
	}

	g := open()
	serial := big.NewInt(0x5ca1ab1e)
	_, err := g.Store.Revoke(ctx, &crp.Revocation{Serial: serial, Reason: 1, RevokedAt: time.Now(),
		Issuer: g.CA.Certificate.RawSubject})
	require.NoError(t, err)
	first, l := crl(g)
	require.True(t, listed(l, serial), "a revocation in the store is in the CRL")
	again, _ := crl(g)
	require.True(t, bytes.Equal(first, again), "the CRL is signed once, then served again")
	require.NoError(t, g.Close())

	g = open()
	defer g.Close()
	_, l = crl(g)
	require.True(t, listed(l, serial), "and after a restart")
}
