//go:build cgo

package pkcs11key_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/cms"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/internal/softhsmtest"
	"github.com/scepkit/scepkit/pkcs11key"
	"github.com/stretchr/testify/assert"
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
		{"negative timeout", pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN, Timeout: -time.Second}, pkcs11key.ErrConfig, 0},
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

// TestSignOptions: Sign honours its options as crypto/rsa and crypto/ecdsa do, and
// refuses (ErrOptions) what it cannot honour: a digest whose length is not its hash's,
// a hash the token is not given a DigestInfo for, PSS without a hash, no options. The
// token signed a wrong-length digest and an MD5 or SHA3 digest without error, with
// PKCS#1 v1.5 signatures that verify for no message, and nil options panicked.
func TestSignOptions(t *testing.T) {
	tok := openToken(t)
	rk, err := tok.GenerateKey("sign-rsa", pkcs11key.RSA2048)
	require.NoError(t, err)
	ek, err := tok.GenerateKey("sign-ec", pkcs11key.ECDSAP256)
	require.NoError(t, err)
	d256 := sha256.Sum256([]byte("a certificate, say"))
	d384 := sha512.Sum384([]byte("a certificate, say"))
	pss := func(h crypto.Hash, salt int) *rsa.PSSOptions { return &rsa.PSSOptions{Hash: h, SaltLength: salt} }
	cases := []struct {
		name   string
		key    *pkcs11key.Key
		digest []byte
		opts   crypto.SignerOpts
		ok     bool
	}{
		{"RSA SHA-256", rk, d256[:], crypto.SHA256, true},
		{"RSA SHA-384", rk, d384[:], crypto.SHA384, true},
		{"RSA no hash (the digest signed as it is)", rk, d256[:], crypto.Hash(0), true},
		{"RSA SHA-256 with a 20-byte digest", rk, d256[:20], crypto.SHA256, false},
		{"RSA SHA-1 with a 32-byte digest", rk, d256[:], crypto.SHA1, false},
		{"RSA SHA-384 with a 32-byte digest", rk, d256[:], crypto.SHA384, false},
		{"RSA MD5", rk, d256[:16], crypto.MD5, false},
		{"RSA SHA3-256", rk, d256[:], crypto.SHA3_256, false},
		{"RSA SHA-512/256", rk, d256[:], crypto.SHA512_256, false},
		{"RSA nil options", rk, d256[:], nil, false},
		{"PSS SHA-256", rk, d256[:], pss(crypto.SHA256, rsa.PSSSaltLengthEqualsHash), true},
		{"PSS SHA-256 salt 10", rk, d256[:], pss(crypto.SHA256, 10), true},
		{"PSS SHA-256 with a 20-byte digest", rk, d256[:20], pss(crypto.SHA256, rsa.PSSSaltLengthEqualsHash), false},
		{"PSS without a hash", rk, d256[:], pss(0, rsa.PSSSaltLengthEqualsHash), false},
		{"PSS salt length -5", rk, d256[:], pss(crypto.SHA256, -5), false},
		{"PSS salt length auto", rk, d256[:], pss(crypto.SHA256, rsa.PSSSaltLengthAuto), false},
		{"PSS nil *rsa.PSSOptions", rk, d256[:], (*rsa.PSSOptions)(nil), false},
		{"ECDSA nil *rsa.PSSOptions", ek, d256[:], (*rsa.PSSOptions)(nil), false},
		{"ECDSA SHA-256", ek, d256[:], crypto.SHA256, true},
		{"ECDSA SHA-256 with a 20-byte digest", ek, d256[:20], crypto.SHA256, false},
		{"ECDSA SHA-256 with a 48-byte digest", ek, d384[:], crypto.SHA256, false},
		{"ECDSA nil options", ek, d256[:], nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var sig []byte
			var err error
			require.NotPanics(t, func() { sig, err = tc.key.Sign(rand.Reader, tc.digest, tc.opts) })
			if !tc.ok {
				require.ErrorIs(t, err, pkcs11key.ErrOptions, "signed: %x", sig)
				return
			}
			require.NoError(t, err)
			switch pub := tc.key.Public().(type) {
			case *rsa.PublicKey:
				if o, ok := tc.opts.(*rsa.PSSOptions); ok {
					require.NoError(t, rsa.VerifyPSS(pub, o.Hash, tc.digest, sig, o))
				} else {
					require.NoError(t, rsa.VerifyPKCS1v15(pub, tc.opts.HashFunc(), tc.digest, sig))
				}
			case *ecdsa.PublicKey:
				require.True(t, ecdsa.VerifyASN1(pub, tc.digest, sig))
			}
		})
	}
}

