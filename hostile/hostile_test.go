// Package hostile sends hostile input to a running scepkit gateway (scep.Server and the
// CRP assembled by crptest, behind the quickstart's http.Server on 127.0.0.1) and checks
// that every case gets its exact answer, that nothing panics, that no certificate is
// issued, and that the gateway enrolls an honest device right afterwards.
//
// The cases are what RFC 8894 and RFC 5652 say a server must refuse, and failures seen
// in other SCEP implementations, each named with its public source where there is one
// (an issue, a pull request, an advisory). It holds tests only.
package hostile

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// hcase is one hostile input.
type hcase struct {
	name string
	// build makes the request; anything it needs beforehand (an enrollment to renew, a
	// revoked certificate) happens here, before the issued-certificate count is taken.
	build func(t *testing.T, h *harness) wire
	want  want
	// oracle marks the decryption failures that must all look alike, so that no
	// padding oracle (Bleichenbacher's attack on PKCS#1 v1.5) and no CBC-unpadding
	// crash (go.mozilla.org/pkcs7 up to v0.10.0) can be told apart: same status,
	// content type, failInfo and reply length.
	oracle bool
	// exchange, when set, replaces send-and-check (the slow-loris client).
	exchange func(t *testing.T, h *harness)
}

func post(b []byte) wire { return wire{body: b} }

func getMessage(msg []byte) string {
	return "operation=PKIOperation&message=" + url.QueryEscape(base64.StdEncoding.EncodeToString(msg))
}

// envelopeWith builds a PKCSReq around an envelope made by mk from a good CSR.
func envelopeWith(mk func(t *testing.T, h *harness, csr []byte) []byte) func(t *testing.T, h *harness) wire {
	return func(t *testing.T, h *harness) wire {
		return h.message(t, spec{envelope: mk(t, h, h.goodCSR(t))})
	}
}

// withCSR builds a PKCSReq carrying csr(t, h).
func withCSR(csr func(t *testing.T, h *harness) []byte) func(t *testing.T, h *harness) wire {
	return func(t *testing.T, h *harness) wire { return h.message(t, spec{payload: csr(t, h)}) }
}

// withChallenge builds a PKCSReq from the honest device whose CSR carries ch(t, h).
func withChallenge(ch func(t *testing.T, h *harness) string) func(t *testing.T, h *harness) wire {
	return withCSR(func(t *testing.T, h *harness) []byte {
		return csrFor(t, deviceKey, pkix.Name{CommonName: alice}, ch(t, h))
	})
}

// renewal builds a RenewalReq for alice signed by cert(t, h) with the device key.
func renewal(cert func(t *testing.T, h *harness) *x509.Certificate) func(t *testing.T, h *harness) wire {
	return func(t *testing.T, h *harness) wire {
		c := cert(t, h)
		return h.message(t, spec{typ: "17", cert: c, key: deviceKey,
			payload: csrFor(t, deviceKey, pkix.Name{CommonName: alice}, "")})
	}
}

func selfSigned(t testing.TB, key crypto.Signer, cn string) *x509.Certificate {
	c, err := scep.SelfSigned(key, pkix.Name{CommonName: cn}, nil)
	require.NoError(t, err)
	return c
}

