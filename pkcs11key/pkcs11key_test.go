package pkcs11key_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/cms"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/internal/softhsmtest"
	"github.com/scepkit/scepkit/pkcs11key"
	"github.com/stretchr/testify/require"
)

func openToken(t *testing.T) *pkcs11key.Token {
	t.Helper()
	st := softhsmtest.New(t)
	tok, err := pkcs11key.Open(pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
	require.NoError(t, err)
	t.Cleanup(func() { tok.Close() })
	return tok
}

func TestOpenRefuses(t *testing.T) {
	st := softhsmtest.New(t)
	cases := []struct {
		name string
		c    pkcs11key.Config
		is   error
		code pkcs11.Error // the module's error, through errors.As; zero: none checked
	}{
		{"no module", pkcs11key.Config{TokenLabel: st.Label, PIN: st.PIN}, pkcs11key.ErrConfig, 0},
		{"no token", pkcs11key.Config{Module: st.Module, PIN: st.PIN}, pkcs11key.ErrConfig, 0},
		{"two selectors", pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, TokenSerial: "1", PIN: st.PIN}, pkcs11key.ErrConfig, 0},
		{"one session", pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN, MaxSessions: 1}, pkcs11key.ErrConfig, 0},
		{"unknown token", pkcs11key.Config{Module: st.Module, TokenLabel: "no-such-token", PIN: st.PIN}, pkcs11key.ErrTokenNotFound, 0},
		{"unknown serial", pkcs11key.Config{Module: st.Module, TokenSerial: "no-such-serial", PIN: st.PIN}, pkcs11key.ErrTokenNotFound, 0},
		{"wrong PIN", pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: "0000"}, nil, pkcs11.CKR_PIN_INCORRECT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := pkcs11key.Open(tc.c)
			if tok != nil {
				tok.Close()
			}
			require.Error(t, err)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			if tc.code != 0 {
				var code pkcs11.Error
				require.ErrorAs(t, err, &code)
				require.Equal(t, tc.code, code, err.Error())
			}
		})
	}
}

func TestKeyLookup(t *testing.T) {
	tok := openToken(t)
	_, err := tok.Key("absent")
	require.ErrorIs(t, err, pkcs11key.ErrKeyNotFound)
	made, err := tok.GenerateKey("ca", pkcs11key.ECDSAP256)
	require.NoError(t, err)
	_, err = tok.GenerateKey("ca", pkcs11key.ECDSAP256)
	require.Error(t, err, "a second key under one label")
	found, err := tok.Key("ca")
	require.NoError(t, err)
	require.True(t, found.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(made.Public()))
	_, err = found.Decrypt(rand.Reader, []byte{1}, nil)
	require.ErrorIs(t, err, pkcs11key.ErrNotRSA)
}

// TestCAInToken: the built-in CA with its key in the token issues certificates and
// CRLs; the key cannot be written out.
func TestCAInToken(t *testing.T) {
	tok := openToken(t)
	for _, kt := range []pkcs11key.KeyType{pkcs11key.RSA2048, pkcs11key.ECDSAP256, pkcs11key.ECDSAP384} {
		t.Run(kt.String(), func(t *testing.T) {
			ctx := context.Background()
			key, err := tok.GenerateKey("ca-"+kt.String(), kt)
			require.NoError(t, err)
			ca, err := catemplate.NewCA(catemplate.CAOptions{Signer: key, Subject: pkix.Name{CommonName: "token CA"}})
			require.NoError(t, err)
			require.NoError(t, ca.Certificate.CheckSignatureFrom(ca.Certificate))

			leafKey, err := tok.GenerateKey("leaf-"+kt.String(), pkcs11key.ECDSAP256)
			require.NoError(t, err)
			serial, err := catemplate.RandomSerial(nil)
			require.NoError(t, err)
			now := time.Now()
			cert, err := ca.Sign(ctx, &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "device"},
				NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, leafKey.Public())
			require.NoError(t, err)
			require.NoError(t, cert.CheckSignatureFrom(ca.Certificate))

			require.NoError(t, ca.Revoke(cert.SerialNumber, 1, now))
			der, err := ca.CRL(ctx, now.Add(24*time.Hour))
			require.NoError(t, err)
			crl, err := x509.ParseRevocationList(der)
			require.NoError(t, err)
			require.NoError(t, crl.CheckSignatureFrom(ca.Certificate))
			require.Len(t, crl.RevokedCertificateEntries, 1)
			require.Zero(t, crl.RevokedCertificateEntries[0].SerialNumber.Cmp(cert.SerialNumber))

			_, err = x509.MarshalPKCS8PrivateKey(key)
			require.Error(t, err)
			require.ErrorIs(t, catemplate.SaveCA(t.TempDir(), ca), catemplate.ErrKeyNotExportable)
		})
	}
}

