package intune_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// Every code of the service maps to its phase and failInfo, and nothing is issued.
func TestCodes(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	want := map[intune.Code]crp.Phase{
		intune.CodeChallengeExpired: crp.PhaseExpiry, intune.CodeChallengeInvalidTimestamp: crp.PhaseExpiry,
		intune.CodeUnknown: crp.PhaseGenuineness, intune.CodeCertificateRequestDecodingFailed: crp.PhaseGenuineness,
		intune.CodeChallengePasswordMissing: crp.PhaseGenuineness, intune.CodeChallengeDeserializationError: crp.PhaseGenuineness,
		intune.CodeChallengeDecryptionError: crp.PhaseGenuineness, intune.CodeChallengeDecodingError: crp.PhaseGenuineness,
		intune.CodeSignatureValidationFailed: crp.PhaseGenuineness, intune.CodeBadCertificateRequestIdInChallenge: crp.PhaseGenuineness,
		intune.CodeBadDeviceIdInChallenge: crp.PhaseGenuineness, intune.CodeBadUserIdInChallenge: crp.PhaseGenuineness,
		intune.CodeScepProfileNoLongerTargetedToTheClient: crp.PhaseGenuineness,
		intune.CodeSubjectNameMissing:                     crp.PhaseMapping, intune.CodeSubjectNameMismatch: crp.PhaseMapping,
		intune.CodeSubjectAltNameMissing: crp.PhaseMapping, intune.CodeSubjectAltNameMismatch: crp.PhaseMapping,
		intune.CodeKeyUsageMismatch: crp.PhaseMapping, intune.CodeKeyLengthMismatch: crp.PhaseMapping,
		intune.CodeEnhancedKeyUsageMissing: crp.PhaseMapping, intune.CodeEnhancedKeyUsageMismatch: crp.PhaseMapping,
		intune.CodeAadKeyIdentifierListMissing: crp.PhaseMapping, intune.CodeRegisteredKeyMismatch: crp.PhaseMapping,
		intune.CodeSigningCertThumbprintMismatch: crp.PhaseMapping,
		"SomethingNew":                           crp.PhaseGenuineness, "success": crp.PhaseGenuineness, // unknown, and case matters
	}
	require.Len(t, want, len(intune.Codes)-1+2, "every code but Success is in the table")
	for code, phase := range want {
		t.Run(string(code), func(t *testing.T) {
			ch := g.Emu.Challenge(intunetest.Verdict{Code: code, Description: "emulated " + string(code)})
			tx := "tx-" + string(code)
			res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: tx, CSR: csr(t, "device", ch), Challenge: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, phase, e.Phase)
			info := scep.BadRequest
			if phase == crp.PhaseExpiry {
				info = scep.BadTime
			}
			require.Equal(t, info, e.FailInfo())
			require.Nil(t, res.Certificate)
			var se *intune.ServiceError
			require.ErrorAs(t, err, &se)
			require.Equal(t, code, se.Code)
			require.Contains(t, err.Error(), string(code))
			require.False(t, errors.Is(err, crp.ErrUnavailable), "a verdict is definitive")
			require.Equal(t, "challenge-external", res.Trace.Steps[1].Step)
		})
	}
	require.Equal(t, 0, g.Issuer.Count())
	require.Empty(t, g.Emu.Failures(), "Intune's own refusals are not reported back")
	require.Empty(t, g.Emu.Violations())
}

// TestCodesVariableIsNoSwitch: what the package understands of the service's answers
// does not follow writes to the exported Codes list (any package of the process could
// make them). Before, Known read the live list: set to nil, Success itself was
// unknown.
func TestCodesVariableIsNoSwitch(t *testing.T) {
	saved := intune.Codes
	t.Cleanup(func() { intune.Codes = saved })
	intune.Codes = nil
	require.True(t, intune.CodeSuccess.Known())
	require.True(t, intune.CodeChallengeExpired.Known())
	intune.Codes = []intune.Code{"SomethingNew"}
	require.False(t, intune.Code("SomethingNew").Known())
}

