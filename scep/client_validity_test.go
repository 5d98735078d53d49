package scep

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClientKeepsOnlyCertificatesValidNow: an RA or intermediate CA certificate that
// the pinned CA issued but that has expired (its key retired and perhaps not
// destroyed) is not kept: the request is not encrypted to it, and a CertRep it signed
// is refused. Within ClockSkew of its NotAfter it is kept, and so is one whose
// NotBefore is still to come (the device's clock may be behind).
func TestClientKeepsOnlyCertificatesValidNow(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	now := time.Now()
	year := 365 * 24 * time.Hour
	expired := [2]time.Time{now.Add(-10 * year), now.Add(-9 * year)}
	future := [2]time.Time{now.Add(year), now.Add(2 * year)}
	current := [2]time.Time{now.Add(-time.Hour), now.Add(time.Hour)}
	for _, c := range []struct {
		name     string
		ra       [2]time.Time // the RA's validity
		mid      *[2]time.Time
		accepted bool
	}{
		{name: "expired RA", ra: expired},
		{name: "RA not yet valid (the device's clock is behind)", ra: future, accepted: true},
		{name: "valid RA under an expired intermediate", ra: current, mid: &expired},
		{name: "valid RA under an intermediate not yet valid", ra: current, mid: &future, accepted: true},
		{name: "RA expired within the clock skew", ra: [2]time.Time{now.Add(-year), now.Add(-ClockSkew / 2)}, accepted: true},
		{name: "RA valid within the clock skew", ra: [2]time.Time{now.Add(ClockSkew / 2), now.Add(year)}, accepted: true},
		{name: "valid RA under a valid intermediate", ra: current, mid: &current, accepted: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			issuer, issuerKey := pki.ca, pki.caKey
			certs := []*x509.Certificate{pki.ca}
			if c.mid != nil {
				issuer = caCert(t, 80, pki.ca, pki.caKey, rsaKeys[2], c.mid[0], c.mid[1])
				issuerKey = rsaKeys[2]
				certs = append(certs, issuer)
			}
			ra := raCert(t, 81, issuer, issuerKey, rsaKeys[1], c.ra[0], c.ra[1])
			certs = append(certs, ra)
			h := &scriptedServer{t: t, caps: "AES\nSHA-256\nPOSTPKIOperation\n", certs: certs,
				recipients: []Recipient{{Certificate: ra, Key: rsaKeys[1]}}}
			h.reply = func(m *PKIMessage) []byte {
				if m.CSR == nil { // not encrypted to the RA: answer as the RA all the same
					rep, err := (&Replier{Cert: ra, Key: rsaKeys[1]}).Failure(m, BadRequest)
					require.NoError(t, err)
					return rep
				}
				rep, err := (&Replier{Cert: ra, Key: rsaKeys[1]}).Success(m, issue(t, m, issuer, issuerKey, nil))
				require.NoError(t, err)
				return rep
			}
			cl := h.client(pki.ca)

			kept, err := cl.GetCACert(context.Background())
			require.NoError(t, err)
			cert, err := cl.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
			reqs := h.received()
			require.Len(t, reqs, 1)
			if c.accepted {
				require.Len(t, kept, len(certs))
				require.NoError(t, err)
				require.NotNil(t, cert)
				return
			}
			require.Equal(t, []*x509.Certificate{pki.ca}, kept)
			require.Empty(t, reqs[0].ChallengePassword, "the challenge was encrypted to a certificate not valid now")
			require.ErrorIs(t, err, ErrBadReply, "a CertRep signed by a certificate not valid now was believed")
			require.NotErrorIs(t, err, ErrRefused)
			require.Nil(t, cert)
		})
	}
}
