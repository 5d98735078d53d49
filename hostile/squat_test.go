package hostile

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// certmongerTID is the transactionID certmonger uses for key: the SHA-256 of its
// SubjectPublicKeyInfo, as a decimal number.
func certmongerTID(t testing.TB, key any) string {
	der, err := x509.MarshalPKIXPublicKey(key)
	require.NoError(t, err)
	sum := sha256.Sum256(der)
	return new(big.Int).SetBytes(sum[:]).String()
}

// TestTransactionIDSquat: an enrolled user (bob, with a genuine challenge of his own)
// sends his request under the transactionID alice's device will use, derived from its
// public key as scep.Client, scepclient and certmonger derive it (RFC 8894 §3.2.1.1),
// a key anyone who saw one of its earlier certificates or requests knows. Before,
// bob's record, whether he was issued a certificate or refused after his challenge was
// claimed, owned the transactionID for RecordTTL (24 hours): alice's enrollment was
// refused "transactionID in use by another requester key". Now a transactionID
// derived from the signer's key is the signer's: alice enrolls, bob's record is
// replaced. A transactionID derived from nobody's key stays the first requester's.
func TestTransactionIDSquat(t *testing.T) {
	keys()
	bobSelf, err := scep.SelfSigned(attackerKey, pkix.Name{CommonName: "bob@example.com"}, nil)
	require.NoError(t, err)
	bobCSR := func(h *harness, cn string) []byte {
		return csrFor(t, attackerKey, pkix.Name{CommonName: cn}, h.challenge(t, "bob@example.com", "bob-phone"))
	}
	for _, c := range []struct {
		name    string
		tid     func() string
		bobCN   string // bob's subject: his own (issued) or another (refused after the claim)
		bobGets want   // zero when bob is issued a certificate
	}{
		{"base64 SHA-1, bob issued", func() string { return deviceTID(t, deviceKey) }, "bob@example.com", want{}},
		{"base64 SHA-1, bob refused after his claim", func() string { return deviceTID(t, deviceKey) }, "zzz", failure(scep.BadRequest)},
		{"decimal SHA-256 (certmonger), bob issued", func() string { return certmongerTID(t, deviceKey.Public()) }, "bob@example.com", want{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, crptest.Options{})
			tid := c.tid()
			w := h.message(t, spec{tid: tid, cert: bobSelf, key: attackerKey, payload: bobCSR(h, c.bobCN)})
			if c.bobGets.code == 0 {
				h.expectSuccess(t, w, bobSelf, attackerKey, attackerKey.Public())
			} else {
				code, ctype, body := h.send(t, w)
				h.check(t, w, code, ctype, body, c.bobGets)
			}
			rec, err := h.env.RP.Transactions.Get(context.Background(), tid)
			require.NoError(t, err, "bob's request is recorded under alice's transactionID")
			bobSigner := rec.SignerKey

			before := h.env.Issuer.Count()
			aw := h.message(t, spec{tid: tid})
			h.expectSuccess(t, aw, h.self, deviceKey, deviceKey.Public())
			require.Equal(t, before+1, h.env.Issuer.Count())
			rec, err = h.env.RP.Transactions.Get(context.Background(), tid)
			require.NoError(t, err)
			require.NotEqual(t, bobSigner, rec.SignerKey, "alice's record replaced bob's")
			require.Equal(t, scep.Success, rec.Status)
			require.Contains(t, h.logs.String(), "is derived from this requester's")

			// Alice's resend gets her certificate again, not a second one; bob, now
			// without a record there, cannot take the transactionID back.
			h.expectSuccess(t, aw, h.self, deviceKey, deviceKey.Public())
			bw := h.message(t, spec{tid: tid, cert: bobSelf, key: attackerKey, payload: bobCSR(h, "bob@example.com")})
			code, ctype, body := h.send(t, bw)
			h.check(t, bw, code, ctype, body, failure(scep.BadRequest))
			require.Equal(t, before+1, h.env.Issuer.Count(), "nothing issued to bob under alice's transactionID")
		})
	}

	t.Run("a transactionID derived from nobody's key stays the first requester's", func(t *testing.T) {
		h := newHarness(t, crptest.Options{})
		tid := newTID()
		w := h.message(t, spec{tid: tid, cert: bobSelf, key: attackerKey, payload: bobCSR(h, "bob@example.com")})
		h.expectSuccess(t, w, bobSelf, attackerKey, attackerKey.Public())
		before := h.env.Issuer.Count()
		aw := h.message(t, spec{tid: tid})
		code, ctype, body := h.send(t, aw)
		h.check(t, aw, code, ctype, body, failure(scep.BadRequest))
		require.Equal(t, before, h.env.Issuer.Count())
	})
}