func TestAccepted(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	ch := g.Emu.Challenge(intunetest.Verdict{})
	req := csr(t, "device-1", ch)
	res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-ok", CSR: req, Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, "device-1", res.Certificate.Subject.CommonName)
	v := g.Emu.Validations()
	require.Len(t, v, 1)
	require.Equal(t, "tx-ok", v[0].Request.TransactionID)
	require.Equal(t, "scepkit-test/1.0", v[0].Request.CallerInfo)
	s := g.Emu.Successes()
	require.Len(t, s, 1)
	n := s[0].Notification
	require.Equal(t, "tx-ok", n.TransactionID)
	require.Equal(t, intune.Thumbprint(res.Certificate), n.CertificateThumbprint)
	require.Equal(t, intune.SerialHex(res.Certificate.SerialNumber), n.CertificateSerialNumber)
	require.Equal(t, res.Certificate.NotAfter.UTC().Format("2006-01-02T15:04:05.000Z"), n.CertificateExpirationDateUtc)
	require.Equal(t, v[0].Request.CertificateRequest, n.CertificateRequest)
	require.Equal(t, g.CA.Certificate.Subject.String(), n.IssuingCertificateAuthority)
	// One sign-in per scope, one discovery, fresh request ids.
	require.Equal(t, 1, g.Emu.Tokens(g.Emu.IntuneScope()))
	require.Equal(t, 1, g.Emu.Tokens(g.Emu.GraphScope()))
	ids := append(g.Emu.RequestIDs(intunetest.OpValidate), g.Emu.RequestIDs(intunetest.OpSuccess)...)
	require.Len(t, ids, 2)
	require.NotEqual(t, ids[0], ids[1])

	// Mixed fleet: a scepkit challenge on the same gateway never reaches Intune.
	own, _, err := g.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	res, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-own", CSR: csr(t, "alice@example.com", own), Challenge: own})
	require.NoError(t, err)
	require.NotNil(t, res.Certificate)
	require.Len(t, g.Emu.Validations(), 1)
	require.Len(t, g.Emu.Successes(), 1)
	require.Len(t, g.Notifier.Notifications(), 1, "scepkit's own notification goes to Others")
	require.Equal(t, 1, g.Emu.Calls(intunetest.OpDiscovery))
	require.Empty(t, g.Emu.Violations())
}

