package scep

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClientPKIOperationMethod: the Client POSTs PKIOperation to a server that lists
// POSTPKIOperation or SCEPStandard, which implies it (RFC 8894 §3.5.2), and uses GET
// otherwise. SCEPStandard alone got a GET.
func TestClientPKIOperationMethod(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	for _, c := range []struct {
		caps   string
		method string
	}{
		{"AES\nSHA-256\nPOSTPKIOperation", http.MethodPost},
		{"SCEPStandard", http.MethodPost},
		{"SHA-512\nSCEPStandard", http.MethodPost},
		{"AES\nSHA-256", http.MethodGet},
	} {
		t.Run(strings.ReplaceAll(c.caps, "\n", " "), func(t *testing.T) {
			h := &scriptedServer{t: t, caps: c.caps, certs: []*x509.Certificate{pki.ca, pki.raSign, pki.raEnc},
				recipients: []Recipient{{Certificate: pki.raEnc, Key: pki.raEncK}}}
			h.reply = func(m *PKIMessage) []byte {
				rep, err := (&Replier{Cert: pki.raSign, Key: pki.raKey}).Failure(m, BadRequest)
				require.NoError(t, err)
				return rep
			}
			_, err := h.client(pki.ca).Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
			require.ErrorIs(t, err, ErrRefused)
			h.mu.Lock()
			defer h.mu.Unlock()
			require.Equal(t, []string{c.method}, h.methods)
		})
	}
}
