package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/scepkit/scepkit/scep"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEmulate(t *testing.T) {
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-emulate", "-log", "off"}, env(nil), &out, &errs)
	require.NoError(t, err, out.String()+errs.String())
	for _, want := range []string{"validateRequest: Success", "successNotification: thumbprint",
		"CSR for CN=evil-admin with DEMO-DEVICE-2's challenge: validateRequest answered SubjectNameMismatch (Subject Name in CSR CN=evil-admin and challenge CN=DEMO-DEVICE-2 do not match", "the device got FAILURE badRequest, no certificate", "1 revoked", "The whole Intune path"} {
		require.Contains(t, out.String(), want)
	}
}

// The emulated run tells its story on stdout; with the default log settings no
// INFO or WARN record of the gateway interleaves with it.
func TestEmulateQuiet(t *testing.T) {
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-emulate"}, env(nil), &out, &errs)
	require.NoError(t, err, out.String()+errs.String())
	require.Contains(t, out.String(), "The whole Intune path")
	require.Empty(t, errs.String())
}

func TestRefusesWithoutSettings(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"nothing", nil, nil, "-tenant (or INTUNE_TENANT); -client-id (or INTUNE_CLIENT_ID); a credential: INTUNE_CLIENT_SECRET, or -cert and -key; -serve ADDR"},
		{"no credential", []string{"-serve", ":0"}, map[string]string{"INTUNE_TENANT": "t", "INTUNE_CLIENT_ID": "c"}, "a credential"},
		{"half a certificate", []string{"-serve", ":0", "-cert", "c.pem"}, map[string]string{"INTUNE_TENANT": "t", "INTUNE_CLIENT_ID": "c"}, "both -cert and -key"},
		{"both credentials", []string{"-serve", ":0", "-cert", "c.pem", "-key", "k.pem"},
			map[string]string{"INTUNE_TENANT": "t", "INTUNE_CLIENT_ID": "c", "INTUNE_CLIENT_SECRET": "s"}, "not both"},
		{"bad authority", []string{"-serve", ":0", "-authority", "login"},
			map[string]string{"INTUNE_TENANT": "t", "INTUNE_CLIENT_ID": "c", "INTUNE_CLIENT_SECRET": "s"}, "not an absolute URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			err := run(context.Background(), c.args, env(c.env), &out, &errs)
			var u usageError
			require.True(t, errors.As(err, &u), "%v", err)
			require.ErrorContains(t, err, c.want)
			require.NotContains(t, err.Error()+out.String()+errs.String(), "INTUNE_CLIENT_SECRET=")
		})
	}
}

// With a real tenant's settings it serves until its context ends (the sign-in only
// happens on the first Intune request, or the first revocation poll).
func TestServeStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errs bytes.Buffer
	err := run(ctx, []string{"-serve", "127.0.0.1:0", "-log", "off", "-authority", "http://127.0.0.1:1/"},
		env(map[string]string{"INTUNE_TENANT": "t", "INTUNE_CLIENT_ID": "c", "INTUNE_CLIENT_SECRET": "s"}), &out, &errs)
	require.NoError(t, err)
	require.Contains(t, out.String(), "SCEP gateway at http://127.0.0.1:")
}

// -emulate -serve: the printed challenge enrolls the device it was minted for once;
// the same challenge again, or for another subject, is refused (the emulator judges
// the CSR, the gateway claims the challenge), so one certificate in all.
func TestServeEmulated(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-emulate", "-serve", "127.0.0.1:0", "-log", "off", "-device", "LAPTOP-7"}, env(nil), pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var url, ch string
	for ch == "" && lines.Scan() {
		l := lines.Text()
		if u, ok := strings.CutPrefix(l, "SCEP gateway at "); ok {
			url = strings.Fields(u)[0]
		}
		if strings.HasPrefix(l, "emulated Intune challenge for CN=LAPTOP-7") && lines.Scan() {
			ch = lines.Text()
		}
	}
	require.NotEmpty(t, url)
	require.NotEmpty(t, ch)
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	sc := &scep.Client{URL: url, InsecureSkipCAVerify: true}
	try := func(cn string) error {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
		require.NoError(t, err)
		der, err = scep.AddChallengePassword(der, ch, k, nil)
		require.NoError(t, err)
		_, err = sc.Enroll(ctx, der, k)
		return err
	}
	require.Error(t, try("evil-admin"), "another subject: SubjectNameMismatch")
	require.NoError(t, try("LAPTOP-7"))
	var fe *scep.FailError
	require.True(t, errors.As(try("LAPTOP-7"), &fe), "the challenge was used")
	require.True(t, errors.As(try("evil-admin"), &fe))
	cancel()
	require.NoError(t, <-done)
}
