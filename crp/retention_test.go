package crp_test

// A refused, unauthenticated request (no challenge at all) is not recorded: otherwise an
// anonymous sender fills the transaction store (memory or Redis) with its CSRs, one per
// transactionID. (Found in review: 24 h retention of the whole CSR.)

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func TestAnonymousRefusalsAreNotRetained(t *testing.T) {
	env := newEnv(t)
	store := &crp.MemoryTransactions{}
	env.RP.Transactions = store
	ctx := context.Background()
	self, err := scep.SelfSigned(smallKey, pkix.Name{CommonName: "x"}, nil)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: make([]byte, 200<<10)}}}, smallKey)
	require.NoError(t, err)
	big, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	total := 0
	for i := 0; i < 20; i++ {
		tid := fmt.Sprintf("junk-%d", i)
		_, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: tid, CSR: big, Signer: self})
		require.Error(t, err)
		if rec, err := store.Get(ctx, tid); err == nil {
			total += len(rec.CSR)
		}
	}
	t.Logf("20 anonymous refused requests left %d KiB in the transaction store", total>>10)
	require.Zero(t, total, "refused unauthenticated requests should not be stored with their CSR")
}
