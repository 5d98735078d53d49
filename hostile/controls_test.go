package hostile

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// expectSuccess sends w and checks a CertRep SUCCESS whose certificate, encrypted to
// signer, is for pub; it returns that certificate.
func (h *harness) expectSuccess(t *testing.T, w wire, signer *x509.Certificate, key *rsa.PrivateKey, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	code, ctype, body := h.send(t, w)
	require.Equal(t, http.StatusOK, code, "body %q", truncate(body))
	require.Equal(t, "application/x-pki-message", ctype)
	m, err := scep.ParsePKIMessage(body, scep.ParseOptions{AllowLegacy: h.env.Server.AllowLegacy})
	require.NoError(t, err)
	require.Equal(t, h.raSign.Raw, m.Signer.Raw)
	require.Equal(t, scep.Success, m.Status, "failInfo %v", m.FailInfo)
	require.Equal(t, w.tid, m.TransactionID)
	require.Equal(t, w.nonce, m.RecipientNonce)
	require.NoError(t, m.Decrypt(scep.Recipient{Certificate: signer, Key: key}))
	require.NotEmpty(t, m.Issued)
	c := m.Issued[0]
	require.NoError(t, c.CheckSignatureFrom(h.ca))
	require.True(t, c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub))
	return c
}

// TestControls shows that the hand-built messages the hostile cases bend are accepted
// when they are not bent, so each refusal in TestHostile is the hostile part's doing;
// and records the shapes scepkit accepts on purpose.
func TestControls(t *testing.T) {
	h := newHarness(t, crptest.Options{})

	t.Run("hand-built PKCSReq enrolls", func(t *testing.T) {
		before := h.env.Issuer.Count()
		h.expectSuccess(t, h.message(t, spec{}), h.self, deviceKey, deviceKey.Public())
		require.Equal(t, before+1, h.env.Issuer.Count())
	})
	t.Run("hand-built GET PKIOperation enrolls", func(t *testing.T) {
		w := h.message(t, spec{})
		w.method, w.query, w.body = http.MethodGet, getMessage(w.body), nil
		h.expectSuccess(t, w, h.self, deviceKey, deviceKey.Public())
	})
	t.Run("BER indefinite-length message enrolls", func(t *testing.T) {
		w := h.message(t, spec{})
		w.body = indefinite(t, w.body)
		require.Equal(t, byte(0x80), w.body[1])
		h.expectSuccess(t, w, h.self, deviceKey, deviceKey.Public())
	})
	t.Run("signed attributes not in DER order enroll (smallstep/certificates#1723)", func(t *testing.T) {
		h.expectSuccess(t, h.message(t, spec{tweak: func(o *signOpts) { o.unsorted = true }}), h.self, deviceKey, deviceKey.Public())
	})
	t.Run("8-byte senderNonce enrolls (old iOS clients send one)", func(t *testing.T) {
		h.expectSuccess(t, h.message(t, spec{nonce: randBytes(8)}), h.self, deviceKey, deviceKey.Public())
	})
	t.Run("PKCSReq signed by an issued certificate, same subject, no challenge renews (OmniTrustILM/core#1887)", func(t *testing.T) {
		c := h.enrollGood(t)
		h.expectSuccess(t, h.message(t, spec{cert: c, key: deviceKey,
			payload: csrFor(t, deviceKey, pkix.Name{CommonName: alice}, "")}), c, deviceKey, deviceKey.Public())
	})
	t.Run("RenewalReq signed by an issued certificate renews", func(t *testing.T) {
		c := h.enrollGood(t)
		h.expectSuccess(t, h.message(t, spec{typ: "17", cert: c, key: deviceKey,
			payload: csrFor(t, deviceKey, pkix.Name{CommonName: alice}, "")}), c, deviceKey, deviceKey.Public())
	})
	t.Run("CertPoll by the device that enrolled gets its certificate", func(t *testing.T) {
		c := h.enrollGood(t)
		w := h.message(t, spec{typ: "20", tid: deviceTID(t, deviceKey), payload: issuerAndSubject(h.ca.RawSubject, h.self.RawSubject)})
		before := h.env.Issuer.Count()
		got := h.expectSuccess(t, w, h.self, deviceKey, deviceKey.Public())
		require.Equal(t, c.Raw, got.Raw, "the certificate issued before, not a new one")
		require.Equal(t, before, h.env.Issuer.Count())
	})
	// A CSR for another key than the self-signed signer's. RFC 8894 §2.3: "If the
	// requester does not have an appropriate existing certificate, then a locally
	// generated self-signed certificate MUST be used. [...] The self-signed certificate
	// SHOULD use the same subject name and key as in the PKCS #10 request." It is a
	// SHOULD, and §3.3.1.2 has a renewal sign a CSR for a new key with the old
	// certificate. What authorizes is the challenge; the CSR's own signature proves
	// possession of the key certified; the signer key only decides who can read the
	// CertRep, which holds a public certificate. So scepkit accepts it: the certificate
	// is for the CSR's key, the reply encrypted to the signer. The profile has no
	// setting that requires the two keys to be the same; a CSR for another key WITHOUT
	// its proof of possession is refused (TestHostile).
	t.Run("CSR for another key than the signer's, with proof of possession, enrolls (RFC 8894 §2.3 SHOULD)", func(t *testing.T) {
		signer := selfSigned(t, attackerKey, alice)
		h.expectSuccess(t, h.message(t, spec{cert: signer, key: attackerKey}), signer, attackerKey, deviceKey.Public())
	})

	t.Run("a challenge re-signed unchanged by the MDM key enrolls", func(t *testing.T) {
		// The forgeries of TestHostile (expired, over-long, other gateway...) go through
		// this path: only their mutation makes them fail.
		ch := h.mdmSigned(t, nil)
		h.expectSuccess(t, h.message(t, spec{payload: csrFor(t, deviceKey, pkix.Name{CommonName: alice}, ch)}),
			h.self, deviceKey, deviceKey.Public())
	})
	t.Run("user name with an RDN separator enrolls as one literal CN", func(t *testing.T) {
		// The other half of TestHostile's "user name that injects an RDN": the subject
		// rendered for this UPN is a single CN holding ",O=Admins" literally.
		upn := "eve@example.com,O=Admins"
		h.env.Users.Put(crp.User{User: profile.User{ID: upn, UserPrincipalName: upn, Email: "eve@example.com", UserName: "eve"}})
		h.env.Devices.Put(crp.Device{Device: profile.Device{ID: "eve-laptop", AADDeviceID: "eve-laptop", Name: "eve-laptop",
			SerialNumber: "SN-eve"}, UserID: upn, Compliant: true})
		ch := h.challenge(t, upn, "eve-laptop")
		c := h.expectSuccess(t, h.message(t, spec{payload: csrFor(t, deviceKey, pkix.Name{CommonName: upn}, ch)}),
			h.self, deviceKey, deviceKey.Public())
		require.Equal(t, upn, c.Subject.CommonName)
		require.Empty(t, c.Subject.Organization)
	})

	// Legacy on: the same SHA-1 and single-DES shapes refused with badAlg when legacy is
	// off enroll, so the refusal is the algorithm's.
	legacy := newHarness(t, crptest.Options{Legacy: true})
	t.Run("legacy on: SHA-1 enrolls", func(t *testing.T) {
		legacy.expectSuccess(t, legacy.message(t, spec{tweak: func(o *signOpts) { o.hash = crypto.SHA1 }}), legacy.self, deviceKey, deviceKey.Public())
	})
	t.Run("legacy on: single DES enrolls", func(t *testing.T) {
		w := legacy.message(t, spec{envelope: desEnvelope(t, legacy.raEnc, legacy.goodCSR(t))})
		legacy.expectSuccess(t, w, legacy.self, deviceKey, deviceKey.Public())
	})
	t.Run("legacy on: MD5 still refused", func(t *testing.T) {
		w := legacy.message(t, spec{tweak: func(o *signOpts) { o.hash = crypto.MD5 }})
		code, ctype, body := legacy.send(t, w)
		legacy.check(t, w, code, ctype, body, failure(scep.BadAlg))
	})
	t.Run("legacy on: RC2 still refused", func(t *testing.T) {
		csr := legacy.goodCSR(t)
		w := legacy.message(t, spec{envelope: rc2Envelope(t, legacy.raEnc, len(csr))})
		code, ctype, body := legacy.send(t, w)
		legacy.check(t, w, code, ctype, body, failure(scep.BadAlg))
	})
}
