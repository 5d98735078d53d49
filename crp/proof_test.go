package crp_test

// Certificates are public. A front end that handed RegistrationPoint.Enroll a
// certificate the client merely sent, as the renewal signer, let anyone renew as
// anyone with no challenge: Signer = alice's certificate, CSR with the attacker's key,
// and CN=alice@example.com was issued to the attacker's key. A renewal through Enroll
// now needs a Proof, and a Proof is made only from a TLS handshake or a signature
// with the certificate's key.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/stretchr/testify/require"
)

// signCSR is what a renewing client does for SignatureProof: it signs its CSR's DER
// with the key of the certificate being renewed.
func signCSR(t *testing.T, key crypto.Signer, req *x509.CertificateRequest) []byte {
	t.Helper()
	sum := sha256.Sum256(req.Raw)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	require.NoError(t, err)
	return sig
}

// enrollAlice enrolls alice@example.com's deviceKey with a challenge.
func enrollAlice(t *testing.T, env *crptest.Env) *x509.Certificate {
	t.Helper()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "alice",
		CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	return res.Certificate
}

func TestEnrollRenewalNeedsProofOfPossession(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	alice := enrollAlice(t, env)
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	var res *crp.Result
	stolen := csr(t, attacker, "alice@example.com", "")
	issued := env.Issuer.Count()

	// Alice's certificate with a signature the attacker made: no proof.
	_, err = crp.SignatureProof(alice, stolen, signCSR(t, attacker, stolen))
	require.ErrorIs(t, err, crp.ErrNoProof)
	// A TLS state without a completed handshake, or without a client certificate.
	_, err = crp.TLSProof(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{alice}})
	require.ErrorIs(t, err, crp.ErrNoProof)
	_, err = crp.TLSProof(&tls.ConnectionState{HandshakeComplete: true})
	require.ErrorIs(t, err, crp.ErrNoProof)
	_, err = crp.TLSProof(nil)
	require.ErrorIs(t, err, crp.ErrNoProof)
	// The zero Proof proves nothing: the request is an enrollment without a challenge.
	res, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "attacker-1", CSR: stolen, Proof: &crp.Proof{}})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonNoChallenge, e.Reason)
	require.Nil(t, res.Certificate)
	// Alice's genuine proof for her own CSR, replayed with the attacker's CSR.
	mine := csr(t, deviceKey, "alice@example.com", "")
	proof, err := crp.SignatureProof(alice, mine, signCSR(t, deviceKey, mine))
	require.NoError(t, err)
	res, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "attacker-2", CSR: stolen, Proof: proof})
	require.ErrorIs(t, err, crp.ErrNoProof)
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonRenewalSigner, e.Reason)
	require.Nil(t, res.Certificate)
	require.Equal(t, issued, env.Issuer.Count(), "nothing issued to the attacker")

	// Alice renews with her proof.
	res, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "alice-renew", CSR: mine, Proof: proof})
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", res.Certificate.Subject.CommonName)
	require.True(t, res.Certificate.PublicKey.(*rsa.PublicKey).Equal(deviceKey.Public()))
	require.Equal(t, issued+1, env.Issuer.Count())
}

// A front end with TLS client authentication: the handshake proves the key.
func TestEnrollRenewalTLSProof(t *testing.T) {
	env := newEnv(t)
	alice := enrollAlice(t, env)

	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proof, err := crp.TLSProof(r.TLS)
		if err != nil {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		req, err := x509.ParseCertificateRequest(body)
		if err != nil {
			http.Error(w, "bad CSR", http.StatusBadRequest)
			return
		}
		res, err := env.RP.Enroll(r.Context(), &crp.EnrollRequest{TransactionID: "tls-renew", CSR: req, Proof: proof})
		if err != nil {
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.Certificate.Raw}))
	}))
	ts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	ts.StartTLS()
	defer ts.Close()

	post := func(cert *tls.Certificate) int {
		tr := ts.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		resp, err := (&http.Client{Transport: tr}).Post(ts.URL, "application/pkcs10",
			bytes.NewReader(csr(t, deviceKey, "alice@example.com", "").Raw))
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	issued := env.Issuer.Count()
	require.Equal(t, http.StatusUnauthorized, post(nil))
	require.Equal(t, issued, env.Issuer.Count())
	require.Equal(t, http.StatusOK, post(&tls.Certificate{Certificate: [][]byte{alice.Raw}, PrivateKey: deviceKey}))
	require.Equal(t, issued+1, env.Issuer.Count())
}
