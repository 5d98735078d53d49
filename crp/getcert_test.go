package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"math/big"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestGetCertOnlyForItsKey: GetCert hands a certificate only to a request signed with
// that certificate's key (RFC 8894: a client fetches its own certificate). Before, any
// self-signed requester got any device's certificate by serial, and the serials of
// revoked ones are public in the CRL. Another key gets the answer an unknown serial
// gets.
func TestGetCertOnlyForItsKey(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "alice", CSR: csr(t, deviceKey, "alice@example.com", ch),
		Challenge: ch})
	require.NoError(t, err)
	issued := res.Certificate

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	getCert := func(signerKey *rsa.PrivateKey, serial *big.Int) (*scep.Response, error) {
		self, err := scep.SelfSigned(signerKey, pkix.Name{CommonName: "requester"}, nil)
		require.NoError(t, err)
		return env.RP.Respond(ctx, &scep.Request{MessageType: scep.GetCert, TransactionID: "get", Signer: self,
			IssuerAndSerial: &scep.IssuerAndSerial{Issuer: issued.RawIssuer, Serial: serial}})
	}

	for _, c := range []struct {
		name   string
		key    *rsa.PrivateKey
		serial *big.Int
		want   bool
	}{
		{"its own key", deviceKey, issued.SerialNumber, true},
		{"another key", other, issued.SerialNumber, false},
		{"another key, unknown serial", other, new(big.Int).Add(issued.SerialNumber, big.NewInt(1)), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := getCert(c.key, c.serial)
			if c.want {
				require.NoError(t, err)
				require.True(t, resp.Certificate.Equal(issued))
				return
			}
			require.Nil(t, resp)
			require.Equal(t, scep.BadCertID, scep.FailInfoOf(err), "%v", err)
		})
	}
}
