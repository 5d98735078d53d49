package scep

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// TestParseDegenerateTrailingData: a certs-only SignedData (GetCACert with an RA,
// GetNextCACert's content, a CertRep SUCCESS's payload) with anything after one of
// its elements is refused, as the signed-message parser refuses it, and a Client's
// GetCACert with it fails with ErrBadReply. Before, bytes after the ContentInfo, after
// the SignedData inside [0], or after the SignedData's signerInfos were read past, and
// a SignedData without signerInfos was taken.
func TestParseDegenerateTrailingData(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	null := []byte{0x05, 0x00} // an ASN.1 NULL: one more well-formed element
	// build writes a certs-only SignedData holding pki.ca, with null added where at
	// says, or its signerInfos left out.
	build := func(at string) []byte {
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidSignedData)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1Int64(1)
					b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes(pki.ca.Raw)
					})
					if at != "no signerInfos" {
						b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
					}
					if at == "after signerInfos" {
						b.AddBytes(null)
					}
				})
				if at == "after SignedData" {
					b.AddBytes(null)
				}
			})
			if at == "after content" {
				b.AddBytes(null)
			}
		})
		out := b.BytesOrPanic()
		switch at {
		case "after ContentInfo":
			out = append(out, null...)
		case "one byte after ContentInfo":
			out = append(out, 0)
		case "BER, after ContentInfo":
			// The outer SEQUENCE with an indefinite length: read by the BER path.
			body := cryptobyte.String(out)
			var inner cryptobyte.String
			body.ReadASN1(&inner, cbasn1.SEQUENCE)
			out = append(append(append([]byte{0x30, 0x80}, inner...), 0, 0), null...)
		}
		return out
	}
	// Without additions it is what DegenerateCertificates writes.
	want, err := DegenerateCertificates([]*x509.Certificate{pki.ca})
	require.NoError(t, err)
	require.Equal(t, want, build(""))
	cases := []struct {
		at string
		ok bool
	}{
		{"", true},
		{"after ContentInfo", false},
		{"one byte after ContentInfo", false},
		{"BER, after ContentInfo", false},
		{"after content", false},
		{"after SignedData", false},
		{"after signerInfos", false},
		{"no signerInfos", false},
	}
	for _, tc := range cases {
		t.Run(tc.at, func(t *testing.T) {
			t.Parallel()
			b := build(tc.at)
			ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
				w.Write(b)
			}))
			fp := sha256.Sum256(pki.ca.Raw)
			cl := &Client{URL: ts.URL, CAFingerprint: fp[:]}
			certs, crls, err := parseDegenerate(b)
			if tc.ok {
				require.NoError(t, err)
				require.Len(t, certs, 1)
				require.True(t, certs[0].Equal(pki.ca))
				_, err = cl.GetCACert(context.Background())
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrBadContent)
			require.Nil(t, certs)
			require.Nil(t, crls)
			_, err = cl.GetCACert(context.Background())
			require.ErrorIs(t, err, ErrBadReply)
		})
	}
}
