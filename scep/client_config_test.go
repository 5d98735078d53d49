package scep

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClientRefusesBeforeSending: a Client that could trust no answer (no
// CAFingerprint, or one that is not a SHA-256) or a requester key that cannot read
// the reply (not RSA, not a Decrypter, or no certificate to renew) is refused with an
// error to test with errors.Is, before any request leaves. Before, the network was
// asked first (an unreachable server gave a dial error instead of ErrFingerprint), a
// 4-byte pin was "fingerprint mismatch", and an ECDSA key or a nil certificate gave
// plain errors naming internals.
func TestClientRefusesBeforeSending(t *testing.T) {
	testKeys(t)
	var requests atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	csrFor := func(t *testing.T, key any) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "d"}}, key)
		require.NoError(t, err)
		return der
	}
	pin := make([]byte, 32)
	for _, tc := range []struct {
		name string
		call func(*testing.T) error
		want error
	}{
		{"no CAFingerprint, GetCACert", func(t *testing.T) error {
			_, err := (&Client{URL: ts.URL}).GetCACert(context.Background())
			return err
		}, ErrFingerprint},
		{"no CAFingerprint, Enroll", func(t *testing.T) error {
			_, err := (&Client{URL: ts.URL}).Enroll(context.Background(), csrFor(t, rsaKeys[0]), rsaKeys[0])
			return err
		}, ErrFingerprint},
		{"4-byte CAFingerprint", func(t *testing.T) error {
			_, err := (&Client{URL: ts.URL, CAFingerprint: []byte{1, 2, 3, 4}}).GetCACert(context.Background())
			return err
		}, ErrFingerprint},
		{"ECDSA requester key", func(t *testing.T) error {
			_, err := (&Client{URL: ts.URL, CAFingerprint: pin}).Enroll(context.Background(), csrFor(t, ecKey), ecKey)
			return err
		}, ErrClientKey},
		{"Renew without the certificate", func(t *testing.T) error {
			_, err := (&Client{URL: ts.URL, CAFingerprint: pin}).Renew(context.Background(), csrFor(t, rsaKeys[0]), nil, rsaKeys[0])
			return err
		}, ErrClientKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := requests.Load()
			err := tc.call(t)
			require.True(t, errors.Is(err, tc.want), "%v", err)
			require.Equal(t, before, requests.Load(), "a request was sent")
		})
	}
}