// TestRADecryptInToken: a request envelope addressed to an RA whose key is in the
// token decrypts with RSA PKCS#1 v1.5 and RSA-OAEP key transport (SHA-1; SHA-256
// where the token implements it), and every tampered envelope fails alike.
func TestRADecryptInToken(t *testing.T) {
	tok := openToken(t)
	caKey, err := tok.GenerateKey("ca", pkcs11key.RSA2048)
	require.NoError(t, err)
	ca, err := catemplate.NewCA(catemplate.CAOptions{Signer: caKey})
	require.NoError(t, err)
	sk, err := tok.GenerateKey("ra-sign", pkcs11key.ECDSAP256)
	require.NoError(t, err)
	ek, err := tok.GenerateKey("ra-encrypt", pkcs11key.RSA2048)
	require.NoError(t, err)
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{SigningKey: sk, EncryptionKey: ek})
	require.NoError(t, err)
	rcpt := []cms.Recipient{{Certificate: ra.EncryptionCertificate, Key: ra.Decrypter}}
	content := []byte("a certificate request, say")

	for _, kt := range []cms.KeyTransport{cms.RSAPKCS1v15, cms.RSAOAEPSHA1, cms.RSAOAEPSHA256} {
		for _, cc := range []cms.ContentCipher{cms.AES256CBC, cms.AES128CBC, cms.DESEDE3CBC} {
			t.Run(kt.String()+"/"+cc.String(), func(t *testing.T) {
				der, err := cms.Encrypt(rand.Reader, content, []*x509.Certificate{ra.EncryptionCertificate}, cc, kt)
				require.NoError(t, err)
				got, gotCipher, err := cms.Decrypt(der, rcpt, cms.DecryptOptions{})
				if kt == cms.RSAOAEPSHA256 && err != nil {
					// SoftHSM2 2.6 implements RSA-OAEP with SHA-1 only (CKR_ARGUMENTS_BAD
					// otherwise); a token's refusal is the uniform decryption failure.
					require.ErrorIs(t, err, cms.ErrDecrypt)
					t.Log("this token does not implement RSA-OAEP with SHA-256")
					return
				}
				require.NoError(t, err)
				require.Equal(t, content, got)
				require.Equal(t, cc, gotCipher)

				env, err := cms.Parse(der)
				require.NoError(t, err)
				env.Recipients[0].EncryptedKey[20] ^= 0x01
				got, err = env.Decrypt(rcpt, cms.DecryptOptions{})
				if kt == cms.RSAPKCS1v15 && err == nil {
					// Implicit rejection: a PKCS#1 v1.5 key that does not unpad becomes a
					// random content key, so that the token's answer reveals nothing; the
					// content then unpads by chance about once in 256 tries. What must
					// hold is that it is not the content.
					require.NotEqual(t, content, got)
					return
				}
				require.ErrorIs(t, err, cms.ErrDecrypt)
			})
		}
	}
}

// TestScepclientWithKeysInToken: scepclient enrolls, is refused, and renews at a
// gateway whose CA key and RA keys (signing and decryption) are all in the token.
func TestScepclientWithKeysInToken(t *testing.T) {
	tok := openToken(t)
	caKey, err := tok.GenerateKey("ca", pkcs11key.RSA2048)
	require.NoError(t, err)
	ca, err := catemplate.NewCA(catemplate.CAOptions{Signer: caKey, Subject: pkix.Name{CommonName: "token CA"}})
	require.NoError(t, err)
	sk, err := tok.GenerateKey("ra-sign", pkcs11key.RSA2048)
	require.NoError(t, err)
	ek, err := tok.GenerateKey("ra-encrypt", pkcs11key.RSA2048)
	require.NoError(t, err)
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{SigningKey: sk, EncryptionKey: ek})
	require.NoError(t, err)
	env, err := crptest.New(crptest.Options{CA: ca, RA: ra, Legacy: true})
	require.NoError(t, err)
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	url := ts.URL + "/scep"

	dev := scepclienttest.NewDevice(t)
	ch, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	out, err := dev.Enroll(url, "alice@example.com", ch)
	require.NoError(t, err, out)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca.Certificate))
	require.Equal(t, 1, env.Issuer.Count())

	out, err = scepclienttest.NewDevice(t).Enroll(url, "bob@example.com", "not-a-challenge")
	require.Error(t, err, out)
	require.Contains(t, out, "badRequest")
	require.Equal(t, 1, env.Issuer.Count(), "no certificate for the refusal")

	out, err = dev.Enroll(url, "alice@example.com", "")
	require.NoError(t, err, out)
	require.Equal(t, 2, env.Issuer.Count(), "renewed")
	renewed, err := dev.Certificate()
	require.NoError(t, err)
	require.NoError(t, renewed.CheckSignatureFrom(ca.Certificate))
	require.NotEqual(t, 0, renewed.SerialNumber.Cmp(cert.SerialNumber))

	// The CRL is signed in the token too, and lists the revoked certificate.
	require.NoError(t, ca.Revoke(cert.SerialNumber, 4, time.Now()))
	der, err := env.RP.CRL(context.Background())
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(ca.Certificate))
	require.True(t, listed(crl, cert.SerialNumber))
}

func listed(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}
