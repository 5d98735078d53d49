package scep

import (
	"bytes"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// tbsWithPassword is the TBS of a CSR whose only attribute is a challengePassword of
// the given string type and content.
func tbsWithPassword(tag cbasn1.Tag, v []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
		b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidChallengePassword)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(v) })
				})
			})
		})
	})
	return b.BytesOrPanic()
}

// TestChallengePasswordBMPStringSurrogate: a BMPString holds characters of the Basic
// Multilingual Plane (X.680 §41, UCS-2), of which the surrogates D800 to DFFF are not.
// Read one code unit at a time they all became U+FFFD, so that distinct passwords on
// the wire read as one and the same. A lone surrogate is refused; a pair, as UTF-16
// writers send a character beyond the BMP, is read as that character.
func TestChallengePasswordBMPStringSurrogate(t *testing.T) {
	pw, err := challengePassword(tbsWithPassword(cbasn1.Tag(30), []byte{0x00, 'p', 0x00, 0xe4, 0x4e, 0x2d}))
	if err != nil || pw != "pä中" {
		t.Fatalf("BMPString read as %q, %v", pw, err)
	}
	for _, v := range [][]byte{{0xd8, 0x00}, {0xdb, 0xff}, {0xdc, 0x00}, {0xdf, 0xff}, {0xde, 0x00, 0xd8, 0x3d}, {0x00, 'a', 0xd8, 0x3d}} {
		if pw, err := challengePassword(tbsWithPassword(cbasn1.Tag(30), v)); err == nil {
			t.Errorf("BMPString %x read as %q", v, pw)
		}
	}
	if pw, err := challengePassword(tbsWithPassword(cbasn1.Tag(30), []byte{0xff, 0xfd})); err != nil || pw != "\ufffd" {
		t.Fatalf("BMPString FFFD read as %q, %v", pw, err)
	}
	if pw, err := challengePassword(tbsWithPassword(cbasn1.Tag(30), []byte{0x00, 'a', 0xd8, 0x3d, 0xde, 0x00})); err != nil || pw != "a\U0001F600" {
		t.Fatalf("BMPString with a surrogate pair read as %q, %v", pw, err)
	}
}

// FuzzBMPStringPassword: a challengePassword the reader takes from a BMPString is
// valid UTF-8 and written back as UTF-16 gives the bytes received, so that no two
// passwords on the wire read as one.
func FuzzBMPStringPassword(f *testing.F) {
	f.Add([]byte{0x00, 'p', 0x00, 0xe4})
	f.Add([]byte{0xd8, 0x3d, 0xde, 0x00})
	f.Add([]byte{0xff, 0xfd})
	f.Fuzz(func(t *testing.T, v []byte) {
		pw, err := challengePassword(tbsWithPassword(cbasn1.Tag(30), v))
		if err != nil {
			return
		}
		if !utf8.ValidString(pw) {
			t.Fatalf("%x read as invalid UTF-8 %q", v, pw)
		}
		var back []byte
		for _, u := range utf16.Encode([]rune(pw)) {
			back = append(back, byte(u>>8), byte(u))
		}
		if !bytes.Equal(back, v) {
			t.Fatalf("%x read as %q, which is %x", v, pw, back)
		}
	})
}

// TestChallengePasswordUniversalString: challengePassword is a DirectoryString (RFC
// 2985 §5.4.1), whose universalString form (UCS-4, X.680 §41) is read too, as the
// documentation of ChallengePassword promises for every form. A value that is no
// whole number of characters, or holds a code point that is no character (a
// surrogate, or one past U+10FFFF), is refused.
func TestChallengePasswordUniversalString(t *testing.T) {
	ucs4 := func(s string) []byte {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
		}
		return b
	}
	for _, s := range []string{"secret", "pä中", "a\U0001F600", ""} {
		pw, err := challengePassword(tbsWithPassword(cbasn1.Tag(28), ucs4(s)))
		if err != nil || pw != s {
			t.Errorf("UniversalString %q read as %q, %v", s, pw, err)
		}
	}
	for _, v := range [][]byte{{0, 0, 'a'}, {0, 0, 0xd8, 0x00}, {0, 0x11, 0, 0}, {0xff, 0xff, 0xff, 0xff}} {
		if pw, err := challengePassword(tbsWithPassword(cbasn1.Tag(28), v)); err == nil {
			t.Errorf("UniversalString %x read as %q", v, pw)
		}
	}
}
