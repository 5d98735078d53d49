//go:build linux

package crp_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/certmongertest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// certmongerGateway is a gateway served on 127.0.0.1 for certmonger, remembering the
// HTTP methods and the SCEP requests it saw.
type certmongerGateway struct {
	env *crptest.Env
	url string
	mu  sync.Mutex
	ops []string // "GET PKCSReq", "GET CertPoll", ...
	tid map[string]string
}

func newCertmongerGateway(t *testing.T, approval bool) *certmongerGateway {
	t.Helper()
	env, err := crptest.New(crptest.Options{Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	require.NoError(t, err)
	env.Templates[crptest.TemplateName].RequiresApproval = approval
	g := &certmongerGateway{env: env, tid: map[string]string{}}
	rp := env.Server.Responder
	env.Server.Responder = scep.ResponderFunc(func(ctx context.Context, req *scep.Request) (*scep.Response, error) {
		g.mu.Lock()
		g.ops = append(g.ops, req.MessageType.String())
		if req.CSR != nil {
			g.tid[req.CSR.Subject.CommonName] = req.TransactionID
		}
		if req.Signer != nil && !bytes.Equal(req.Signer.RawIssuer, req.Signer.RawSubject) {
			g.ops = append(g.ops, "signed by serial "+req.Signer.SerialNumber.String())
		}
		g.mu.Unlock()
		return rp.Respond(ctx, req)
	})
	mux := http.NewServeMux()
	scep.Mount(mux, "/scep", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("operation") == "PKIOperation" {
			g.mu.Lock()
			g.ops = append(g.ops, r.Method)
			g.mu.Unlock()
		}
		env.Server.ServeHTTP(w, r)
	}))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	g.url = ts.URL + "/scep"
	return g
}

func (g *certmongerGateway) seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.ops...)
}

// readCert reads the PEM certificate certmonger saved.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk, "no PEM certificate in %s", path)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

