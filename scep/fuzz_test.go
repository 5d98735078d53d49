package scep

import (
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets: no input may panic; on error the result is nil; a parsed message that
// says CertRep FAILURE carries a failInfo.

func addVectorSeeds(f *testing.F) {
	for _, name := range []string{"PKCSReq.der", "CertRep.der", "NDES-CertRep.der"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParsePKIMessage(f *testing.F) {
	addVectorSeeds(f)
	pki := newTestPKI(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, legacy := range []bool{false, true} {
			m, err := ParsePKIMessage(b, ParseOptions{AllowLegacy: legacy})
			if err != nil {
				if m != nil {
					t.Fatal("non-nil message with an error")
				}
				_ = FailInfoOf(err).String()
				continue
			}
			_ = m.MessageType.String() + m.Status.String() + m.FailInfo.String()
			if m.Envelope != nil {
				// Decrypt with a key it is not for: must fail cleanly.
				_ = m.Decrypt(Recipient{pki.raEnc, pki.raEncK})
			}
		}
	})
}

// FuzzEnvelope feeds arbitrary pkcsPKIEnvelope bytes to PKIMessage.Decrypt for every
// message type, with the RA key the envelopes of the seeds are addressed to.
func FuzzEnvelope(f *testing.F) {
	pki := newTestPKI(f)
	d := newDevice(f)
	for _, typ := range []MessageType{PKCSReq, GetCert, CertPoll} {
		env, err := encryptTo(nil, newCSR(f, d.key, "fuzz", "secret"), pki.raEnc, AES128CBC, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env, uint8(typ))
	}
	f.Fuzz(func(t *testing.T, env []byte, typ uint8) {
		for _, mt := range []MessageType{PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL, CertRep, MessageType(typ)} {
			m := &PKIMessage{MessageType: mt, Envelope: env}
			if err := m.Decrypt(Recipient{pki.raEnc, pki.raEncK}); err == nil && mt.known() == false {
				t.Fatalf("decrypted a payload for unknown type %v", mt)
			}
		}
	})
}

func FuzzGETMessage(f *testing.F) {
	f.Add("operation=PKIOperation&message=MIIB%2Bw%3D%3D")
	f.Add("message=MIIB+w==")
	f.Add("message=MIIB-w&message=x")
	f.Add("message=%zz")
	f.Add("message=TUlJ\r\nQg==")
	f.Fuzz(func(t *testing.T, q string) {
		b, err := DecodeGETMessage(q)
		if err != nil && b != nil {
			t.Fatal("bytes with an error")
		}
		if len(b) > len(q) {
			t.Fatal("decoded more than the query holds")
		}
	})
}

func FuzzCaps(f *testing.F) {
	f.Add("AES\nSHA-256\nPOSTPKIOperation\n")
	f.Add("aes\r\nDES3\r\n\r\nRenewal")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseCaps(s)
		if len(c) > 64 {
			t.Fatal("too many caps kept")
		}
		again := ParseCaps(c.String())
		if len(again) != len(c) {
			t.Fatalf("caps do not round-trip: %q -> %q", c, again)
		}
		_ = c.Cipher()
	})
}