func cases() []hcase {
	now := time.Now()
	return []hcase{
		// ---- HTTP layer ----
		{name: "garbage DER", want: status(400), build: func(t *testing.T, h *harness) wire {
			return post([]byte("this is not DER at all"))
		}},
		{name: "truncated DER", want: status(400), build: func(t *testing.T, h *harness) wire {
			w := h.message(t, spec{})
			return post(w.body[:len(w.body)/2])
		}},
		{name: "truncated by one byte", want: status(400), build: func(t *testing.T, h *harness) wire {
			w := h.message(t, spec{})
			return post(w.body[:len(w.body)-1])
		}},
		{name: "empty body", want: status(400), build: func(t *testing.T, h *harness) wire {
			return wire{body: []byte{}}
		}},
		{name: "deeply nested indefinite-length BER", want: status(400), build: func(t *testing.T, h *harness) wire {
			return post(bytes.Repeat([]byte{0x30, 0x80}, 50000)) // 100 KB, under the body limit
		}},
		{name: "oversized body (413)", want: status(413), build: func(t *testing.T, h *harness) wire {
			// Refused whole, never parsed truncated (servers that read the body through
			// io.LimitReader parse the truncated prefix).
			w := h.message(t, spec{})
			return post(append(w.body, make([]byte, scep.DefaultMaxBodyBytes)...))
		}},
		{name: "oversized chunked body without Content-Length (413)", want: status(413), build: func(t *testing.T, h *harness) wire {
			return wire{body: make([]byte, scep.DefaultMaxBodyBytes+1), chunked: true}
		}},
		{name: "oversized GET query (414)", want: status(414), build: func(t *testing.T, h *harness) wire {
			return wire{method: http.MethodGet, query: "operation=PKIOperation&message=" + strings.Repeat("A", scep.DefaultMaxQueryBytes)}
		}},
		{name: "GET with two message parameters", want: status(400), build: func(t *testing.T, h *harness) wire {
			w := h.message(t, spec{})
			q := getMessage(w.body)
			return wire{method: http.MethodGet, query: q + "&" + strings.TrimPrefix(q, "operation=PKIOperation&")}
		}},
		{name: "POST with two operation parameters", want: status(400), build: func(t *testing.T, h *harness) wire {
			// The first would win while a proxy in front may read the last.
			return wire{query: "operation=PKIOperation&operation=GetCACaps", body: h.message(t, spec{}).body}
		}},
		{name: "POST naming operation twice, once percent-encoded", want: status(400), build: func(t *testing.T, h *harness) wire {
			// url.ParseQuery, and proxies, decode the name: two operations.
			return wire{query: "%6Fperation=GetCACaps&operation=PKIOperation", body: h.message(t, spec{}).body}
		}},
		{name: "GET naming message twice, once percent-encoded", want: status(400), build: func(t *testing.T, h *harness) wire {
			w := h.message(t, spec{})
			q := getMessage(w.body)
			return wire{method: http.MethodGet, query: q + "&%6Dessage=" + strings.TrimPrefix(q, "operation=PKIOperation&message=")}
		}},
		{name: "GET with two operation parameters", want: status(400), build: func(t *testing.T, h *harness) wire {
			w := h.message(t, spec{})
			return wire{method: http.MethodGet, query: "operation=GetCACaps&" + getMessage(w.body)}
		}},
		{name: "GET message that is not base64", want: status(400), build: func(t *testing.T, h *harness) wire {
			return wire{method: http.MethodGet, query: "operation=PKIOperation&message=%25%25%25%7B%7D"}
		}},
		{name: "GET garbage DER", want: status(400), build: func(t *testing.T, h *harness) wire {
			return wire{method: http.MethodGet, query: getMessage([]byte("garbage"))}
		}},
		{name: "PKIOperation by PUT (wrong method)", want: status(405), build: func(t *testing.T, h *harness) wire {
			return wire{method: http.MethodPut, body: h.message(t, spec{}).body}
		}},
		{name: "GetCACaps by POST (wrong method)", want: status(405), build: func(t *testing.T, h *harness) wire {
			return wire{query: "operation=GetCACaps", body: []byte("x")}
		}},
		{name: "unknown operation", want: status(400), build: func(t *testing.T, h *harness) wire {
			return wire{method: http.MethodGet, query: "operation=GetEverything"}
		}},
		{name: "no operation", want: status(400), build: func(t *testing.T, h *harness) wire {
			return wire{method: http.MethodGet, query: "message=x"}
		}},
		{name: "slow-loris headers (quickstart ReadHeaderTimeout)", exchange: slowLoris},

		// ---- SCEP attributes: an unknown messageType (it crashed micromdm's
		// scepserver 2.1.0 through a panicking String method), UpdateReq (step-ca
		// signed it without checking the challenge until smallstep/certificates#2602)
		// and a CertRep sent to the server are refused before anything is decrypted ----
		{name: "messageType 99", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "99"})
		}},
		{name: "messageType non-numeric", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "PKCSReq"})
		}},
		{name: "messageType empty", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			tid, nonce := newTID(), randBytes(16)
			w := h.message(t, spec{attrs: scepAttrs("", tid, nonce)})
			w.tid, w.nonce = tid, nonce
			return w
		}},
		{name: "messageType negative", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "-19"})
		}},
		{name: "messageType beyond int64", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "99999999999999999999999"})
		}},
		{name: "messageType missing", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			tid, nonce := newTID(), randBytes(16)
			w := h.message(t, spec{attrs: scepAttrs("19", tid, nonce)[1:]})
			w.tid, w.nonce = tid, nonce
			return w
		}},
		{name: "messageType duplicated", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			tid := newTID()
			w := h.message(t, spec{attrs: append(scepAttrs("19", tid, randBytes(16)), attr{oidMessageType, [][]byte{printable("19")}})})
			w.tid = tid
			return w
		}},
		{name: "CertRep sent to the server", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "3"})
		}},
		{name: "UpdateReq (18)", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "18"})
		}},
		{name: "transactionID missing", want: status(400), build: func(t *testing.T, h *harness) wire {
			a := scepAttrs("19", "x", randBytes(16))
			return h.message(t, spec{attrs: []attr{a[0], a[2]}})
		}},
		{name: "transactionID duplicated", want: status(400), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{attrs: append(scepAttrs("19", newTID(), randBytes(16)), attr{oidTransactionID, [][]byte{printable(newTID())}})})
		}},
		{name: "transactionID as UTF8String", want: status(400), build: func(t *testing.T, h *harness) wire {
			a := scepAttrs("19", "x", randBytes(16))
			a[1] = attr{oidTransactionID, [][]byte{utf8String(newTID())}}
			return h.message(t, spec{attrs: a})
		}},
		{name: "transactionID with a non-PrintableString character", want: status(400), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tid: "tid_with_underscore"})
		}},
		{name: "transactionID of 300 characters", want: status(400), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tid: strings.Repeat("7", 300)})
		}},
		{name: "senderNonce of 3 bytes", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{nonce: []byte{1, 2, 3}})
		}},
		{name: "senderNonce of 33 bytes", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{nonce: randBytes(33)})
		}},
		{name: "senderNonce missing", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			tid := newTID()
			w := h.message(t, spec{attrs: scepAttrs("19", tid, nil)[:2]})
			w.tid = tid
			return w
		}},
		{name: "senderNonce not an OCTET STRING", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			tid := newTID()
			a := scepAttrs("19", tid, nil)
			a[2] = attr{oidSenderNonce, [][]byte{printable("0123456789abcdef")}}
			w := h.message(t, spec{attrs: a})
			w.tid = tid
			return w
		}},

		// ---- the signed layer ----
		{name: "signature does not verify", want: failure(scep.BadMessageCheck), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.flipSignature = true }})
		}},
		{name: "signed with another key than the signer certificate's", want: failure(scep.BadMessageCheck), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{cert: h.self, key: attackerKey})
		}},
		{name: "messageDigest does not match the content", want: failure(scep.BadMessageCheck), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.digestOverride = make([]byte, 32) }})
		}},
		{name: "contentType attribute differs from the content", want: failure(scep.BadMessageCheck), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.contentTypeAttr = oidEnvelopedData }})
		}},
		{name: "signer certificate missing", want: failure(scep.BadMessageCheck), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.omitCerts = true }})
		}},
		{name: "unparseable certificate in the SignedData", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.extraCerts = [][]byte{{0x30, 0x03, 0x02, 0x01, 0x00}} }})
		}},
		{name: "two SignerInfos", want: status(400), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.twoSigners = true }})
		}},
		{name: "SHA-1 digest with legacy off", want: failure(scep.BadAlg), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.hash = crypto.SHA1 }})
		}},
		{name: "MD5 digest", want: failure(scep.BadAlg), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{tweak: func(o *signOpts) { o.hash = crypto.MD5 }})
		}},
		{name: "BER indefinite-length, otherwise valid, wrong challenge", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			// Parsed all the way to the CRP (its refusal of the challenge proves it);
			// TestControls enrolls the same shape with a good challenge.
			w := h.message(t, spec{payload: csrFor(t, deviceKey, pkix.Name{CommonName: alice}, "hunter2")})
			w.body = indefinite(t, w.body)
			return w
		}},

		// ---- the envelope ----
		{name: "no envelope", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{noEnv: true})
		}},
		{name: "envelope that is not CMS", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{envelope: []byte("not an EnvelopedData")})
		}},
		{name: "single DES with legacy off", want: failure(scep.BadAlg), build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
			return desEnvelope(t, h.raEnc, csr)
		})},
		{name: "RC2 (hand-built envelope)", want: failure(scep.BadAlg), build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
			return rc2Envelope(t, h.raEnc, len(csr))
		})},
		{name: "IV of the wrong length", want: failure(scep.BadRequest), build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
			// Public structure, refused before any key is used: not an oracle.
			key := randBytes(32)
			return envelopedData(envOpts{to: h.raEnc, cipherOID: oidAES256CBC, params: octets(randBytes(8)),
				wrapped: wrapKey(t, h.raEnc, key), ciphertext: randBytes(len(csr) + 16 - len(csr)%16)})
		})},
		// Decryption failures: one answer for all, including an envelope that is not
		// for us (LibSCEP crashed on it: openxpki/openxpki#622).
		{name: "envelope encrypted to another RA", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				otherRA := selfSigned(t, otherKey, "scepkit demo RA") // same name, another key and serial
				return goodEnvelope(t, otherRA, csr)
			})},
		{name: "CBC padding byte 0x00", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				p := pad(csr, aes.BlockSize)
				p[len(p)-1] = 0
				return aesEnvelope(t, h.raEnc, p)
			})},
		{name: "CBC padding longer than the plaintext (0xff)", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				p := pad(csr, aes.BlockSize)
				p[len(p)-1] = 0xff
				return aesEnvelope(t, h.raEnc, p)
			})},
		{name: "CBC padding length 17 (over one block)", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				p := pad(csr, aes.BlockSize)
				p[len(p)-1] = aes.BlockSize + 1
				return aesEnvelope(t, h.raEnc, p)
			})},
		{name: "CBC padding bytes inconsistent", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				p := pad(csr, aes.BlockSize)
				if p[len(p)-1] < 2 {
					p[len(p)-1] = 2
				}
				p[len(p)-2] ^= 0x80
				return aesEnvelope(t, h.raEnc, p)
			})},
		{name: "ciphertext truncated mid-block", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				return bendCiphertext(t, h, csr, func(c []byte) []byte { return c[:len(c)-5] })
			})},
		{name: "ciphertext truncated by one block", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				return bendCiphertext(t, h, csr, func(c []byte) []byte { return c[:len(c)-aes.BlockSize] })
			})},
		{name: "ciphertext empty", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				return bendCiphertext(t, h, csr, func(c []byte) []byte { return []byte{} })
			})},
		{name: "last ciphertext block flipped", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				return bendCiphertext(t, h, csr, func(c []byte) []byte { c[len(c)-aes.BlockSize-1] ^= 0x01; return c })
			})},
		{name: "content key does not unwrap (random RSA block)", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				w := randBytes(256)
				w[0] = 0
				return envelopedData(envOpts{to: h.raEnc, cipherOID: oidAES256CBC, params: octets(randBytes(16)),
					wrapped: w, ciphertext: randBytes(len(csr) + 16 - len(csr)%16)})
			})},
		{name: "content key of the wrong length", want: failure(scep.BadMessageCheck), oracle: true,
			build: envelopeWith(func(t *testing.T, h *harness, csr []byte) []byte {
				return envelopedData(envOpts{to: h.raEnc, cipherOID: oidAES256CBC, params: octets(randBytes(16)),
					wrapped: wrapKey(t, h.raEnc, randBytes(16)), ciphertext: randBytes(len(csr) + 16 - len(csr)%16)})
			})},
		{name: "decrypts to something that is not a CSR", want: failure(scep.BadMessageCheck), oracle: true,
			build: func(t *testing.T, h *harness) wire {
				return h.message(t, spec{payload: bytes.Repeat([]byte("not a CSR "), 150)})
			}},

		// ---- the CSR: its signature is the proof of possession, and is verified ----
		{name: "CSR signature does not verify", want: failure(scep.BadMessageCheck), build: withCSR(func(t *testing.T, h *harness) []byte {
			c := h.goodCSR(t)
			c[len(c)-1] ^= 0x01
			return c
		})},
		// A CSR signature algorithm refused is badAlg (RFC 8894 §3.2.1.4: "unrecognized
		// or unsupported algorithm"), not an integrity failure.
		{name: "CSR signed with MD5", want: failure(scep.BadAlg), build: withCSR(func(t *testing.T, h *harness) []byte {
			return resignCSR(t, h.goodCSR(t), deviceKey, oidMD5WithRSA, crypto.MD5)
		})},
		{name: "CSR signed with SHA-224 (unknown to crypto/x509)", want: failure(scep.BadAlg), build: withCSR(func(t *testing.T, h *harness) []byte {
			return resignCSR(t, h.goodCSR(t), deviceKey, oidSHA224WithRSA, crypto.SHA224)
		})},
		{name: "CSR for another key than the signer's, without proof of possession", want: failure(scep.BadMessageCheck),
			build: withCSR(func(t *testing.T, h *harness) []byte {
				// The CSR names the attacker's key but was signed by the device: swap
				// the SubjectPublicKeyInfo (same length for two RSA-2048 keys).
				c := h.goodCSR(t)
				mine, err := x509.MarshalPKIXPublicKey(deviceKey.Public())
				require.NoError(t, err)
				theirs, err := x509.MarshalPKIXPublicKey(attackerKey.Public())
				require.NoError(t, err)
				require.Equal(t, len(mine), len(theirs))
				require.Equal(t, 1, bytes.Count(c, mine))
				return bytes.Replace(c, mine, theirs, 1)
			})},
		{name: "CSR without a challenge", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return ""
		})},

		// ---- the challenge (phases 1 and 2): signed, exp, aud and jti required, at
		// most one hour, used once ----
		{name: "JWT alg none", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil)
		})},
		{name: "JWT HS256 keyed with the MDM public key", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			pub := []byte(h.env.Challenges.Key.Public().(ed25519.PublicKey))
			return h.forge(t, jwt.SigningMethodHS256, pub, nil)
		})},
		{name: "JWT HS256 keyed with the MDM public key DER", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			pub, err := x509.MarshalPKIXPublicKey(h.env.Challenges.Key.Public())
			require.NoError(t, err)
			return h.forge(t, jwt.SigningMethodHS256, pub, nil)
		})},
		{name: "challenge for another gateway", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, func(_, c map[string]any) { c["aud"] = "other-gateway" })
		})},
		{name: "challenge without audience", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, func(_, c map[string]any) { delete(c, "aud") })
		})},
		{name: "challenge without expiry", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, func(_, c map[string]any) { delete(c, "exp") })
		})},
		{name: "challenge without jti", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, func(_, c map[string]any) { delete(c, "jti") })
		})},
		{name: "challenge from another issuer", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, func(_, c map[string]any) { c["iss"] = "other-mdm" })
		})},
		{name: "challenge with another typ", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, func(hdr, _ map[string]any) { hdr["typ"] = "JWT" })
		})},
		{name: "challenge expired", want: failure(scep.BadTime), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, setTimes(now.Add(-2*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)))
		})},
		{name: "challenge not yet valid", want: failure(scep.BadTime), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, setTimes(now.Add(10*time.Minute), now.Add(10*time.Minute), now.Add(70*time.Minute)))
		})},
		{name: "challenge lifetime over one hour", want: failure(scep.BadTime), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.mdmSigned(t, setTimes(now, now, now.Add(2*time.Hour)))
		})},
		{name: "challenge replayed", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			ch := h.challenge(t, alice, aliceLaptop)
			_, err := h.client.Enroll(context.Background(), csrFor(t, deviceKey, pkix.Name{CommonName: alice}, ch), deviceKey)
			require.NoError(t, err, "first use")
			return h.message(t, spec{payload: csrFor(t, deviceKey, pkix.Name{CommonName: alice}, ch)})
		}},
		{name: "challenge payload tampered", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			p := splitJWS(h.challenge(t, "bob@example.com", "bob-phone"))
			c := decodeSeg(t, p[1])
			c["sub"], c["dev"] = alice, aliceLaptop
			p[1] = encodeSeg(t, c)
			return toWire(strings.Join(p, "."))
		})},
		{name: "challenge signature stripped", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			p := splitJWS(h.challenge(t, alice, aliceLaptop))
			return toWire(p[0] + "." + p[1] + ".")
		})},
		{name: "challenge signed by an unknown key", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			require.NoError(t, err)
			return h.forge(t, jwt.SigningMethodEdDSA, k, nil)
		})},
		{name: "challenge of 5000 characters", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return strings.Repeat("A", 5000)
		})},
		{name: "user name that injects an RDN", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			// A directory user whose UPN carries ",O=Admins": the profile's subject
			// CN={{UserPrincipalName}} must stay one CN with that literal value, so a
			// CSR with the injected structure (CN and O) does not match it.
			upn := "eve@example.com,O=Admins"
			h.env.Users.Put(crp.User{User: profile.User{ID: upn, UserPrincipalName: upn, Email: "eve@example.com", UserName: "eve"}})
			h.env.Devices.Put(crp.Device{Device: profile.Device{ID: "eve-laptop", AADDeviceID: "eve-laptop", Name: "eve-laptop",
				SerialNumber: "SN-eve"}, UserID: upn, Compliant: true})
			ch := h.challenge(t, upn, "eve-laptop")
			return h.message(t, spec{payload: csrFor(t, deviceKey,
				pkix.Name{CommonName: "eve@example.com", Organization: []string{"Admins"}}, ch)})
		}},
		{name: "challenge of a disabled user", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.challenge(t, "mallory@example.com", "mallory-tablet")
		})},
		{name: "challenge for another user's device", want: failure(scep.BadRequest), build: withChallenge(func(t *testing.T, h *harness) string {
			return h.challenge(t, alice, "bob-phone")
		})},

		// ---- renewal: the signer must chain to our CA (micromdm/scep#117, #235) ----
		{name: "RenewalReq signed by a certificate of another CA", want: failure(scep.BadRequest), build: renewal(func(t *testing.T, h *harness) *x509.Certificate {
			other, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048,
				Subject: pkix.Name{CommonName: "scepkit demo CA", Organization: []string{"scepkit"}}}) // the same name as ours
			require.NoError(t, err)
			real := h.enrollGood(t)
			c, err := other.Sign(context.Background(), &x509.Certificate{SerialNumber: real.SerialNumber, Subject: real.Subject,
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}, deviceKey.Public())
			require.NoError(t, err)
			return c
		})},
		{name: "RenewalReq signed by an expired certificate", want: failure(scep.BadRequest), build: renewal(func(t *testing.T, h *harness) *x509.Certificate {
			serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
			der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial,
				Subject: pkix.Name{CommonName: alice}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
				h.ca, deviceKey.Public(), h.env.CA.Signer)
			require.NoError(t, err)
			c, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			// Recorded as issued here, so only its expiry refuses it.
			require.NoError(t, h.env.RP.Certificates.Add(context.Background(), &crp.IssuedCertificate{Certificate: c,
				UserID: alice, DeviceID: aliceLaptop, ProfileID: crptest.ProfileID}))
			return c
		})},
		{name: "RenewalReq signed by a revoked certificate", want: failure(scep.BadRequest), build: renewal(func(t *testing.T, h *harness) *x509.Certificate {
			c := h.enrollGood(t)
			require.NoError(t, h.env.CA.Revoke(c.SerialNumber, 1, time.Now()))
			return c
		})},
		{name: "RenewalReq signed by a self-signed certificate", want: failure(scep.BadRequest), build: renewal(func(t *testing.T, h *harness) *x509.Certificate {
			return h.self
		})},
		{name: "RenewalReq that changes the subject", want: failure(scep.BadRequest), build: func(t *testing.T, h *harness) wire {
			c := h.enrollGood(t)
			return h.message(t, spec{typ: "17", cert: c, key: deviceKey,
				payload: csrFor(t, deviceKey, pkix.Name{CommonName: "bob@example.com"}, "")})
		}},
		{name: "PKCSReq signed by an issued certificate, no challenge, other subject", want: failure(scep.BadRequest),
			build: func(t *testing.T, h *harness) wire {
				// A renewal-shaped PKCSReq without a challenge (it crashed
				// OmniTrustILM/core#1887): scepkit treats it as a renewal (RFC 8894 §3.3.1.2); with
				// the same subject it renews (TestControls), with another it is refused.
				c := h.enrollGood(t)
				return h.message(t, spec{cert: c, key: deviceKey,
					payload: csrFor(t, deviceKey, pkix.Name{CommonName: "bob@example.com"}, "")})
			}},

		// ---- GetCert and CertPoll: a poll must come from the key of the request it
		// polls, or it could fetch another device's certificate ----
		{name: "GetCert for a serial that does not exist", want: failure(scep.BadCertID), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "21", payload: issuerAndSerial(h.ca.RawSubject, big.NewInt(0x7fffffff))})
		}},
		{name: "GetCert for another issuer", want: failure(scep.BadCertID), build: func(t *testing.T, h *harness) wire {
			c := h.enrollGood(t)
			return h.message(t, spec{typ: "21", payload: issuerAndSerial(h.raSign.RawSubject, c.SerialNumber)})
		}},
		{name: "GetCert payload that is not an IssuerAndSerialNumber", want: failure(scep.BadMessageCheck), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "21", payload: []byte{0x30, 0x03, 0x02, 0x01, 0x01}})
		}},
		{name: "CertPoll for an unknown transaction", want: failure(scep.BadCertID), build: func(t *testing.T, h *harness) wire {
			return h.message(t, spec{typ: "20", payload: issuerAndSubject(h.ca.RawSubject, h.self.RawSubject)})
		}},
		{name: "CertPoll with another transaction's ID signed by a different key", want: failure(scep.BadCertID),
			build: func(t *testing.T, h *harness) wire {
				h.enrollGood(t) // the honest device's transaction exists and succeeded
				thief := selfSigned(t, attackerKey, alice)
				return h.message(t, spec{typ: "20", tid: deviceTID(t, deviceKey), cert: thief, key: attackerKey,
					payload: issuerAndSubject(h.ca.RawSubject, thief.RawSubject)})
			}},
	}
}

