package hostile

import (
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestResendAfterRevocation: a resend of an answered request (or a poll of it) does not
// get a certificate revoked since. Before, scepclient rerun after the revocation got
// SUCCESS with the revoked certificate and installed it without a word. Now FAILURE,
// and nothing is issued: the device enrolls again with a new challenge.
func TestResendAfterRevocation(t *testing.T) {
	h := newHarness(t, crptest.Options{})
	w := h.message(t, spec{tid: deviceTID(t, deviceKey)})
	cert := h.expectSuccess(t, w, h.self, deviceKey, deviceKey.Public())
	// Before the revocation, the resend gets the same certificate again.
	again := h.expectSuccess(t, w, h.self, deviceKey, deviceKey.Public())
	require.Zero(t, again.SerialNumber.Cmp(cert.SerialNumber))

	require.NoError(t, h.env.CA.Revoke(cert.SerialNumber, 1, time.Now()))
	code, ctype, body := h.send(t, w)
	h.check(t, w, code, ctype, body, failure(scep.BadRequest))
	poll := h.message(t, spec{typ: "20", tid: deviceTID(t, deviceKey), payload: issuerAndSubject(h.ca.RawSubject, h.self.RawSubject)})
	code, ctype, body = h.send(t, poll)
	h.check(t, poll, code, ctype, body, failure(scep.BadRequest))
	require.Equal(t, 1, h.env.Issuer.Count())
	require.Contains(t, h.logs.String(), "certificate revoked since")
}