// What is not a verdict is never a pass: no certificate, a clear error, and the
// gateway serves the next request.
func TestNoVerdict(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(g *gateway)
		want  error
		text  string
	}{
		{"sign-in refused", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpToken, intunetest.Fault{Status: http.StatusUnauthorized, Times: 10})
		}, intune.ErrSignIn, "invalid_client"},
		{"discovery fails", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpDiscovery, intunetest.Fault{Status: http.StatusForbidden, Times: 10})
		}, intune.ErrDiscovery, "HTTP 403"},
		{"discovery lists no service", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpDiscovery, intunetest.Fault{Body: `{"value":[]}`, Times: 1})
		}, intune.ErrDiscovery, "no endpoint for ScepRequestValidationFEService"},
		{"service 500", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: 500, Times: 10})
		}, intune.ErrService, "HTTP 500"},
		{"service 503 retried", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: 503, Times: 10})
		}, intune.ErrService, "HTTP 503"},
		{"timeout", func(g *gateway) {
			g.Client.Timeout = 100 * time.Millisecond
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Delay: 5 * time.Second, Times: 3})
		}, intune.ErrTransport, "deadline exceeded"},
		{"malformed JSON", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Body: `{"code": "Success"`, Times: 1})
		}, intune.ErrResponse, "unexpected end"},
		{"no code", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Body: `{"errorDescription": "?"}`, Times: 1})
		}, intune.ErrResponse, "no code"},
		{"oversized answer", func(g *gateway) {
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Body: `{"code":"Success","errorDescription":"` +
				strings.Repeat("x", 2<<20) + `"}`, Times: 1})
		}, intune.ErrResponse, "over 1048576 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t, false)
			c.setup(g)
			ctx := context.Background()
			ch := g.Emu.Challenge(intunetest.Verdict{})
			res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-1", CSR: csr(t, "d", ch), Challenge: ch})
			require.Error(t, err)
			require.Nil(t, res.Certificate)
			require.ErrorIs(t, err, c.want)
			require.ErrorIs(t, err, crp.ErrUnavailable)
			require.ErrorContains(t, err, c.text)
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.PhaseGenuineness, e.Phase)
			require.Equal(t, scep.BadRequest, e.FailInfo())
			require.Equal(t, 0, g.Issuer.Count())
			require.NotContains(t, err.Error(), g.Emu.ClientSecret)
			require.NotContains(t, err.Error(), ch)

			// The gateway keeps serving once the service is back.
			for _, op := range []intunetest.Op{intunetest.OpToken, intunetest.OpDiscovery, intunetest.OpValidate} {
				g.Emu.SetFault(op, intunetest.Fault{})
			}
			g.Client.Timeout = 0
			ch = g.Emu.Challenge(intunetest.Verdict{})
			res, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-2", CSR: csr(t, "d", ch), Challenge: ch})
			require.NoError(t, err)
			require.NotNil(t, res.Certificate)
			require.Empty(t, g.Emu.Violations())
		})
	}
}

// A 503 is retried and a retry that succeeds passes; discovery is redone after a
// service failure; a 401 drops the cached token.
func TestRetriesAndCaches(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: 503, Times: 1})
	ch := g.Emu.Challenge(intunetest.Verdict{})
	_, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-r", CSR: csr(t, "d", ch), Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, 2, g.Emu.Calls(intunetest.OpValidate))
	require.Equal(t, 1, g.Emu.Calls(intunetest.OpDiscovery), "a retry that succeeds keeps the address")

	g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: 500, Times: 1})
	ch = g.Emu.Challenge(intunetest.Verdict{})
	_, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-500", CSR: csr(t, "d", ch), Challenge: ch})
	require.ErrorIs(t, err, intune.ErrService)
	require.Equal(t, 3, g.Emu.Calls(intunetest.OpValidate), "a 500 is not retried")
	require.Equal(t, 1, g.Emu.Calls(intunetest.OpDiscovery))

	g.Emu.SetFault(intunetest.OpSuccess, intunetest.Fault{Status: http.StatusUnauthorized, Times: 1})
	ch = g.Emu.Challenge(intunetest.Verdict{})
	_, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-401", CSR: csr(t, "d", ch), Challenge: ch})
	require.Error(t, err, "a failed success notification withholds the certificate")
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.PhaseNotify, e.Phase)
	before := g.Emu.Tokens(g.Emu.IntuneScope())
	ch = g.Emu.Challenge(intunetest.Verdict{})
	_, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-after", CSR: csr(t, "d", ch), Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, before+1, g.Emu.Tokens(g.Emu.IntuneScope()), "signed in again after the 401")
	require.Equal(t, 3, g.Emu.Calls(intunetest.OpDiscovery), "rediscovered after each failed call (500, 401)")
	require.Empty(t, g.Emu.Violations())
}

// When the CA fails after Intune accepted, Intune hears a failureNotification.
func TestFailureNotification(t *testing.T) {
	g := newGateway(t, false)
	g.RP.Issuer = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
		return nil, fmt.Errorf("%w: %s", crp.ErrRefused, strings.Repeat("policy says no. ", 40))
	})
	ch := g.Emu.Challenge(intunetest.Verdict{})
	_, err := g.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "tx-ca", CSR: csr(t, "d", ch), Challenge: ch})
	require.Error(t, err)
	f := g.Emu.Failures()
	require.Len(t, f, 1)
	require.Equal(t, "tx-ca", f[0].Notification.TransactionID)
	require.Equal(t, int64(-2147024891), f[0].Notification.HResult, "an HRESULT is a signed 32-bit integer on the wire")
	require.LessOrEqual(t, len([]rune(f[0].Notification.ErrorDescription)), intune.MaxErrorDescription)
	require.Contains(t, f[0].Notification.ErrorDescription, "issue: CA refused")
	require.Empty(t, g.Emu.Successes())
	require.Empty(t, g.Emu.Violations())
}

