package hostile

import (
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestLogLinesBounded: a request's own text does not make log records of its size.
// Before, a genuine challenge with a CSR whose common name was 150 KB produced one
// WARN record of 150,329 bytes: the profile check's error quotes the subject, and the
// registration point's step record wrote errors whole (the SCEP server already cut
// its own at 512 bytes). Now every record stays under 4 KiB, and the request is
// refused, issuing nothing.
func TestLogLinesBounded(t *testing.T) {
	h := newHarness(t, crptest.Options{})
	for _, name := range []pkix.Name{
		{CommonName: strings.Repeat("A", 150000)},
		{CommonName: alice, Organization: []string{strings.Repeat("O", 60000), strings.Repeat("P", 60000)}},
	} {
		csr := csrFor(t, deviceKey, name, h.challenge(t, alice, aliceLaptop))
		n0 := len(h.logs.String())
		w := h.message(t, spec{payload: csr})
		code, ctype, body := h.send(t, w)
		h.check(t, w, code, ctype, body, failure(scep.BadRequest))
		logged := h.logs.String()[n0:]
		require.NotEmpty(t, logged)
		for _, l := range strings.Split(logged, "\n") {
			require.Less(t, len(l), 4096, "log record: %.300s", l)
		}
	}
	require.Zero(t, h.env.Issuer.Count())
}
