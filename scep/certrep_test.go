package scep

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

	// OpenSSL verifies the signature of each CertRep (signer certificate included).
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
		args := []string{"cms", "-verify", "-noverify", "-inform", "DER", "-in", in, "-out", filepath.Join(dir, status+".out")}
		if status != "SUCCESS" { // no eContent: the signature covers empty content
			args = append(args, "-content", os.DevNull)
		}
		out, err := exec.Command(openssl, args...).CombinedOutput()
		require.NoError(t, err, "openssl cms -verify %s: %s", status, out)
	}
}