// TestCertmonger drives certmonger 0.79 (always GET, OpenSSL 3) against scep.Server +
// crp: an enrollment as CN=bob@example.com (certmonger encodes it as a PrintableString,
// which crypto/x509 refuses), a wrong challenge whose failInfo shows in getcert list,
// a PENDING request that certmonger polls and that is approved through the API, a
// renewal with the issued certificate, and a rekey followed by a renewal.
func TestCertmonger(t *testing.T) {
	cm := certmongertest.Start(t)
	gw := newCertmongerGateway(t, false)
	_, err := cm.Getcert("add-scep-ca", "-c", "scepkit", "-u", gw.url)
	require.NoError(t, err)
	file := func(name string) string { return filepath.Join(cm.Dir, name) }

	// Enrollment.
	ch, _, err := gw.env.Challenge("bob@example.com", "bob-phone", 0)
	require.NoError(t, err)
	_, err = cm.Getcert("request", "-c", "scepkit", "-I", "bob", "-f", file("bob.crt"), "-k", file("bob.key"),
		"-N", "CN=bob@example.com", "-L", ch)
	require.NoError(t, err)
	f := cm.WaitStatus("bob", time.Minute, "MONITORING", "CA_REJECTED", "CA_UNREACHABLE")
	require.Equal(t, "MONITORING", f["status"], "%v", f)
	cert := readCert(t, file("bob.crt"))
	require.NoError(t, cert.CheckSignatureFrom(gw.env.CA.Certificate))
	require.Equal(t, "bob@example.com", cert.Subject.CommonName)
	require.Contains(t, string(cert.RawSubject), string([]byte{byte(cbasn1.UTF8String), byte(len("bob@example.com"))})+"bob@example.com",
		"the issued CN is a UTF8String, not the client's PrintableString")
	require.Equal(t, 1, gw.env.Issuer.Count())
	require.Contains(t, gw.seen(), "GET")
	require.NotContains(t, gw.seen(), "POST")

	// A wrong challenge: CA_REJECTED, with certmonger's text for badRequest.
	_, err = cm.Getcert("request", "-c", "scepkit", "-I", "wrong", "-f", file("wrong.crt"), "-k", file("wrong.key"),
		"-N", "CN=bob@example.com", "-L", "not-a-challenge")
	require.NoError(t, err)
	f = cm.WaitStatus("wrong", time.Minute, "CA_REJECTED", "MONITORING", "CA_UNREACHABLE")
	require.Equal(t, "CA_REJECTED", f["status"], "%v", f)
	require.Contains(t, f["ca-error"], "not permitted or is not supported", "badRequest, as certmonger words it")
	require.Equal(t, 1, gw.env.Issuer.Count(), "nothing issued")
	_, err = os.Stat(file("wrong.crt"))
	require.True(t, os.IsNotExist(err))

	// Renewal: certmonger signs a RenewalReq with the certificate it holds.
	_, err = cm.Getcert("resubmit", "-i", "bob")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := os.ReadFile(file("bob.crt"))
		return err == nil && !contains(c, cert.Raw) && gw.env.Issuer.Count() == 2
	}, time.Minute, 200*time.Millisecond, "renewed certificate installed; requests %v\n%s", gw.seen(), cm.Log())
	f = cm.WaitStatus("bob", time.Minute, "MONITORING")
	renewed := readCert(t, file("bob.crt"))
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)
	require.Equal(t, cert.RawSubject, renewed.RawSubject)
	require.Contains(t, gw.seen(), "signed by serial "+cert.SerialNumber.String(), "signed with the issued certificate")

	// Rekey, then renew: certmonger asks for a new key's certificate, signing with
	// the one it holds, then renews the new certificate signing with it, under the
	// same transactionID (its CSR key's). Before, that renewal was refused as another
	// requester's transaction, and every renewal after a rekey failed.
	_, err = cm.Getcert("rekey", "-i", "bob")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := os.ReadFile(file("bob.crt"))
		return err == nil && !contains(c, renewed.Raw) && gw.env.Issuer.Count() == 3
	}, time.Minute, 200*time.Millisecond, "rekeyed certificate installed; requests %v\n%s", gw.seen(), cm.Log())
	f = cm.WaitStatus("bob", time.Minute, "MONITORING")
	rekeyed := readCert(t, file("bob.crt"))
	require.NotEqual(t, renewed.RawSubjectPublicKeyInfo, rekeyed.RawSubjectPublicKeyInfo, "a new key")
	_, err = cm.Getcert("resubmit", "-i", "bob")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c, err := os.ReadFile(file("bob.crt"))
		return err == nil && !contains(c, rekeyed.Raw) && gw.env.Issuer.Count() == 4
	}, time.Minute, 200*time.Millisecond, "renewal after the rekey installed; requests %v\n%s", gw.seen(), cm.Log())
	f = cm.WaitStatus("bob", time.Minute, "MONITORING", "CA_REJECTED", "CA_UNREACHABLE")
	require.Equal(t, "MONITORING", f["status"], "%v", f)
	require.Contains(t, gw.seen(), "signed by serial "+rekeyed.SerialNumber.String(), "signed with the rekeyed certificate")
	t.Logf("requests seen: %v", gw.seen())

	// A template that needs approval: PENDING; certmonger polls; the request is
	// approved through the API and certmonger installs the certificate.
	pend := newCertmongerGateway(t, true)
	_, err = cm.Getcert("add-scep-ca", "-c", "pending", "-u", pend.url)
	require.NoError(t, err)
	ch, _, err = pend.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	_, err = cm.Getcert("request", "-c", "pending", "-I", "alice", "-f", file("alice.crt"), "-k", file("alice.key"),
		"-N", "CN=alice@example.com", "-L", ch)
	require.NoError(t, err)
	f = cm.WaitStatus("alice", time.Minute, "CA_WORKING", "MONITORING", "CA_REJECTED", "CA_UNREACHABLE")
	require.Equal(t, "CA_WORKING", f["status"], "certmonger read the PENDING: %v", f)
	require.Zero(t, pend.env.Issuer.Count())
	pend.mu.Lock()
	tid := pend.tid["alice@example.com"]
	pend.mu.Unlock()
	require.NotEmpty(t, tid)
	// certmonger polls by sending the same PKCSReq again (getcert refresh makes it poll
	// now rather than at its next interval): still PENDING before the approval.
	polls := func() int {
		n := 0
		for _, op := range pend.seen() {
			if op == "PKCSReq" || op == "CertPoll" {
				n++
			}
		}
		return n
	}
	_, err = cm.Getcert("refresh", "-i", "alice")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return polls() >= 2 }, time.Minute, 200*time.Millisecond, "certmonger polled")
	f = cm.WaitStatus("alice", time.Minute, "CA_WORKING", "MONITORING", "CA_REJECTED", "CA_UNREACHABLE")
	require.Equal(t, "CA_WORKING", f["status"], "%v", f)
	approved, err := pend.env.RP.Approve(context.Background(), tid)
	require.NoError(t, err)
	_, err = cm.Getcert("refresh", "-i", "alice")
	require.NoError(t, err)
	f = cm.WaitStatus("alice", time.Minute, "MONITORING", "CA_REJECTED", "CA_UNREACHABLE")
	require.Equal(t, "MONITORING", f["status"], "%v", f)
	require.Equal(t, approved.Raw, readCert(t, file("alice.crt")).Raw, "the approved certificate is installed")
	require.Equal(t, 1, pend.env.Issuer.Count())
	t.Logf("requests seen: %v", pend.seen())
}

func contains(pemBytes, der []byte) bool {
	blk, _ := pem.Decode(pemBytes)
	return blk != nil && bytes.Equal(blk.Bytes, der)
}
