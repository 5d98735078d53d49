package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServerCAKey: a client that pins the CA encrypts its request to the CA certificate
// and verifies the reply with the CA certificate alone (micromdm's scepclient
// -ca-fingerprint). Without CAKey such a request is refused with badMessageCheck;
// with it, it is decrypted with the CA key, and every reply to it (SUCCESS and
// FAILURE) is signed by the CA. Requests to the RA are answered by the RA as before.
func TestServerCAKey(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	request := func(to, cn, challenge string, h ...crypto.Hash) []byte {
		rcpt := pki.raEnc
		if to == "CA" {
			rcpt = pki.ca
		}
		der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "pin-" + cn, Payload: newCSR(t, d.key, cn, challenge),
			Recipient: rcpt, SignerCert: d.self, Signer: d.key, Digest: append(h, 0)[0]})
		require.NoError(t, err)
		return der
	}
	for _, tc := range []struct {
		name      string
		caKey     bool
		to        string
		challenge string
		status    PKIStatus
		info      FailInfo
		signer    string
		digest    crypto.Hash
	}{
		{"to the CA, option off", false, "CA", "secret", Failure, BadMessageCheck, "RA", 0},
		{"to the CA", true, "CA", "secret", Success, 0, "CA", 0},
		{"to the CA, wrong challenge", true, "CA", "wrong", Failure, BadRequest, "CA", 0},
		// Refused before its envelope is opened (SHA-1 without AllowLegacy): still
		// signed by the CA, or the client cannot read why. Before, the RA signed it
		// and scepclient printed "pkcs7: No certificate for signer".
		{"to the CA, SHA-1 refused", true, "CA", "secret", Failure, BadAlg, "CA", crypto.SHA1},
		{"to the RA, option on", true, "RA", "secret", Success, 0, "RA", 0},
		{"to the RA, option off", false, "RA", "secret", Success, 0, "RA", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := pki.server(false)
			if tc.caKey {
				s.CAKey = pki.caKey
			}
			require.NoError(t, s.Validate())
			before := pki.issuedCount()
			rec := httptestRecorder(s, http.MethodPost, "/scep?operation=PKIOperation", request(tc.to, tc.name, tc.challenge, tc.digest))
			require.Equal(t, http.StatusOK, rec.Code)
			rep, err := ParsePKIMessage(rec.Body.Bytes(), ParseOptions{})
			require.NoError(t, err)
			want := map[string][]byte{"CA": pki.ca.Raw, "RA": pki.raSign.Raw}[tc.signer]
			require.Equal(t, want, rep.Signer.Raw, "signed by the %s", tc.signer)
			require.Equal(t, tc.status, rep.Status)
			require.Equal(t, tc.info, rep.FailInfo)
			require.Equal(t, crypto.SHA256, rep.Digest, "never a SHA-1 signature without AllowLegacy")
			if tc.status == Success {
				require.NoError(t, rep.Decrypt(Recipient{Certificate: d.self, Key: d.key}))
				require.Equal(t, tc.name, rep.Issued[0].Subject.CommonName)
				require.Equal(t, before+1, pki.issuedCount())
			} else {
				require.Equal(t, before, pki.issuedCount(), "nothing issued")
			}
		})
	}

	// CAKey must hold the CA's key and be able to decrypt.
	s := pki.server(false)
	s.CAKey = pki.raKey
	require.Error(t, s.Validate())
	s.CAKey = ecKey
	require.Error(t, s.Validate())
	// Served anyway, a CAKey that cannot decrypt is not used (and does not panic).
	rec := httptestRecorder(s, http.MethodPost, "/scep?operation=PKIOperation", request("CA", "not-a-decrypter", "secret"))
	expectFailure(t, pki, rec.Code, rec.Body.Bytes(), BadMessageCheck)
}

// TestServerValidateKeys: a Signer or a recipient key that is not its certificate's is
// refused by Validate. Before, Validate passed them: with the wrong Signer every
// enrollment was issued (its challenge spent) and answered with a CertRep the client
// could not verify; with the wrong recipient key every request failed to decrypt.
func TestServerValidateKeys(t *testing.T) {
	pki := newTestPKI(t)
	s := pki.server(false)
	require.NoError(t, s.Validate())
	s.Signer = pki.caKey
	require.ErrorContains(t, s.Validate(), "Signer does not hold the key")

	s = pki.server(false)
	s.Recipients = []Recipient{{Certificate: pki.raEnc, Key: pki.caKey.(crypto.Decrypter)}}
	require.ErrorContains(t, s.Validate(), "recipient needs a certificate and its key")
}

// TestResponderPanicLogged: a Responder that panics gets the device FAILURE
// badRequest and the operator an ERROR record with the stack (before: only the
// request's INFO line, without it).
func TestResponderPanicLogged(t *testing.T) {
	pki := newTestPKI(t)
	s := pki.server(false)
	var logged bytes.Buffer
	s.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	s.Responder = ResponderFunc(func(context.Context, *Request) (*Response, error) { panic("a bug") })
	d := newDevice(t)
	rec := httptestRecorder(s, http.MethodPost, "/scep?operation=PKIOperation", pki.pkcsReq(t, d, "secret"))
	expectFailure(t, pki, rec.Code, rec.Body.Bytes(), BadRequest)
	require.Contains(t, logged.String(), `level=ERROR msg="scep: responder panicked"`)
	require.Contains(t, logged.String(), "caenvelope_test.go", "the stack")
	require.Zero(t, pki.issuedCount())
}

// ecDecrypter is an ECDSA key that claims to decrypt, as a token's key type does
// whatever the key (pkcs11key.Key answers ErrNotRSA).
type ecDecrypter struct{ *ecdsa.PrivateKey }

func (ecDecrypter) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, errors.New("only RSA keys decrypt")
}

// TestCAKeyMustBeRSA: Validate refuses a CAKey (and a Rollover.CAKey) whose
// certificate's key is not RSA, even when its type is a crypto.Decrypter: requests
// are encrypted to the CA with RSA key transport only. An ECDSA CA key whose type
// claims to decrypt (a PKCS#11 token's) passed.
func TestCAKeyMustBeRSA(t *testing.T) {
	pki := newTestPKI(t)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(60), Subject: pkix.Name{CommonName: "ECDSA CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	ecCA := mkCert(t, tmpl, tmpl, ecKey.Public(), ecKey)
	s := pki.server(false)
	s.CACerts = []*x509.Certificate{ecCA}
	require.NoError(t, s.Validate())
	s.CAKey = ecDecrypter{ecKey}
	require.ErrorContains(t, s.Validate(), "Server.CAKey")

	s = pki.server(false)
	s.Rollover = &Rollover{At: now.Add(time.Hour), CACerts: []*x509.Certificate{ecCA}, SignerCert: pki.raSign,
		Signer: pki.raKey, Recipients: []Recipient{{Certificate: pki.raEnc, Key: pki.raEncK}},
		CAKey: ecDecrypter{ecKey}}
	require.ErrorContains(t, s.Validate(), "Rollover.CAKey")
}
