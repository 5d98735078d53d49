package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// opensslPath returns the openssl binary, skipping the test when it is
// missing, except under CI=true where that is a failure.
func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl not found under CI=true: %v", err)
		}
		t.Skip("openssl not found")
	}
	return p
}

func runOpenSSL(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), "openssl %v:\n%s", args, out.String())
}

func TestOpenSSLDecryptsOurs(t *testing.T) {
	t.Parallel()
	bin := opensslPath(t)
	f := fixtures(t)
	content := make([]byte, 2000)
	_, _ = rand.Read(content)
	for _, c := range []ContentCipher{AES128CBC, AES192CBC, AES256CBC, DESEDE3CBC} {
		for _, kt := range allTransports {
			for _, ski := range []bool{false, true} {
				name := c.String() + "/" + kt.String()
				if ski {
					name += "/SKI"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					dir := t.TempDir()
					der, err := EncryptWithOptions(nil, content, []*x509.Certificate{f.otherCert, f.recipientCert}, c, kt, EncryptOptions{SubjectKeyID: ski})
					require.NoError(t, err)
					in, out := filepath.Join(dir, "env.der"), filepath.Join(dir, "out.bin")
					require.NoError(t, os.WriteFile(in, der, 0o600))
					runOpenSSL(t, bin, "cms", "-decrypt", "-inform", "DER", "-in", in, "-binary", "-out", out,
						"-inkey", filepath.Join("testdata", "recipient.key.pem"),
						"-recip", filepath.Join("testdata", "recipient.cert.pem"))
					got, err := os.ReadFile(out)
					require.NoError(t, err)
					require.Equal(t, content, got)
				})
			}
		}
	}
}

func TestWeDecryptOpenSSL(t *testing.T) {
	t.Parallel()
	bin := opensslPath(t)
	f := fixtures(t)
	content := make([]byte, 3000)
	_, _ = rand.Read(content)
	tests := []struct {
		name  string
		flags []string
		c     ContentCipher
		kt    KeyTransport
	}{
		{"aes256", []string{"-aes256"}, AES256CBC, RSAPKCS1v15},
		{"aes128", []string{"-aes128"}, AES128CBC, RSAPKCS1v15},
		{"aes192", []string{"-aes192"}, AES192CBC, RSAPKCS1v15},
		{"des3", []string{"-des3"}, DESEDE3CBC, RSAPKCS1v15},
		{"aes256 oaep", []string{"-aes256", "-keyopt", "rsa_padding_mode:oaep"}, AES256CBC, RSAOAEPSHA1},
		{"aes128 oaep sha256", []string{"-aes128", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"}, AES128CBC, RSAOAEPSHA256},
		{"des3 oaep", []string{"-des3", "-keyopt", "rsa_padding_mode:oaep"}, DESEDE3CBC, RSAOAEPSHA1},
		{"aes256 by SKI", []string{"-aes256", "-keyid"}, AES256CBC, RSAPKCS1v15},
		{"aes256 BER streamed (indefinite lengths, segmented content)", []string{"-aes256", "-stream"}, AES256CBC, RSAPKCS1v15},
		{"des3 oaep sha256 BER streamed", []string{"-des3", "-stream", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"}, DESEDE3CBC, RSAOAEPSHA256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			in, out := filepath.Join(dir, "content.bin"), filepath.Join(dir, "env.der")
			require.NoError(t, os.WriteFile(in, content, 0o600))
			// -keyopt applies to the -recip before it.
			var cipherFlags, keyopts []string
			for i := 0; i < len(tc.flags); i++ {
				if tc.flags[i] == "-keyopt" {
					keyopts = append(keyopts, tc.flags[i], tc.flags[i+1])
					i++
					continue
				}
				cipherFlags = append(cipherFlags, tc.flags[i])
			}
			args := append([]string{"cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, "-out", out}, cipherFlags...)
			args = append(args, "-recip", filepath.Join("testdata", "other.cert.pem"))
			args = append(args, keyopts...)
			args = append(args, "-recip", filepath.Join("testdata", "recipient.cert.pem"))
			args = append(args, keyopts...)
			runOpenSSL(t, bin, args...)
			der, err := os.ReadFile(out)
			require.NoError(t, err)
			env, err := Parse(der)
			require.NoError(t, err)
			require.Len(t, env.Recipients, 2)
			require.Equal(t, tc.kt, env.Recipients[1].KeyTransport)
			got, c, err := Decrypt(der, f.us(), DecryptOptions{})
			require.NoError(t, err)
			require.Equal(t, tc.c, c)
			require.Equal(t, content, got)
		})
	}
}
