package cms

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// toIndefinite re-encodes every constructed element of der with an
// indefinite length, the shape streaming BER encoders produce.
func toIndefinite(tb testing.TB, der []byte) []byte {
	tb.Helper()
	in := cryptobyte.String(der)
	var out []byte
	for !in.Empty() {
		var elem cryptobyte.String
		var tag cbasn1.Tag
		require.True(tb, in.ReadAnyASN1(&elem, &tag))
		if tag&0x20 == 0 {
			var b cryptobyte.Builder
			b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(elem) })
			out = append(out, b.BytesOrPanic()...)
			continue
		}
		out = append(out, byte(tag), 0x80)
		out = append(out, toIndefinite(tb, elem)...)
		out = append(out, 0, 0)
	}
	return out
}

func TestBERInput(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	content := bytes.Repeat([]byte("0123456789"), 50)
	der, err := Encrypt(nil, content, []*x509.Certificate{f.otherCert, f.recipientCert}, AES256CBC, RSAOAEPSHA256)
	require.NoError(t, err)
	env, err := Parse(der)
	require.NoError(t, err)

	ours := func() [][]byte {
		for _, ri := range env.Recipients {
			if ri.Matches(f.recipientCert) {
				return [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, ri.KeyTransport), ri.EncryptedKey)}
			}
		}
		t.Fatal("no recipient")
		return nil
	}
	segmented := func(size int) []byte {
		c := crafted{cipherAlg: cbcAlgID(t, env.Cipher, env.IV), ct: env.encryptedContent, segmentSize: size}
		c.ris = ours()
		return c.der(t)
	}
	nestedSegments := func() []byte {
		// [0] { OCTET STRING, OCTET STRING (constructed) { OCTET STRING, OCTET STRING } }
		ct := env.encryptedContent
		var b cryptobyte.Builder
		b.AddASN1(tagCtx0Cons, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(ct[:3])
			b.AddASN1(cbasn1.OCTET_STRING.Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ct[3:7])
				b.AddASN1OctetString(ct[7:])
			})
		})
		c := crafted{cipherAlg: cbcAlgID(t, env.Cipher, env.IV), contentElem: b.BytesOrPanic()}
		c.ris = ours()
		return c.der(t)
	}

	tests := []struct {
		name string
		der  []byte
	}{
		{"DER", der},
		{"segments of 16", segmented(16)},
		{"segments of 1000", segmented(1000)},
		{"segments of 1", segmented(1)},
		{"indefinite lengths", toIndefinite(t, der)},
		{"indefinite lengths and segments", toIndefinite(t, segmented(64))},
		{"nested constructed segments", nestedSegments()},
		{"nested constructed segments, indefinite", toIndefinite(t, nestedSegments())},
		{"non-minimal length", func() []byte {
			// Outer SEQUENCE length with a superfluous leading zero octet.
			require.Equal(t, byte(0x82), der[1])
			return cat([]byte{0x30, 0x83, 0x00}, der[2:])
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, c, err := Decrypt(tc.der, f.us(), DecryptOptions{})
			require.NoError(t, err)
			require.Equal(t, AES256CBC, c)
			require.Equal(t, content, got)
		})
	}
}

func TestNormalizeBER(t *testing.T) {
	t.Parallel()
	deep := func(n int) []byte {
		var b []byte
		for range n {
			b = append(b, 0x30, 0x80)
		}
		for range n {
			b = append(b, 0, 0)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want []byte // nil: error
	}{
		{"definite", []byte{0x30, 0x03, 0x02, 0x01, 0x05}, []byte{0x30, 0x03, 0x02, 0x01, 0x05}},
		{"indefinite", []byte{0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00}, []byte{0x30, 0x03, 0x02, 0x01, 0x05}},
		{"non-minimal long form", []byte{0x04, 0x82, 0x00, 0x01, 0xaa}, []byte{0x04, 0x01, 0xaa}},
		{"high tag number kept", []byte{0x3f, 0x81, 0x00, 0x80, 0x05, 0x00, 0x00, 0x00}, []byte{0x3f, 0x81, 0x00, 0x02, 0x05, 0x00}},
		{"depth limit ok", deep(maxBERDepth + 1), nil},
		{"too deep", deep(maxBERDepth + 2), nil},
		{"indefinite primitive", []byte{0x04, 0x80, 0x00, 0x00}, nil},
		{"missing end-of-contents", []byte{0x30, 0x80, 0x02, 0x01, 0x05}, nil},
		{"length beyond input", []byte{0x04, 0x05, 0x00}, nil},
		{"5-octet length", []byte{0x04, 0x85, 0, 0, 0, 0, 1, 0}, nil},
		{"length 0xff", []byte{0x04, 0xff}, nil},
		{"trailing data", []byte{0x05, 0x00, 0x05, 0x00}, nil},
		{"truncated high tag", []byte{0x1f, 0x81}, nil},
		{"empty", nil, nil},
		{"definite constructed with garbage inside", []byte{0x30, 0x02, 0x04, 0x05}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := normalizeBER(tc.in)
			if tc.name == "depth limit ok" {
				require.NoError(t, err)
				return
			}
			if tc.want == nil {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	t.Run("long contents get long lengths", func(t *testing.T) {
		t.Parallel()
		for _, n := range []int{0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000} {
			in := cat([]byte{0x30, 0x80, 0x04, 0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, make([]byte, n), []byte{0, 0})
			got, err := normalizeBER(in)
			require.NoError(t, err)
			s := cryptobyte.String(got)
			var seq, os cryptobyte.String
			require.True(t, s.ReadASN1(&seq, cbasn1.SEQUENCE) && s.Empty())
			require.True(t, seq.ReadASN1(&os, cbasn1.OCTET_STRING) && seq.Empty())
			require.Len(t, os, n)
		}
	})
}