// bendCiphertext builds a correct AES-256-CBC envelope of csr and lets f change its
// ciphertext.
func bendCiphertext(t *testing.T, h *harness, csr []byte, f func([]byte) []byte) []byte {
	key, iv := randBytes(32), randBytes(16)
	blk, err := aes.NewCipher(key)
	require.NoError(t, err)
	ct := cbcEncrypt(t, blk, iv, pad(csr, aes.BlockSize))
	return envelopedData(envOpts{to: h.raEnc, cipherOID: oidAES256CBC, params: octets(iv),
		wrapped: wrapKey(t, h.raEnc, key), ciphertext: f(ct)})
}

// TestHostile sends every case to one running gateway.
func TestHostile(t *testing.T) {
	h := newHarness(t, crptest.Options{})
	h.enrollGood(t) // the gateway works before anything hostile
	oracle := map[string]answer{}
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			if tc.exchange != nil {
				before := h.env.Issuer.Count()
				tc.exchange(t, h)
				require.Equal(t, before, h.env.Issuer.Count(), "no certificate issued")
			} else {
				w := tc.build(t, h)
				before := h.env.Issuer.Count()
				code, ctype, body := h.send(t, w)
				a := h.check(t, w, code, ctype, body, tc.want)
				require.Equal(t, before, h.env.Issuer.Count(), "no certificate issued")
				if tc.oracle {
					oracle[tc.name] = a
				}
			}
			require.NotContains(t, h.errLog.String(), "panic", "net/http recovered a handler panic")
			require.NotContains(t, h.logs.String(), "panic", "the server recovered a responder panic")
			h.enrollGood(t)
		})
	}
	// Every decryption failure looks the same from outside.
	require.GreaterOrEqual(t, len(oracle), 10)
	var first answer
	var firstName string
	for name, a := range oracle {
		if firstName == "" {
			first, firstName = a, name
			continue
		}
		require.Equal(t, first, a, "%q and %q answer differently", firstName, name)
	}
}

// TestHostileCount keeps the suite at 40 named cases or more, each name unique.
func TestHostileCount(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range cases() {
		require.NotEmpty(t, tc.name)
		require.False(t, seen[tc.name], "duplicate case %q", tc.name)
		seen[tc.name] = true
		require.True(t, tc.build != nil || tc.exchange != nil, tc.name)
		if tc.exchange == nil {
			require.NotZero(t, tc.want.code, "%q has no expected answer", tc.name)
		}
	}
	require.GreaterOrEqual(t, len(seen), 40)
	t.Logf("%d hostile cases", len(seen))
}
