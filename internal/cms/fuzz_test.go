package cms

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/smallstep/pkcs7"
	"github.com/stretchr/testify/require"
)

// FuzzEnvelope parses and decrypts arbitrary input with fixed keys (the
// micromdm test CA and the scepkit test recipient). It checks that nothing
// panics, that every error is one of the four sentinels, that ErrDecrypt is
// never wrapped, and that output never exceeds the input.
func FuzzEnvelope(f *testing.F) {
	fx := fixtures(f)
	recipients := []Recipient{
		{Certificate: fx.recipientCert, Key: fx.recipientKey},
		{Certificate: fx.vectorCA, Key: fx.vectorKey},
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		env, perr := Parse(der)
		content, c, err := Decrypt(der, recipients, DecryptOptions{AllowDES: true, Rand: &fixedReader{n: 1}})
		if perr != nil {
			if !errors.Is(perr, ErrMalformed) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v, Decrypt error %v", perr, err)
			}
			return
		}
		if c != env.Cipher {
			t.Fatalf("cipher %v != %v", c, env.Cipher)
		}
		switch {
		case err == nil:
			if len(content) >= len(der) {
				t.Fatalf("content %d bytes from %d bytes of input", len(content), len(der))
			}
		case err == ErrDecrypt, errors.Is(err, ErrUnsupportedAlgorithm), errors.Is(err, ErrNoRecipient):
		case errors.Is(err, ErrDecrypt):
			t.Fatalf("wrapped ErrDecrypt: %v", err)
		default:
			t.Fatalf("unexpected error %#v", err)
		}
		if content != nil && err != nil {
			t.Fatal("content with an error")
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzEnvelope when
// CMS_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("CMS_WRITE_CORPUS") != "1" {
		t.Skip("set CMS_WRITE_CORPUS=1 to regenerate the seed corpus")
	}
	f := fixtures(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzEnvelope")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	write := func(name string, der []byte) {
		data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(der)) + ")\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	vec, err := os.ReadFile(filepath.Join("testdata", "micromdm", "PKCSReq.envelope.der"))
	require.NoError(t, err)
	write("vector-pkcsreq-3des-pkcs1", vec)
	ndes, err := os.ReadFile(filepath.Join("testdata", "micromdm", "CertRep_NoCertificatesForSigners.der"))
	require.NoError(t, err)
	p7, err := pkcs7.Parse(ndes)
	require.NoError(t, err)
	write("vector-ndes-aes128-oaep", p7.Content)

	content := bytes.Repeat([]byte("csr!"), 20)
	to := []*x509.Certificate{f.recipientCert}
	for i, c := range allCiphers {
		kt := allTransports[i%len(allTransports)]
		der, err := Encrypt(nil, content, to, c, kt)
		require.NoError(t, err)
		write(fmt.Sprintf("roundtrip-%s-%s", c, kt), der)
		if c == AES256CBC {
			write(fmt.Sprintf("roundtrip-%s-%s-indefinite", c, kt), toIndefinite(t, der))
		}
	}
	der, err := EncryptWithOptions(nil, content, []*x509.Certificate{f.otherCert, f.recipientCert}, AES128CBC, RSAOAEPSHA256, EncryptOptions{SubjectKeyID: true})
	require.NoError(t, err)
	write("roundtrip-ski-two-recipients", der)
	write("bad-padding-aes128", envelopeFor(t, f.recipientCert, AES128CBC, RSAOAEPSHA1, bytes.Repeat([]byte{0x11}, 32)))
}
