package scep

import (
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSessionAlgorithms: what a Client chooses from a server's caps. SCEPStandard
// implies AES, POSTPKIOperation and SHA-256 (RFC 8894 §3.5.2), so a server that lists
// it with SHA-512 but not SHA-256 still gets SHA-256.
func TestSessionAlgorithms(t *testing.T) {
	pki := newTestPKI(t)
	certs := []*x509.Certificate{pki.raSign, pki.raEnc, pki.ca}
	for _, tc := range []struct {
		caps   Caps
		cipher Cipher
		digest crypto.Hash
		post   bool
	}{
		{nil, AES256CBC, crypto.SHA256, false},
		{Caps{CapSCEPStandard}, AES256CBC, crypto.SHA256, true},
		{Caps{CapSHA512, CapSCEPStandard}, AES256CBC, crypto.SHA256, true},
		{Caps{CapSHA512}, DES3CBC, crypto.SHA512, false},
		{Caps{CapSHA512, CapSHA256}, DES3CBC, crypto.SHA256, false},
		{Caps{CapAES, CapPOSTPKIOp}, AES256CBC, crypto.SHA256, true},
		{Caps{CapDES3, CapSHA1}, DES3CBC, crypto.SHA256, false},
	} {
		s, err := (&Client{}).session(tc.caps, certs)
		require.NoError(t, err, "%v", tc.caps)
		require.Equal(t, tc.cipher, s.cipher, "%v", tc.caps)
		require.Equal(t, tc.digest, s.digest, "%v", tc.caps)
		require.Equal(t, tc.post, s.caps.supports(CapPOSTPKIOp), "%v", tc.caps)
	}
}
