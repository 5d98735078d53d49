package scep

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFailInfoOutsideRFC: RFC 8894 §3.2.1.4 defines failInfo 0 to 4 only. A Responder
// that returns a FailError with any other Info is answered badRequest, in a CertRep the
// client can read; a Replier is not made to build a FAILURE no client can parse.
func TestFailInfoOutsideRFC(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	for _, info := range []FailInfo{-1, 5, 7, 1 << 20} {
		require.Equal(t, BadRequest, FailInfoOf(Fail(info, errors.New("x"))), "%d", int(info))

		s := pki.server(false)
		s.Responder = ResponderFunc(func(context.Context, *Request) (*Response, error) {
			return nil, Fail(info, errors.New("the responder's own code"))
		})
		require.NoError(t, s.Validate())
		ts := httptestServer(t, s)
		fp := sha256.Sum256(pki.ca.Raw)
		cl := &Client{URL: ts.URL, CAFingerprint: fp[:]}
		_, err := cl.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
		var fe *FailError
		require.ErrorAs(t, err, &fe, "%d: %v", int(info), err)
		require.ErrorIs(t, err, ErrRefused)
		require.Equal(t, BadRequest, fe.Info)

		der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "t", Payload: newCSR(t, d.key, "device", "secret"),
			Recipient: pki.raEnc, SignerCert: d.self, Signer: d.key})
		require.NoError(t, err)
		m, err := ParsePKIMessage(der, ParseOptions{})
		require.NoError(t, err)
		_, err = (&Replier{Cert: pki.raSign, Key: pki.raKey}).Failure(m, info)
		require.Error(t, err, "%d", int(info))
	}
	for info := BadAlg; info <= BadCertID; info++ {
		require.Equal(t, info, FailInfoOf(Fail(info, errors.New("x"))))
	}
}
