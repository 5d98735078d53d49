package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/profile"
)

// TestIntuneRevokerAcrossRollover: a revocation request naming the next CA of a
// rollover revokes that CA's certificate and its CRL lists it; one naming the
// current CA revokes there; one naming no CA revokes with the CA that issued the
// serial; one naming a third CA changes nothing.
func TestIntuneRevokerAcrossRollover(t *testing.T) {
	ctx := context.Background()
	newCA := func(name string) *catemplate.CA {
		ca, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: name}})
		require.NoError(t, err)
		return ca
	}
	store := &crp.MemoryStore{}
	g := &gateway{ca: newCA("current CA"), next: newCA("next CA"), store: store}
	g.crl = &crp.CRLPublisher{CA: g.ca, Revocations: store}
	g.nextCRL = &crp.CRLPublisher{CA: g.next, Revocations: store}
	issue := func(ca *catemplate.CA, serial int64) *x509.Certificate {
		c, err := ca.Sign(ctx, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "dev"},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}, ca.Certificate.PublicKey)
		require.NoError(t, err)
		require.NoError(t, store.Add(ctx, &crp.IssuedCertificate{Certificate: c, IssuedAt: time.Now()}))
		return c
	}
	old, fresh := issue(g.ca, 1001), issue(g.next, 2002)
	r := g.intuneRevoker()
	listed := func(p *crp.CRLPublisher, serial *big.Int) bool {
		der, err := p.CRL(ctx)
		require.NoError(t, err)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, crl.CheckSignatureFrom(p.CA.Certificate))
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(serial) == 0 {
				return true
			}
		}
		return false
	}
	require.False(t, listed(g.nextCRL, fresh.SerialNumber))
	require.NoError(t, r.Revoke(ctx, &intune.RevocationRequest{RequestContext: "a", SerialNumber: fresh.SerialNumber.Text(16),
		IssuerName: fresh.Issuer.String()}))
	require.True(t, listed(g.nextCRL, fresh.SerialNumber), "the next CA's CRL, signed afresh")
	require.NoError(t, r.Revoke(ctx, &intune.RevocationRequest{RequestContext: "b", SerialNumber: old.SerialNumber.Text(16),
		IssuerName: old.Issuer.String()}))
	require.True(t, listed(g.crl, old.SerialNumber))

	// A request that names no issuer goes to the CA that issued the serial on
	// record: the next CA's certificate is not entered in the current CA's list.
	unnamed := issue(g.next, 2003)
	require.NoError(t, r.Revoke(ctx, &intune.RevocationRequest{RequestContext: "d", SerialNumber: unnamed.SerialNumber.Text(16)}))
	require.True(t, listed(g.nextCRL, unnamed.SerialNumber))
	require.False(t, listed(g.crl, unnamed.SerialNumber))
	require.True(t, g.next.IsRevoked(unnamed.SerialNumber))
	require.False(t, g.ca.IsRevoked(unnamed.SerialNumber), "revoked by the current CA")

	other := issue(newCA("another CA"), 3003)
	err := r.Revoke(ctx, &intune.RevocationRequest{RequestContext: "c", SerialNumber: other.SerialNumber.Text(16),
		IssuerName: other.Issuer.String()})
	require.True(t, errors.Is(err, intune.ErrOtherCA), "%v", err)
	revoked, err := store.IsRevoked(ctx, other)
	require.NoError(t, err)
	require.False(t, revoked)
}