// Sign-in with a certificate credential (a JWT client assertion signed through a
// crypto.Signer): RSA only, as Microsoft Entra accepts; any other key is a
// configuration error at startup, not a refusal at the first enrollment.
func TestCertificateCredential(t *testing.T) {
	emu := intunetest.NewServer()
	defer emu.Close()
	cert := selfSigned(t, key(t))
	emu.AddCertificate(cert)
	var sent []string
	c := emu.Client("scepkit-test/1.0")
	c.ClientSecret, c.Certificate, c.Key = "", cert, key(t)
	c.HTTPClient = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
			b, _ := io.ReadAll(r.Body)
			f, _ := url.ParseQuery(string(b))
			sent = append(sent, f.Get("client_assertion"))
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		return emu.HTTPClient().Transport.RoundTrip(r)
	})}
	require.NoError(t, c.Validate())
	_, err := c.DownloadRevocationRequests(context.Background(), 10, "")
	require.NoError(t, err)
	require.NotEmpty(t, sent)
	hdr, err := base64.RawURLEncoding.DecodeString(strings.Split(sent[0], ".")[0])
	require.NoError(t, err)
	var h map[string]string
	require.NoError(t, json.Unmarshal(hdr, &h))
	sum := sha1.Sum(cert.Raw)
	require.Equal(t, map[string]string{"alg": "RS256", "typ": "JWT", "x5t": base64.RawURLEncoding.EncodeToString(sum[:])}, h,
		"RS256 with x5t only: x5t#S256 is documented with PS256")

	// Not RSA, or a certificate of another key: refused by Validate.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for name, cred := range map[string]struct {
		cert *x509.Certificate
		key  crypto.Signer
	}{"ECDSA": {selfSigned(t, ec), ec}, "mismatched": {selfSigned(t, ec), key(t)}} {
		c := emu.Client("scepkit-test/1.0")
		c.ClientSecret, c.Certificate, c.Key = "", cred.cert, cred.key
		require.ErrorIs(t, c.Validate(), intune.ErrConfig, name)
		before := emu.Calls(intunetest.OpToken)
		_, err = c.DownloadRevocationRequests(context.Background(), 10, "")
		require.ErrorIs(t, err, intune.ErrSignIn, name)
		require.Equal(t, before, emu.Calls(intunetest.OpToken), "%s: nothing sent", name)
	}

	// An unregistered certificate is refused at sign-in.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	c = emu.Client("scepkit-test/1.0")
	c.ClientSecret, c.Certificate, c.Key = "", selfSigned(t, other), other
	before := emu.Calls(intunetest.OpToken)
	_, err = c.DownloadRevocationRequests(context.Background(), 10, "")
	require.ErrorIs(t, err, intune.ErrSignIn)
	require.ErrorContains(t, err, "invalid_client")
	require.Equal(t, before+1, emu.Calls(intunetest.OpToken), "a refused sign-in is not retried")
	require.Empty(t, emu.Violations())
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClientValidate(t *testing.T) {
	require.ErrorIs(t, (&intune.Client{}).Validate(), intune.ErrConfig)
	require.ErrorContains(t, (&intune.Client{}).Validate(), "Tenant, ClientID, CallerInfo, ClientSecret (or Certificate and Key)")
	require.ErrorContains(t, (&intune.Client{Tenant: "t", ClientID: "c", CallerInfo: "x", ClientSecret: "s",
		Authority: "login"}).Validate(), "not an absolute URL")
	require.Equal(t, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
		(&intune.Client{Tenant: "contoso.onmicrosoft.com"}).TokenURL())
	require.Equal(t, "0A", intune.SerialHex(big.NewInt(10)))
}

