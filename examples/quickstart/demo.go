package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// runDemo runs the whole flow against the gateway and MDM that run() started, printing
// each step, and fails if any step did not happen as printed.
func runDemo(ctx context.Context, gw *gateway, m *mdm, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	p("scepkit quickstart: MDM, gateway and CA on %s, device enrolling over HTTP", m.base)

	// 1. The MDM renders the profile for alice's laptop and mints its challenge.
	const user, device = "alice@example.com", "alice-laptop"
	prof, code, err := fetchProfile(ctx, m.base, user, device)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("MDM profile for %s: HTTP %d: %v", user, code, err)
	}
	rendered, err := gw.Rendered(ctx, user, device)
	if err != nil {
		return err
	}
	p("\nMDM")
	p("  profile     %q for %s on %s: subject %s, RSA %d, SANs %v", profileID, user, device,
		prof.Subject, prof.KeySize, prof.SANs)
	p("  challenge   %d characters, fingerprint %s, expires %s", len(prof.Challenge),
		challengeFingerprint(prof.Challenge), prof.Expires)

	// 2. The device makes its key and CSR, and enrolls with the challenge.
	key, err := rsa.GenerateKey(rand.Reader, prof.KeySize)
	if err != nil {
		return err
	}
	caFP, err := hex.DecodeString(prof.CAFingerprint)
	if err != nil {
		return err
	}
	client := &scep.Client{URL: prof.SCEPURL, CAFingerprint: caFP}
	caps, err := client.GetCACaps(ctx)
	if err != nil {
		return fmt.Errorf("GetCACaps: %w", err)
	}
	p("\nDevice")
	p("  caps        %v (CA pinned by SHA-256 %s...)", []scep.Capability(caps), prof.CAFingerprint[:16])
	csr, err := newCSR(key, rendered.RawSubject, prof.Challenge)
	if err != nil {
		return err
	}
	cert, err := client.Enroll(ctx, csr, key)
	if err != nil {
		return fmt.Errorf("enrollment: %w", err)
	}
	p("  PKCSReq     sent to %s (%v, %v, POST): SUCCESS", prof.SCEPURL, caps.Cipher(), "SHA-256")

	// 3. What the gateway did: the CRP's trace, as the MDM was told.
	n, err := notificationFor(gw, cert)
	if err != nil {
		return err
	}
	p("\nGateway and CRP (transaction %s)", n.TransactionID)
	want := []crp.Phase{crp.PhaseGateway, crp.PhaseExpiry, crp.PhaseGenuineness, crp.PhaseMapping,
		crp.PhaseTemplate, crp.PhaseIssue, crp.PhaseNotify}
	var seen []crp.Phase
	for _, s := range n.Trace.Steps {
		if !s.OK {
			return fmt.Errorf("step %s/%s refused: %s", s.Phase, s.Step, s.Reason)
		}
		p("  %-19s %-19s ok  %v", s.Phase, s.Step, s.Duration.Round(time.Microsecond))
		if len(seen) == 0 || seen[len(seen)-1] != s.Phase {
			seen = append(seen, s.Phase)
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		return fmt.Errorf("phases run: %v, want %v", seen, want)
	}
	p("  MDM told    %s: serial %x, thumbprint %s, template %s", n.Outcome, n.Serial, n.Thumbprint, n.Template)

	// 4. The certificate.
	if err := cert.CheckSignatureFrom(gw.CA.Certificate); err != nil {
		return fmt.Errorf("issued certificate does not chain to the CA: %w", err)
	}
	if cert.Subject.String() != prof.Subject {
		return fmt.Errorf("issued subject %q, profile said %q", cert.Subject, prof.Subject)
	}
	p("\nCertificate")
	p("  subject     %s", cert.Subject)
	p("  serial      %x", cert.SerialNumber)
	p("  valid       %s to %s", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	p("  issuer      %s (signature verified)", cert.Issuer)

	// 5. Two refusals.
	p("\nRefusals")
	key2, err := rsa.GenerateKey(rand.Reader, prof.KeySize)
	if err != nil {
		return err
	}
	csr2, err := newCSR(key2, rendered.RawSubject, prof.Challenge)
	if err != nil {
		return err
	}
	if err := expectRefusal(ctx, gw, client, csr2, key2, scep.BadRequest, crp.PhaseGenuineness, crp.ReasonReplayed, p,
		"replayed challenge"); err != nil {
		return err
	}
	_, code, err = fetchProfile(ctx, m.base, "mallory@example.com", "mallory-tablet")
	if err != nil || code != http.StatusForbidden {
		return fmt.Errorf("MDM profile for a disabled user: HTTP %d, want 403 (%v)", code, err)
	}
	p("  disabled user       the MDM refuses mallory a profile: HTTP %d", code)
	// A challenge minted before mallory was disabled reaches the gateway anyway.
	ch, _, err := gw.Challenge("mallory@example.com", "mallory-tablet", m.ttl)
	if err != nil {
		return err
	}
	mr, err := mallorySubject(ctx, gw)
	if err != nil {
		return err
	}
	csr3, err := newCSR(key2, mr, ch)
	if err != nil {
		return err
	}
	if err := expectRefusal(ctx, gw, client, csr3, key2, scep.BadRequest, crp.PhaseGenuineness, crp.ReasonUserDisabled, p,
		"disabled user"); err != nil {
		return err
	}
	if got := gw.IssuedCount(); got != 1 {
		return fmt.Errorf("%d certificates issued, want exactly 1", got)
	}
	p("\nOne certificate issued, two requests refused: every step happened as printed.")
	return nil
}

// mallorySubject renders the profile for mallory as she was when her challenge was
// minted (the directory keeps her record, disabled since).
func mallorySubject(ctx context.Context, gw *gateway) ([]byte, error) {
	u, err := gw.Users.LookupUser(ctx, "mallory@example.com")
	if err != nil {
		return nil, err
	}
	dev, err := gw.Devices.LookupDevice(ctx, "mallory-tablet")
	if err != nil {
		return nil, err
	}
	return renderFor(gw, *u, *dev)
}

// expectRefusal enrolls and checks that the gateway refused with info, in phase for
// reason, and that the MDM was told so.
func expectRefusal(ctx context.Context, gw *gateway, client *scep.Client, csr []byte, key *rsa.PrivateKey,
	info scep.FailInfo, phase crp.Phase, reason crp.Reason, p func(string, ...any), what string) error {
	before := gw.IssuedCount()
	_, err := client.Enroll(ctx, csr, key)
	var fe *scep.FailError
	if !errors.As(err, &fe) {
		return fmt.Errorf("%s: want a FAILURE, got %v", what, err)
	}
	if fe.Info != info {
		return fmt.Errorf("%s: failInfo %v, want %v", what, fe.Info, info)
	}
	all := gw.Notifier.Notifications()
	last := all[len(all)-1]
	if last.Outcome != crp.OutcomeFailed || last.Phase != phase || last.Reason != reason {
		return fmt.Errorf("%s: MDM told %s in %s (%s), want failed in %s (%s)", what, last.Outcome, last.Phase,
			last.Reason, phase, reason)
	}
	if gw.IssuedCount() != before {
		return fmt.Errorf("%s: a certificate was issued", what)
	}
	p("  %-19s FAILURE %v  (%s: %s; no certificate issued)", what, fe.Info, last.Phase, last.Reason)
	return nil
}

func fetchProfile(ctx context.Context, base, user, device string) (*profileJSON, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/mdm/profile?user="+user+"&device="+device, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var pj profileJSON
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&pj); err != nil {
			return nil, resp.StatusCode, err
		}
	}
	return &pj, resp.StatusCode, nil
}

// notificationFor finds what the MDM was told about cert.
func notificationFor(gw *gateway, cert *x509.Certificate) (*crp.Notification, error) {
	for _, n := range gw.Notifier.Notifications() {
		if n.Outcome == crp.OutcomeIssued && n.Serial.Cmp(cert.SerialNumber) == 0 {
			return &n, nil
		}
	}
	return nil, fmt.Errorf("the MDM was not told about certificate %x", cert.SerialNumber)
}