// TestDecryptOAEPOptions: Decrypt honours its RSA-OAEP options or refuses them
// (ErrOptions). SoftHSM2 ignores the OAEP label: a ciphertext made without one
// decrypted under the label "L", and one made with "L" decrypted under none, so
// Decrypt accepted a label it had not checked; labels are refused now (CMS key
// transport leaves it empty by default), as is OAEP without a hash.
func TestDecryptOAEPOptions(t *testing.T) {
	tok := openToken(t)
	k, err := tok.GenerateKey("oaep", pkcs11key.RSA2048)
	require.NoError(t, err)
	pub := k.Public().(*rsa.PublicKey)
	secret := []byte("0123456789abcdef0123456789abcdef")
	plain, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, secret, nil)
	require.NoError(t, err)
	labelled, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, secret, []byte("L"))
	require.NoError(t, err)
	cases := []struct {
		name string
		ct   []byte
		opts crypto.DecrypterOpts
		ok   bool
	}{
		{"SHA-1, no label", plain, &rsa.OAEPOptions{Hash: crypto.SHA1}, true},
		{"SHA-1, MGF1 SHA-1, no label", plain, &rsa.OAEPOptions{Hash: crypto.SHA1, MGFHash: crypto.SHA1}, true},
		{"SHA-1, empty label", plain, &rsa.OAEPOptions{Hash: crypto.SHA1, Label: []byte{}}, true},
		{"label asked of a ciphertext made without", plain, &rsa.OAEPOptions{Hash: crypto.SHA1, Label: []byte("L")}, false},
		{"label asked of a ciphertext made with it", labelled, &rsa.OAEPOptions{Hash: crypto.SHA1, Label: []byte("L")}, false},
		{"MGF1 hash other than the hash", plain, &rsa.OAEPOptions{Hash: crypto.SHA1, MGFHash: crypto.SHA256}, false},
		{"no hash", plain, &rsa.OAEPOptions{}, false},
		{"a crypto.Hash as options", plain, crypto.SHA1, false},
		{"nil *rsa.OAEPOptions", plain, (*rsa.OAEPOptions)(nil), false},
		{"nil *rsa.PKCS1v15DecryptOptions", plain, (*rsa.PKCS1v15DecryptOptions)(nil), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Decrypt(rand.Reader, tc.ct, tc.opts)
			if !tc.ok {
				require.ErrorIs(t, err, pkcs11key.ErrOptions, "decrypted to %q", got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, secret, got)
		})
	}
	// A ciphertext made with a label does not decrypt as one without.
	_, err = k.Decrypt(rand.Reader, labelled, &rsa.OAEPOptions{Hash: crypto.SHA1})
	require.Error(t, err)
}

// TestTimeout: with Config.Timeout, a token that stops answering (SoftHSM2 waiting
// for the locks another process holds on its files) fails Sign, Decrypt and Key with
// ErrTimeout within about that time, for every caller at once, also those waiting
// for a session (MaxSessions 3) and a PKCS#1 v1.5 decryption with SessionKeyLen
// (which must not answer random bytes as if it had decrypted); Close waits for a call
// in flight that long at most. Once the token answers again, the keys work.
func TestTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	st := softhsmtest.New(t)
	tok, err := pkcs11key.Open(pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN,
		MaxSessions: 3, Timeout: timeout})
	require.NoError(t, err)
	defer tok.Close()
	k, err := tok.GenerateKey("stall", pkcs11key.RSA2048)
	require.NoError(t, err)
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), make([]byte, 32))
	require.NoError(t, err)
	digest := sha256.Sum256([]byte("a certificate, say"))
	calls := map[string]func() ([]byte, error){
		"sign": func() ([]byte, error) { return k.Sign(rand.Reader, digest[:], crypto.SHA256) },
		"decrypt": func() ([]byte, error) {
			return k.Decrypt(rand.Reader, ct, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32})
		},
		"decrypt OAEP": func() ([]byte, error) { return k.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA1}) },
	}

	release := st.Stall(t)
	var wg sync.WaitGroup
	for name, call := range calls {
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				got, err := call()
				assert.ErrorIs(t, err, pkcs11key.ErrTimeout, "%s answered %d bytes", name, len(got))
				assert.Less(t, time.Since(start), timeout+2*time.Second, name)
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		_, err := tok.Key("stall")
		assert.ErrorIs(t, err, pkcs11key.ErrTimeout, "Key")
		assert.Less(t, time.Since(start), timeout+2*time.Second, "Key")
	}()
	wg.Wait()
	release()
	for name, call := range calls {
		if name == "decrypt OAEP" {
			continue // a PKCS#1 v1.5 ciphertext
		}
		_, err := call()
		require.NoError(t, err, "%s once the token answers again", name)
	}

	release = st.Stall(t)
	go calls["sign"]()
	time.Sleep(100 * time.Millisecond) // in the token
	start := time.Now()
	require.ErrorIs(t, tok.Close(), pkcs11key.ErrTimeout)
	require.Less(t, time.Since(start), timeout+2*time.Second)
	release()
}
