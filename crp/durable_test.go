package crp_test

// Nothing is acknowledged to a device before it is durable: a certificate whose
// inventory record or transaction record could not be written is withheld (FAILURE),
// and the CA's signature is logged for revocation. (Before: the write error was
// logged and the certificate sent anyway, so the device held a certificate the
// inventory did not know and that no resend could find.)

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

var errDiskFull = errors.New("disk full")

// fullDisk is a store whose writes fail, as a store on a full disk does.
type fullDisk struct{ crp.MemoryStore }

func (*fullDisk) Add(context.Context, *crp.IssuedCertificate) error { return errDiskFull }
func (*fullDisk) Put(context.Context, *crp.Record) error            { return errDiskFull }

func TestUnrecordedCertificateIsWithheld(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(env *crptest.Env, s *fullDisk)
	}{
		{"inventory write fails", func(env *crptest.Env, s *fullDisk) { env.RP.Certificates = s }},
		{"transaction write fails", func(env *crptest.Env, s *fullDisk) { env.RP.Transactions = s }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			var logs bytes.Buffer
			env.RP.Logger = slogTo(&logs)
			tc.set(env, &fullDisk{})
			ctx := context.Background()
			self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice"}, nil)
			require.NoError(t, err)
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: "tx-full",
				CSR: csr(t, deviceKey, "alice@example.com", ch), Signer: self, ChallengePassword: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e, "the device must get FAILURE, got %+v", resp)
			require.Nil(t, resp)
			require.Equal(t, crp.PhaseIssue, e.Phase)
			require.ErrorIs(t, err, errDiskFull)
			require.Contains(t, logs.String(), "withheld from the device; revoke it")
		})
	}
}
