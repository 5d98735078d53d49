package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestAdminDotTransactionIDs: a transactionID is whatever printable text the device
// chose (RFC 8894 §3.2.1.1), "." and ".." included. scepkit admin approve and reject
// name it in a path segment, where a dot segment is removed (RFC 3986 §5.2.4): the call
// went to another path (a redirect to /v1/pending/approve, or /v1/approve), and such a
// pending request could be neither approved nor rejected.
func TestAdminDotTransactionIDs(t *testing.T) {
	p := startInProcess(t, newFixture(t), "require_approval = true\n", "")
	ra := p.g.ra.EncryptionCertificate
	for _, c := range []struct {
		tid, op string
		issued  bool
	}{
		{".", "approve", true},
		{"..", "reject", false},
	} {
		t.Run(c.op+" "+c.tid, func(t *testing.T) {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			self, err := scep.SelfSigned(key, pkix.Name{CommonName: "bob@example.com"}, nil)
			require.NoError(t, err)
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: "bob@example.com"}}, key)
			require.NoError(t, err)
			csr, err = scep.AddChallengePassword(csr, p.f.challenge(t, "bob@example.com", "bob-phone"), key, nil)
			require.NoError(t, err)
			msg, _, err := scep.NewRequest(scep.RequestOptions{Type: scep.PKCSReq, TransactionID: c.tid,
				Payload: csr, Recipient: ra, SignerCert: self, Signer: key})
			require.NoError(t, err)
			resp, err := http.Post(p.public.URL+"/scep?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg))
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
			rep, err := scep.ParsePKIMessage(body, scep.ParseOptions{})
			require.NoError(t, err)
			require.Equal(t, scep.Pending, rep.Status)
			require.Equal(t, c.tid, rep.TransactionID)
			pending := p.pendingList(t)
			require.Len(t, pending, 1)
			require.Equal(t, c.tid, pending[0].TransactionID)

			issued := func() int {
				list, err := p.g.store.Certificates(context.Background(), crp.CertificateQuery{})
				require.NoError(t, err)
				return len(list)
			}
			before := issued()
			out, err := exec.Command(bin, "admin", "-url", p.admin.URL, "-ca", p.f.path("inprocess-admin-ca.pem"),
				"-token-file", p.f.path("token"), c.op, c.tid).CombinedOutput()
			require.NoError(t, err, "scepkit admin %s %q: %s", c.op, c.tid, out)
			require.Empty(t, p.pendingList(t), "the request was decided")
			if c.issued {
				var got apiCertificate
				require.NoError(t, json.Unmarshal(out, &got), "%s", out)
				require.NotEmpty(t, got.Serial)
				require.Equal(t, before+1, issued())
			} else {
				require.Equal(t, before, issued(), "a rejected request issues nothing")
			}
		})
	}
}
