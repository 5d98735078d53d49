package main

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/internal/stepcatest"
	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	exectest.Cleanup()
	os.Exit(code)
}

func challengeFor(t *testing.T, mdm, user, device string) string {
	t.Helper()
	resp, err := http.Get(mdm + "/profile?user=" + user + "&device=" + device)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p profile.JSONProfile
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	return p.Challenge
}

// TestStepCA follows docs/stepca.md with a real step-ca: the template this command
// prints, two webhooks added through step-ca's admin API (step-ca generates their
// secrets), this command serving them over HTTPS with step-ca's client certificate
// required, the MDM minting challenges, and micromdm's scepclient enrolling at
// step-ca: alice gets her certificate, a replayed challenge gets none.
func TestStepCA(t *testing.T) {
	bin := exectest.Build(t, ".")
	tmpl, _, code := exectest.Run(t, bin, "-print-template")
	require.Equal(t, 0, code)
	require.Contains(t, tmpl, ".Webhooks.scepkit.rawSubject")
	ca := stepcatest.Start(t, stepcatest.Options{Template: tmpl})
	scepclient := scepclienttest.Binary(t)
	mdmBin := exectest.Build(t, "../mdm")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	chSecret := ca.AddWebhook(stepcatest.Webhook{Name: "scepkit", URL: "https://" + addr + "/challenge",
		Kind: "SCEPCHALLENGE", BearerToken: "example-token"})
	notifySecret := ca.AddWebhook(stepcatest.Webhook{Name: "scepkit-notify", URL: "https://" + addr + "/notify",
		Kind: "NOTIFYING", BearerToken: "example-token"})
	t.Setenv("SCEPKIT_CHALLENGE_SECRET", b64(chSecret))
	t.Setenv("SCEPKIT_NOTIFY_SECRET", b64(notifySecret))
	t.Setenv("SCEPKIT_WEBHOOK_TOKEN", "example-token")

	mdm := exectest.Start(t, mdmBin, "-listen", "127.0.0.1:0", "-state", t.TempDir(),
		"-directory", "../directory.json", "-ca-cert", ca.RootFile(), "-scep-url", ca.SCEPURL,
		"-gateway", "scepkit-stepca")
	certFile, keyFile := ca.WriteServerCertificate(t.TempDir())
	state := t.TempDir()
	start := func() *exectest.Process {
		return exectest.Start(t, bin, "-listen", addr, "-jwks", mdm.Base+"/jwks", "-directory", "../directory.json",
			"-step-root", ca.RootFile(), "-step-ca-cert", ca.IntermediateFile(), "-tls-cert", certFile, "-tls-key", keyFile,
			"-state", state)
	}
	srv := start()
	require.Equal(t, "https://"+addr, srv.Base)

	ch := challengeFor(t, mdm.Base, "alice@example.com", "alice-laptop")
	dev := &scepclienttest.Device{Bin: scepclient, Dir: t.TempDir()}
	out, err := dev.Enroll(ca.SCEPURL, "alice@example.com", ch)
	require.NoError(t, err, "%s\n%s", out, ca.Log())
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca.Intermediate))
	require.Equal(t, "CN=alice@example.com", cert.Subject.String())
	// The NOTIFYING webhook reached the registration point.
	serial := strings.ToLower(cert.SerialNumber.Text(16))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.Stderr.String(), "serial="+serial) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.Contains(t, srv.Stderr.String(), "outcome=issued")
	require.Contains(t, srv.Stderr.String(), "serial="+serial)

	// The same challenge on another device: refused, no certificate; also after the
	// webhook server restarts on the same state (a deploy, a crash).
	for _, restart := range []bool{false, true} {
		if restart {
			srv.Stop(t)
			srv = start()
		}
		dev2 := &scepclienttest.Device{Bin: scepclient, Dir: t.TempDir()}
		out, err = dev2.Enroll(ca.SCEPURL, "alice@example.com", ch)
		require.Error(t, err, out)
		if c, err := dev2.Certificate(); err == nil {
			require.Error(t, c.CheckSignatureFrom(ca.Intermediate), "only scepclient's self-signed certificate (restart %v)", restart)
		}
		require.Contains(t, srv.Stderr.String(), "challenge already used", "restart %v", restart)
		require.True(t, ca.Contains("webhook server did not allow request"))
	}

	// Without step-ca's client certificate the server does not even answer.
	_, err = ca.Client().Post(srv.Base+"/challenge", "application/json", strings.NewReader("{}"))
	require.Error(t, err)
	srv.Stop(t)
	mdm.Stop(t)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
