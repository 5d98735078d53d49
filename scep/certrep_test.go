package scep

import (
	"crypto"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestCertRepAttributesGolden: every CertRep carries the CMS and SCEP authenticated
// attributes clients require (BouncyCastle, jscep and Windows refuse a CertRep that lacks
// one), for each status. The list of attribute types is a golden file.
func TestCertRepAttributesGolden(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "golden", Payload: newCSR(t, d.key, "g", "c"),
		Recipient: pki.raEnc, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	m, err := ParsePKIMessage(der, ParseOptions{})
	require.NoError(t, err)
	require.NoError(t, m.Decrypt(Recipient{pki.raEnc, pki.raEncK}))
	rp := &Replier{Cert: pki.raSign, Key: pki.raKey}
	var lines []string
	reps := map[string][]byte{}
	reps["SUCCESS"], err = rp.Success(m, d.self)
	require.NoError(t, err)
	reps["PENDING"], err = rp.Pending(m)
	require.NoError(t, err)
	reps["FAILURE"], err = rp.Failure(m, BadRequest)
	require.NoError(t, err)
	names := map[string]string{
		oidContentType.String(): "contentType", oidMessageDigest.String(): "messageDigest",
		oidMessageType.String(): "messageType", oidTransactionID.String(): "transactionID",
		oidPKIStatus.String(): "pkiStatus", oidFailInfo.String(): "failInfo",
		oidSenderNonce.String(): "senderNonce", oidRecipientNonce.String(): "recipientNonce",
	}
	for _, status := range []string{"SUCCESS", "PENDING", "FAILURE"} {
		sd, err := parseSignedData(reps[status])
		require.NoError(t, err)
		var attrs []string
		for _, a := range sd.signers[0].attrs {
			n := names[a.oid.String()]
			if n == "" {
				n = a.oid.String()
			}
			attrs = append(attrs, n)
		}
		sort.Strings(attrs)
		lines = append(lines, status+": "+strings.Join(attrs, " "))
	}
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "certrep-attributes.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), got)

	// OpenSSL verifies the signature of each CertRep as its clients do, without being
	// handed the content: a FAILURE or PENDING without eContent is taken for a detached
	// signature and refused ("no content"), so certmonger could read neither.
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl missing")
		}
		t.Skip("openssl missing")
	}
	dir := t.TempDir()
	for status, rep := range reps {
		in := filepath.Join(dir, status+".der")
		require.NoError(t, os.WriteFile(in, rep, 0o600))
		for _, cmd := range []string{"cms", "smime"} {
			out, err := exec.Command(openssl, cmd, "-verify", "-noverify", "-inform", "DER", "-in", in,
				"-out", filepath.Join(dir, status+"."+cmd+".out")).CombinedOutput()
			require.NoError(t, err, "openssl %s -verify %s: %s", cmd, status, out)
		}
	}
}

// TestCertRepWithoutEContent: a FAILURE or PENDING with no eContent at all, as scepkit
// sent before and some servers still send, is read like one with an empty eContent.
func TestCertRepWithoutEContent(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "detached", Payload: newCSR(t, d.key, "g", "c"),
		Recipient: pki.raEnc, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	req, err := ParsePKIMessage(der, ParseOptions{})
	require.NoError(t, err)
	for _, tc := range []struct {
		status PKIStatus
		info   FailInfo
	}{{Failure, BadTime}, {Pending, 0}} {
		attrs := []signedAttr{
			{oidMessageType, printableValue("3")},
			{oidTransactionID, printableValue(req.TransactionID)},
			{oidPKIStatus, printableValue(strconv.Itoa(int(tc.status)))},
			{oidSenderNonce, octetValue(make([]byte, 16))},
			{oidRecipientNonce, octetValue(req.SenderNonce)},
		}
		if tc.status == Failure {
			attrs = append(attrs, signedAttr{oidFailInfo, printableValue(strconv.Itoa(int(tc.info)))})
		}
		rep, err := buildSignedData(signOptions{attrs: attrs, cert: pki.raSign, key: pki.raKey, hash: crypto.SHA256})
		require.NoError(t, err)
		sd, err := parseSignedData(rep)
		require.NoError(t, err)
		require.Nil(t, sd.content, "built without eContent")
		m, err := ParsePKIMessage(rep, ParseOptions{})
		require.NoError(t, err)
		require.Equal(t, tc.status, m.Status)
		require.Equal(t, tc.info, m.FailInfo)
		require.Nil(t, m.Envelope)
	}
}
