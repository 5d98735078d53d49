package challenge

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}

type csrAttribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

type tbsCSR struct {
	Version    int
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	Attributes []asn1.RawValue `asn1:"tag:0"`
}

type csrOuter struct {
	TBS       asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

// csrWithChallenge builds a CSR the way a device does: subject and key from
// x509.CreateCertificateRequest, plus a challengePassword attribute encoded
// as a PrintableString (PKCS#9), signed with Ed25519.
func csrWithChallenge(t *testing.T, challenge string) []byte {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_ = pub
	base, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, priv)
	require.NoError(t, err)
	parsed, err := x509.ParseCertificateRequest(base)
	require.NoError(t, err)

	value, err := asn1.MarshalWithParams(challenge, "printable")
	require.NoError(t, err, "the challenge must be a valid PrintableString")
	attr, err := asn1.Marshal(csrAttribute{Type: oidChallengePassword, Values: []asn1.RawValue{{FullBytes: value}}})
	require.NoError(t, err)
	tbs, err := asn1.Marshal(tbsCSR{
		Subject:    asn1.RawValue{FullBytes: parsed.RawSubject},
		PublicKey:  asn1.RawValue{FullBytes: parsed.RawSubjectPublicKeyInfo},
		Attributes: []asn1.RawValue{{FullBytes: attr}},
	})
	require.NoError(t, err)
	sig := ed25519.Sign(priv, tbs)
	der, err := asn1.Marshal(csrOuter{
		TBS:       asn1.RawValue{FullBytes: tbs},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 101, 112}},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	require.NoError(t, err)
	return der
}

// challengeFromCSR returns the challengePassword of a CSR, requiring the
// PrintableString or UTF8String tag it was sent with.
func challengeFromCSR(t *testing.T, der []byte, wantTag int) string {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	require.NoError(t, csr.CheckSignature())
	var tbs tbsCSR
	_, err = asn1.Unmarshal(csr.RawTBSCertificateRequest, &tbs)
	require.NoError(t, err)
	for _, raw := range tbs.Attributes {
		var a csrAttribute
		_, err := asn1.Unmarshal(raw.FullBytes, &a)
		require.NoError(t, err)
		if a.Type.Equal(oidChallengePassword) {
			require.Len(t, a.Values, 1)
			require.Equal(t, wantTag, a.Values[0].Tag)
			var s string
			_, err := asn1.Unmarshal(a.Values[0].FullBytes, &s) // validates the character set
			require.NoError(t, err)
			return s
		}
	}
	t.Fatal("no challengePassword attribute")
	return ""
}

