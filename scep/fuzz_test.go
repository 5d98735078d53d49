package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
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

// FuzzDegenerate feeds arbitrary bytes to the certs-only SignedData reader a Client
// uses for GetCACert, GetNextCACert and a CertRep SUCCESS: no panic, nothing returned
// with an error, and what it returns is what DegenerateCertificates writes back.
func FuzzDegenerate(f *testing.F) {
	pki := newTestPKI(f)
	for _, certs := range [][]*x509.Certificate{{pki.ca}, {pki.raSign, pki.raEnc, pki.ca}} {
		der, err := DegenerateCertificates(certs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	if der, err := degenerate(nil, nil, []byte{0x30, 0x03, 0x02, 0x01, 0x01}); err == nil {
		f.Add(der)
	}
	// The first certificate twice: written back once.
	if der, err := degenerate(nil, []*x509.Certificate{pki.ca, pki.ca, pki.raSign}, nil); err == nil {
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, crls, err := parseDegenerate(b)
		if err != nil {
			if certs != nil || crls != nil {
				t.Fatal("certificates or CRLs with an error")
			}
			return
		}
		if len(certs) == 0 {
			return
		}
		again, err := DegenerateCertificates(certs)
		if err != nil {
			t.Fatal(err)
		}
		want := 0 // what DegenerateCertificates writes: later copies of the first left out
		for i, c := range certs {
			if i == 0 || !bytes.Equal(c.Raw, certs[0].Raw) {
				want++
			}
		}
		back, _, err := parseDegenerate(again)
		if err != nil || len(back) != want {
			t.Fatalf("the certificates read do not round-trip: %d of %d, %v", len(back), want, err)
		}
	})
}

// FuzzBERToDER: the BER normalizer never panics, never writes more than it read (but
// for the few bytes of berGrowth, and none below 64 KiB), and leaves its own output
// unchanged.
func FuzzBERToDER(f *testing.F) {
	addVectorSeeds(f)
	f.Add([]byte{0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 0xaa, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Add([]byte{0x30, 0x81, 0x03, 0x02, 0x01, 0x05})
	f.Add([]byte{0x1f, 0x81, 0x00, 0x00})
	f.Fuzz(checkBERToDER)
}

func checkBERToDER(t *testing.T, in []byte) {
	out, err := berToDER(in)
	if err != nil {
		if out != nil {
			t.Fatal("output with an error")
		}
		return
	}
	if len(out) > len(in) && (len(in) < 1<<16 || len(out) > len(in)+berGrowth(len(in))) {
		t.Fatalf("%d bytes in, %d out", len(in), len(out))
	}
	again, err := berToDER(out)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("not a fixed point: %x -> %x (%v)", out, again, err)
	}
}

// TestBERToDERLongIndefinite: an indefinite length whose contents reach 64 KiB is
// written in four bytes where the input took three; the bound FuzzBERToDER checks
// said the output was never longer than the input. Nested, each level adds its bytes.
func TestBERToDERLongIndefinite(t *testing.T) {
	data := bytes.Repeat([]byte{0xaa}, 1<<16)
	in := append([]byte{0x30, 0x80, 0x04, 0x83, 0x01, 0x00, 0x00}, data...)
	in = append(in, 0, 0)
	checkBERToDER(t, in)
	for range maxDepthBER - 1 {
		in = append(append([]byte{0x30, 0x80}, in...), 0, 0)
	}
	out, err := berToDER(in)
	if err != nil || len(out) <= len(in) {
		t.Fatalf("%d bytes in, %d out, %v", len(in), len(out), err)
	}
	checkBERToDER(t, in)
}

// FuzzChallengePassword feeds arbitrary bytes as a CSR's TBS to the challengePassword
// reader: no panic, and no password with an error.
func FuzzChallengePassword(f *testing.F) {
	d := newDevice(f)
	for _, pw := range []string{"secret", "pässword", ""} {
		csr, err := x509.ParseCertificateRequest(newCSR(f, d.key, "fuzz", pw))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(csr.RawTBSCertificateRequest)
	}
	f.Fuzz(func(t *testing.T, tbs []byte) {
		if pw, err := challengePassword(tbs); err != nil && pw != "" {
			t.Fatal("a password with an error")
		}
	})
}

// FuzzClientCertRep: a Client enrolls with a server whose CertRep is correctly
// addressed and signed by the RA, but carries an arbitrary status, failInfo and
// payload (the content of the envelope encrypted to the device): the Client never
// panics, and returns a certificate only when it is for the device's key and issued by
// the pinned CA.
func FuzzClientCertRep(f *testing.F) {
	pki := newTestPKI(f)
	d := newDevice(f)
	s := pki.server(false)
	issued := mkCert(f, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, pki.ca, d.key.Public(), pki.caKey)
	good, err := DegenerateCertificates([]*x509.Certificate{issued, pki.ca})
	if err != nil {
		f.Fatal(err)
	}
	other, err := DegenerateCertificates([]*x509.Certificate{d.self})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(Success), "", good)
	f.Add(uint8(Success), "", other)
	f.Add(uint8(Pending), "", good)
	f.Add(uint8(Failure), "badCertId", []byte(nil))
	f.Add(uint8(Failure), "7", []byte(nil))
	f.Add(uint8(1), "", []byte{0x30, 0x00})
	csr := newCSR(f, d.key, "device", "secret")
	fp := sha256.Sum256(pki.ca.Raw)
	f.Fuzz(func(t *testing.T, status uint8, failInfo string, payload []byte) {
		rp := &Replier{Cert: pki.raSign, Key: pki.raKey}
		polls := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("operation") != "PKIOperation" {
				s.ServeHTTP(w, r)
				return
			}
			body, _ := io.ReadAll(r.Body)
			m, err := ParsePKIMessage(body, ParseOptions{})
			if err != nil || m.Decrypt(s.Recipients...) != nil {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			st := PKIStatus(status)
			if st == Pending && m.MessageType == CertPoll {
				if polls++; polls > 1 {
					st = Success // one PENDING, then the payload
				}
			}
			attrs := []signedAttr{{oidMessageType, printableValue("3")}, {oidTransactionID, printableValue(m.TransactionID)},
				{oidPKIStatus, printableValue(strconv.Itoa(int(st)))}, {oidSenderNonce, octetValue(bytes.Repeat([]byte{1}, 16))},
				{oidRecipientNonce, octetValue(m.SenderNonce)}}
			if isPrintableString(failInfo) {
				attrs = append(attrs, signedAttr{oidFailInfo, printableValue(failInfo)})
			}
			var content []byte
			if st == Success {
				if content, err = encryptTo(nil, payload, m.Signer, AES128CBC, 0); err != nil {
					http.Error(w, "cannot encrypt", http.StatusInternalServerError)
					return
				}
			}
			der, err := buildSignedData(signOptions{content: content, attrs: attrs, cert: rp.Cert, key: rp.Key,
				hash: crypto.SHA256})
			if err != nil {
				http.Error(w, "cannot sign", http.StatusInternalServerError)
				return
			}
			w.Write(der)
		}))
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c := &Client{URL: srv.URL, CAFingerprint: fp[:], PollInterval: time.Millisecond}
		cert, err := c.Enroll(ctx, csr, d.key)
		if err != nil {
			if cert != nil {
				t.Fatal("a certificate with an error")
			}
			return
		}
		if !cert.PublicKey.(*rsa.PublicKey).Equal(d.key.Public()) || cert.CheckSignatureFrom(pki.ca) != nil {
			t.Fatalf("the Client accepted a certificate that is not the device's from the CA: %v", cert.Subject)
		}
	})
}

func isPrintableString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isPrintable(s[i]) {
			return false
		}
	}
	return s != ""
}