func selfSigned(t *testing.T, k crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scepkit intune app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// Intune's rule (a certificate whose successNotification failed is not issued) holds
// for a registration point wired by hand without RequireNotification, and one with an
// Intune Validator but no Notifier is refused at Validate. scepkit's own challenges
// keep RequireNotification's choice.
func TestSuccessNotificationRequiredWithoutFlag(t *testing.T) {
	g := newGateway(t, false)
	g.RP.RequireNotification = false
	require.NoError(t, g.RP.Validate())
	ctx := context.Background()
	g.Emu.SetFault(intunetest.OpSuccess, intunetest.Fault{Status: http.StatusInternalServerError, Times: 1})
	ch := g.Emu.Challenge(intunetest.Verdict{})
	out, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-untold", CSR: csr(t, "d", ch), Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e, "a certificate Intune was not told of is withheld")
	require.Equal(t, crp.PhaseNotify, e.Phase)
	if out != nil {
		require.Nil(t, out.Certificate)
	}
	require.Empty(t, g.Emu.Successes())

	g.RP.Notifier = nil
	require.ErrorContains(t, g.RP.Validate(), "Notifier")
}

// An operator fault after Intune accepted (a template the gateway cannot apply) gives
// the challenge back and records nothing: the device sends the same transaction again
// once the template is fixed, and it is issued. Intune must not hear "failed" before
// that "issued" (after a failureNotification the service's rule is: do not issue), so
// the fault is not reported, as a transient failure is not.
func TestOperatorFaultNotReported(t *testing.T) {
	g := newGateway(t, false)
	tmpl := g.Templates["intune-device"]
	good := *tmpl
	tmpl.Validity = 0 // invalid: Apply refuses it as the gateway's fault
	ch := g.Emu.Challenge(intunetest.Verdict{})
	req := &crp.EnrollRequest{TransactionID: "tx-misconfigured", CSR: csr(t, "d", ch), Challenge: ch}
	_, err := g.RP.Enroll(context.Background(), req)
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonMisconfigured, e.Reason)
	require.Empty(t, g.Emu.Failures(), "an operator fault is no failure of this transaction yet")

	*tmpl = good // the operator mends the template; the device sends the request again
	res, err := g.RP.Enroll(context.Background(), req)
	require.NoError(t, err)
	require.NotNil(t, res.Certificate)
	require.Len(t, g.Emu.Successes(), 1)
	require.Empty(t, g.Emu.Failures())
	require.Empty(t, g.Emu.Violations())
}

// Endpoint's errors: a discovery that fails matches ErrDiscovery; one whose sign-in to
// Graph is refused matches ErrSignIn instead (each error names one kind, as the
// package documentation lists them), and both match crp.ErrUnavailable.
func TestEndpointErrors(t *testing.T) {
	for _, c := range []struct {
		name      string
		op        intunetest.Op
		want, not error
	}{
		{"sign-in refused", intunetest.OpToken, intune.ErrSignIn, intune.ErrDiscovery},
		{"discovery fails", intunetest.OpDiscovery, intune.ErrDiscovery, intune.ErrSignIn},
	} {
		t.Run(c.name, func(t *testing.T) {
			emu := intunetest.NewServer()
			defer emu.Close()
			cl := emu.Client("scepkit-test/1.0")
			cl.Retries = -1
			emu.SetFault(c.op, intunetest.Fault{Status: http.StatusUnauthorized})
			_, err := cl.Endpoint(context.Background(), intune.ValidationService)
			require.ErrorIs(t, err, c.want)
			require.ErrorIs(t, err, crp.ErrUnavailable)
			require.NotErrorIs(t, err, c.not)
		})
	}
}
