package hostile

import (
	"crypto"
	"crypto/des"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/stretchr/testify/require"
)

// TestWriteFuzzSeeds writes the seed corpora of scep's fuzz targets
// (scep/testdata/fuzz/<Target>/) from the hostile shapes of this package. It runs only
// with SCEPKIT_WRITE_FUZZ_SEEDS=1; the files it wrote are committed, and `go test`
// replays them on every run.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SCEPKIT_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set SCEPKIT_WRITE_FUZZ_SEEDS=1 to rewrite scep/testdata/fuzz")
	}
	h := newHarness(t, crptest.Options{})
	dir := filepath.Join("..", "scep", "testdata", "fuzz")
	write := func(target, name string, values ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range values {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			case byte:
				fmt.Fprintf(&b, "byte(%q)\n", v)
			default:
				t.Fatalf("type %T", v)
			}
		}
		require.NoError(t, os.MkdirAll(filepath.Join(dir, target), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, target, name), []byte(b.String()), 0o644))
	}

	// FuzzParsePKIMessage: requests in every shape the hostile suite sends, and replies.
	msgs := map[string][]byte{
		"pkcsreq":             h.message(t, spec{}).body,
		"pkcsreq-ber":         indefinite(t, h.message(t, spec{}).body),
		"pkcsreq-sha1":        h.message(t, spec{tweak: func(o *signOpts) { o.hash = crypto.SHA1 }}).body,
		"pkcsreq-md5":         h.message(t, spec{tweak: func(o *signOpts) { o.hash = crypto.MD5 }}).body,
		"pkcsreq-unsorted":    h.message(t, spec{tweak: func(o *signOpts) { o.unsorted = true }}).body,
		"pkcsreq-two-signers": h.message(t, spec{tweak: func(o *signOpts) { o.twoSigners = true }}).body,
		"pkcsreq-no-certs":    h.message(t, spec{tweak: func(o *signOpts) { o.omitCerts = true }}).body,
		"pkcsreq-bad-cert":    h.message(t, spec{tweak: func(o *signOpts) { o.extraCerts = [][]byte{{0x30, 0x03, 0x02, 0x01, 0x00}} }}).body,
		"pkcsreq-no-envelope": h.message(t, spec{noEnv: true}).body,
		"type-99":             h.message(t, spec{typ: "99"}).body,
		"type-certrep":        h.message(t, spec{typ: "3"}).body,
		"nonce-3":             h.message(t, spec{nonce: []byte{1, 2, 3}}).body,
		"no-tid":              h.message(t, spec{attrs: []attr{scepAttrs("19", "x", randBytes(16))[0]}}).body,
		"dup-type":            h.message(t, spec{attrs: append(scepAttrs("19", newTID(), randBytes(16)), attr{oidMessageType, [][]byte{printable("19")}})}).body,
		"renewalreq":          h.message(t, spec{typ: "17", payload: csrFor(t, deviceKey, pkix.Name{CommonName: alice}, "")}).body,
		"getcert":             h.message(t, spec{typ: "21", payload: issuerAndSerial(h.ca.RawSubject, big.NewInt(5))}).body,
		"certpoll":            h.message(t, spec{typ: "20", payload: issuerAndSubject(h.ca.RawSubject, h.self.RawSubject)}).body,
		"nested-ber":          []byte(strings.Repeat("\x30\x80", 200)),
	}
	// Replies: FAILURE and SUCCESS CertReps from the running gateway.
	_, _, msgs["certrep-failure"] = h.send(t, h.message(t, spec{typ: "99"}))
	_, _, msgs["certrep-success"] = h.send(t, h.message(t, spec{}))
	for name, m := range msgs {
		write("FuzzParsePKIMessage", name, m)
	}

	// FuzzEnvelope: envelopes addressed to the scep tests' RA encryption certificate
	// (issuer "scepkit test CA", serial 3); its key is made per run, so these exercise
	// recipient matching, algorithm refusal and the uniform decryption failure.
	fakeRA := fakeCert(t, "scepkit test CA", 3)
	csr := h.goodCSR(t)
	envs := map[string][]byte{
		"aes":          goodEnvelope(t, fakeRA, csr),
		"des":          desEnvelope(t, fakeRA, csr),
		"des3":         des3Envelope(t, fakeRA, csr),
		"rc2":          rc2Envelope(t, fakeRA, len(csr)),
		"iv-short":     envelopedData(envOpts{to: fakeRA, cipherOID: oidAES256CBC, params: octets(randBytes(8)), wrapped: randBytes(256), ciphertext: randBytes(64)}),
		"empty-ct":     envelopedData(envOpts{to: fakeRA, cipherOID: oidAES256CBC, params: octets(randBytes(16)), wrapped: randBytes(256), ciphertext: []byte{}}),
		"ct-mid-block": envelopedData(envOpts{to: fakeRA, cipherOID: oidAES256CBC, params: octets(randBytes(16)), wrapped: randBytes(256), ciphertext: randBytes(37)}),
		"other-ra":     goodEnvelope(t, fakeCert(t, "other CA", 3), csr),
	}
	for name, e := range envs {
		for _, typ := range []byte{19, 20, 21, 3} {
			write("FuzzEnvelope", fmt.Sprintf("%s-%d", name, typ), e, typ)
		}
	}
	write("FuzzEnvelope", "aes-type-99", envs["aes"], byte(99))

	// FuzzGETMessage: the encodings real clients use, and broken ones.
	msg := h.message(t, spec{}).body
	std := base64.StdEncoding.EncodeToString(msg)
	var wrapped strings.Builder
	for i := 0; i < len(std); i += 64 {
		wrapped.WriteString(std[i:min(i+64, len(std))] + "\r\n")
	}
	gets := map[string]string{
		"std-escaped":   "operation=PKIOperation&message=" + url.QueryEscape(std),
		"std-raw-plus":  "operation=PKIOperation&message=" + std,
		"only-equals":   "operation=PKIOperation&message=" + strings.ReplaceAll(std, "=", "%3D"),
		"url-safe":      "operation=PKIOperation&message=" + base64.URLEncoding.EncodeToString(msg),
		"url-safe-raw":  "message=" + base64.RawURLEncoding.EncodeToString(msg) + "&operation=PKIOperation",
		"crlf-wrapped":  "operation=PKIOperation&message=" + url.QueryEscape(wrapped.String()),
		"plus-as-space": "operation=PKIOperation&message=" + strings.ReplaceAll(url.QueryEscape(std), "%2B", "%20"),
		"two-messages":  "message=AAAA&message=BBBB",
		"empty-message": "operation=PKIOperation&message=",
		"bad-escape":    "message=%G0%%",
		"not-base64":    "message=%7B%7D%5B%5D",
		"one-char":      "message=A",
		"padding-only":  "message====",
		"no-message":    "operation=PKIOperation",
		"semicolons":    "operation=PKIOperation;message=AAAA",
	}
	for name, q := range gets {
		write("FuzzGETMessage", name, q)
	}

	// FuzzCaps: what servers answer, and what they should not.
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf("Cap%d", i)
	}
	caps := map[string]string{
		"scepkit":      h.env.Server.Caps().String(),
		"ndes":         "POSTPKIOperation\r\nRenewal\r\nSHA-512\r\nSHA-256\r\nSHA-1\r\nDES3\r\n",
		"lowercase":    "aes\nsha-256\npostpkioperation\nscepstandard\n",
		"duplicates":   "AES\nAES\naes\nAES\n",
		"many":         strings.Join(many, "\n"),
		"long-keyword": strings.Repeat("X", 100) + "\nAES",
		"whitespace":   " \t AES \t\r\n\r\n\v\fSHA-256  ",
		"nul-utf8":     "AES\x00SHA-256\nÜbergröße\n\xff\xfe",
		"empty":        "",
	}
	for name, c := range caps {
		write("FuzzCaps", name, c)
	}
}

// fakeCert is a certificate that identifies a recipient by issuer name and serial
// only, with a throwaway RSA key to wrap content keys to.
func fakeCert(t testing.TB, issuerCN string, serial int64) *x509.Certificate {
	issuer, err := asn1.Marshal(pkix.Name{CommonName: issuerCN}.ToRDNSequence())
	require.NoError(t, err)
	return &x509.Certificate{RawIssuer: issuer, SerialNumber: big.NewInt(serial), PublicKey: &otherKey.PublicKey}
}

var oidDES3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}

func des3Envelope(t testing.TB, to *x509.Certificate, content []byte) []byte {
	key, iv := randBytes(24), randBytes(8)
	blk, err := des.NewTripleDESCipher(key)
	require.NoError(t, err)
	return envelopedData(envOpts{to: to, cipherOID: oidDES3CBC, params: octets(iv),
		wrapped: wrapKey(t, to, key), ciphertext: cbcEncrypt(t, blk, iv, pad(content, des.BlockSize))})
}
