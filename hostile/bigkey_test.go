package hostile

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidChallengeAttr   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oversizedKeyBits   = 65536 // 80–170 ms per signature check; 256 Kbit took 2.8 s
	refusedExponent    = int64(1) << 31
	unsupportedSignerE = 1<<32 - 1
)

// fakeRSACSR builds a CSR for an RSA public key of bits bits (all ones) and exponent e,
// nobody's key, under a junk signature of the modulus' size: what a requester who
// wants the gateway to spend an RSA operation on a key of its choosing sends. It
// returns the CSR and the key's SubjectPublicKeyInfo.
func fakeRSACSR(t testing.TB, bits int, e int64, cn, challenge string) (csr, spki []byte) {
	t.Helper()
	n := new(big.Int).SetBytes(bytes.Repeat([]byte{0xff}, bits/8))
	pub := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(n)
			b.AddASN1Int64(e)
		})
	})
	spki = der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			algID(b, oidRSAEncryption, []byte{0x05, 0x00})
			b.AddASN1BitString(pub)
		})
	})
	name, err := asn1.Marshal(pkix.Name{CommonName: cn}.ToRDNSequence())
	require.NoError(t, err)
	tbs := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			b.AddBytes(name)
			b.AddBytes(spki)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				if challenge == "" {
					return
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidChallengeAttr)
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(utf8String(challenge)) })
				})
			})
		})
	})
	csr = der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(tbs)
			algID(b, oidSHA256WithRSA, []byte{0x05, 0x00})
			b.AddASN1BitString(bytes.Repeat([]byte{0x7f}, bits/8))
		})
	})
	return csr, spki
}

// TestOversizedRequesterKeys: an RSA key a requester chooses is bounded
// (scep.MaxRSABits, an exponent crypto/rsa accepts) before any signature is checked
// with it, and refused badAlg. Before, the CSR's key was bounded only in the
// csr-signature step: a request under a recorded transactionID derived from a 256-Kbit
// key made the transaction-owner check verify the CSR with it first, 2.8 s of CPU per
// request, repeatable without end and without a challenge; a CSR key over the bound
// was answered badMessageCheck, and a signer exponent between 2^31 and 2^32
// badMessageCheck too (crypto/rsa refuses it). Nothing is issued, and the honest
// device enrolls after.
func TestOversizedRequesterKeys(t *testing.T) {
	keys()
	attackerSelf, err := scep.SelfSigned(attackerKey, pkix.Name{CommonName: "mallory"}, nil)
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		msg  func(t *testing.T, h *harness) wire
	}{
		{"a recorded transactionID derived from an oversized key", func(t *testing.T, h *harness) wire {
			csr, spki := fakeRSACSR(t, oversizedKeyBits, 65537, alice, "")
			sum := sha256.Sum256(spki)
			tid := hex.EncodeToString(sum[:])
			h.expectSuccess(t, h.message(t, spec{tid: tid}), h.self, deviceKey, deviceKey.Public())
			return h.message(t, spec{tid: tid, cert: attackerSelf, key: attackerKey, payload: csr})
		}},
		{"an oversized CSR key with a genuine challenge", func(t *testing.T, h *harness) wire {
			csr, _ := fakeRSACSR(t, 16384, 65537, alice, h.challenge(t, alice, aliceLaptop))
			return h.message(t, spec{payload: csr})
		}},
		{"a CSR key with an exponent of 2^31", func(t *testing.T, h *harness) wire {
			csr, _ := fakeRSACSR(t, 2048, refusedExponent, alice, h.challenge(t, alice, aliceLaptop))
			return h.message(t, spec{payload: csr})
		}},
		{"a CSR key with an even exponent", func(t *testing.T, h *harness) wire {
			csr, _ := fakeRSACSR(t, 2048, 65536, alice, h.challenge(t, alice, aliceLaptop))
			return h.message(t, spec{payload: csr})
		}},
		{"a signer key with an exponent of 2^32-1", func(t *testing.T, h *harness) wire {
			n := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 2048), big.NewInt(1))
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: alice},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
			certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsa.PublicKey{N: n, E: unsupportedSignerE}, attackerKey)
			require.NoError(t, err)
			cert, err := x509.ParseCertificate(certDER)
			require.NoError(t, err)
			return h.message(t, spec{cert: cert, key: attackerKey})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, crptest.Options{})
			w := c.msg(t, h)
			before := h.env.Issuer.Count()
			code, ctype, body := h.send(t, w)
			h.check(t, w, code, ctype, body, failure(scep.BadAlg))
			require.Equal(t, before, h.env.Issuer.Count(), "no certificate")
			require.NotContains(t, h.logs.String(), "step=transaction-owner", "no check ran with the key before it was bounded")
			h.enrollGood(t)
		})
	}
}