func TestChallengeInCSR(t *testing.T) {
	t.Parallel()
	for _, key := range []struct {
		name string
		iss  *Issuer
	}{{"Ed25519", testIssuer(edKey)}, {"ES256", testIssuer(ecKeyOnce())}, {"RS256", testIssuer(rsaKeyOnce())}} {
		t.Run(key.name, func(t *testing.T) {
			// Many challenges so that '-' and '_' certainly occur in the base64url form.
			for i := range 50 {
				req := stdRequest
				req.Extra = map[string]any{"n": i, "s": "~?>>"}
				ch, _, err := key.iss.Issue(req)
				require.NoError(t, err)
				for _, c := range ch {
					require.True(t, strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/.", c), "%q", c)
				}
				got := challengeFromCSR(t, csrWithChallenge(t, ch), asn1.TagPrintableString)
				require.Equal(t, ch, got)
				v := testVerifier(t, key.iss.Key)
				c, err := v.Check(context.Background(), got)
				require.NoError(t, err)
				require.EqualValues(t, i, c.Extra["n"])
			}
		})
	}
}

// TestChallengeInOpenSSLCSR puts a challenge in a CSR made by the openssl
// command (a real client's CSR builder, used with sscep), when installed.
func TestChallengeInOpenSSLCSR(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ch, _, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	require.Greater(t, len(ch), PKCS9MaxLength, "this test documents what happens above 255")
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	cnf := filepath.Join(dir, "req.cnf")
	out := filepath.Join(dir, "req.pem")
	require.NoError(t, os.WriteFile(cnf, fmt.Appendf(nil,
		"[req]\nprompt=no\nstring_mask=default\ndistinguished_name=dn\nattributes=attr\n[dn]\nCN=device\n[attr]\nchallengePassword=%s\n", ch), 0o600))
	run := func(args ...string) {
		cmd := exec.Command(openssl, args...)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", b)
	}
	run("genpkey", "-algorithm", "ed25519", "-out", key)
	run("req", "-new", "-key", key, "-config", cnf, "-out", out)
	pemBytes, err := os.ReadFile(out)
	require.NoError(t, err)
	block, _ := pem.Decode(pemBytes)
	require.NotNil(t, block)
	got := challengeFromCSR(t, block.Bytes, asn1.TagPrintableString)
	require.Equal(t, ch, got)
	v := testVerifier(t, edKey)
	_, err = v.Check(context.Background(), got)
	require.NoError(t, err)
}

func TestEncodingRoundTrip(t *testing.T) {
	t.Parallel()
	raw := "ab-_cd.ef-.-_"
	enc := encode(raw)
	require.Equal(t, "ab+/cd.ef+.+/", enc)
	dec, ok := decode(enc)
	require.True(t, ok)
	require.Equal(t, raw, dec)
	for _, bad := range []string{"", "a b", "a=b", "a\x00", "é", strings.Repeat("a", MaxLength+1)} {
		_, ok := decode(bad)
		require.False(t, ok, "%q", bad)
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	ch, _, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	fp := Fingerprint(ch)
	require.Len(t, fp, 12)
	require.Equal(t, fp, Fingerprint(strings.NewReplacer("+", "-", "/", "_").Replace(ch)))
	require.NotContains(t, ch, fp)
	ch2, _, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	require.NotEqual(t, fp, Fingerprint(ch2))
}

func TestLooksLikeToken(t *testing.T) {
	t.Parallel()
	ch, _, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	require.True(t, LooksLikeToken(ch))
	require.True(t, LooksLikeToken(strings.NewReplacer("+", "-", "/", "_").Replace(ch)))
	otherTyp := forge(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "k"}, stdClaims(), EdDSA, edKey)
	for _, s := range []string{
		"", "password", "A1B2C3D4E5F6",
		// the shape of an opaque, Intune-style base64 challenge
		"MIIBzDCCAXKgAwIBAgIUZp6+/Jr7tW2dUXq7cM3yR8A9Zr0wCgYIKoZIzj0EAwIwEjEQMA4GA1UEAwwHdGVzdCBjYTAeFw0yNjAx==",
		otherTyp,
		ch + ".x", strings.Replace(ch, ".", "", 1), ch[:len(ch)-3] + " ab",
	} {
		require.False(t, LooksLikeToken(s), "%q", s)
	}
}

// TestLength reports the challenge lengths quoted in doc.go.
func TestLength(t *testing.T) {
	t.Parallel()
	short := Request{UserID: "u1", Audience: "gw1"}
	for _, tc := range []struct {
		name string
		iss  *Issuer
		alg  string
	}{
		{"Ed25519", testIssuer(edKey), ""},
		{"ES256", testIssuer(ecKeyOnce()), ""},
		{"RS256-2048", testIssuer(rsaKeyOnce()), ""},
		{"PS256-2048", testIssuer(rsaKeyOnce()), PS256},
		{"HS256", &Issuer{Name: "mdm.example", Secret: secret, KeyID: "s1", Now: fixedClock(t0)}, ""},
	} {
		tc.iss.Algorithm = tc.alg
		full, _, err := tc.iss.Issue(stdRequest)
		require.NoError(t, err)
		min, _, err := tc.iss.Issue(short)
		require.NoError(t, err)
		noDev := stdRequest
		noDev.DeviceID, noDev.ProfileID = "", ""
		userOnly, _, err := tc.iss.Issue(noDev)
		require.NoError(t, err)
		t.Logf("%-11s user+device+profile GUIDs: %d, user GUID only: %d, minimal (short ids): %d", tc.name, len(full), len(userOnly), len(min))
	}
	_ = time.Second
}
