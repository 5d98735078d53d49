package cms

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkDecrypt measures Parse + Decrypt of a ~2 KB SCEP-sized content
// (RSA-2048 PKCS#1 v1.5 key transport, AES-256-CBC). It also times the bare
// RSA-2048 private-key operation (same key, same encrypted key, same
// options), interleaved with the Decrypt calls, and reports it as rsa-ns/op
// and the ratio as "x-floor": Decrypt time over bare RSA time (1.0 is the
// floor; the rest is parsing, recipient matching and AES).
func BenchmarkDecrypt(b *testing.B) {
	for _, kt := range allTransports {
		b.Run(kt.String(), func(b *testing.B) {
			f := fixtures(b)
			content := make([]byte, 2048)
			_, _ = rand.Read(content)
			der, err := Encrypt(nil, content, []*x509.Certificate{f.recipientCert}, AES256CBC, kt)
			require.NoError(b, err)
			env, err := Parse(der)
			require.NoError(b, err)
			ek := env.Recipients[0].EncryptedKey
			opts := env.Recipients[0].KeyTransport
			us := f.us()

			rsaOnce := func() {
				var err error
				if opts == RSAPKCS1v15 {
					_, err = f.recipientKey.Decrypt(rand.Reader, ek, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32})
				} else {
					h := opts.oaepHash()
					_, err = f.recipientKey.Decrypt(rand.Reader, ek, &rsa.OAEPOptions{Hash: h, MGFHash: h})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			rsaOnce() // warm up

			// The bare RSA operation runs interleaved with Decrypt, with the
			// timer stopped, so that both see the same machine load.
			b.SetBytes(int64(len(content)))
			b.ReportAllocs()
			var decTotal, rsaTotal time.Duration
			n := 0
			for b.Loop() {
				n++
				t0 := time.Now()
				got, _, err := Decrypt(der, us, DecryptOptions{})
				decTotal += time.Since(t0)
				if err != nil || len(got) != len(content) {
					b.Fatal(err)
				}
				b.StopTimer()
				t1 := time.Now()
				rsaOnce()
				rsaTotal += time.Since(t1)
				b.StartTimer()
			}
			b.ReportMetric(float64(rsaTotal.Nanoseconds())/float64(n), "rsa-ns/op")
			b.ReportMetric(float64(decTotal)/float64(rsaTotal), "x-floor")
		})
	}
}

// BenchmarkEncrypt measures Encrypt of a ~2 KB content to one RSA-2048
// recipient.
func BenchmarkEncrypt(b *testing.B) {
	f := fixtures(b)
	content := make([]byte, 2048)
	_, _ = rand.Read(content)
	to := []*x509.Certificate{f.recipientCert}
	for _, tc := range []struct {
		c  ContentCipher
		kt KeyTransport
	}{{AES256CBC, RSAPKCS1v15}, {AES256CBC, RSAOAEPSHA256}, {DESEDE3CBC, RSAPKCS1v15}} {
		b.Run(tc.c.String()+"/"+tc.kt.String(), func(b *testing.B) {
			b.SetBytes(int64(len(content)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encrypt(nil, content, to, tc.c, tc.kt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
