// Command embedca is a CA that already has its own front end, a small REST API, and
// embeds scepkit's Certificate Registration Point to decide requests: no SCEP, no RA,
// the same phases, refusals and trace. It shows how to assemble a
// crp.RegistrationPoint by hand (see newCA) and call RegistrationPoint.Enroll.
//
//	go run ./examples/mdm -gateway scepkit-embedca -directory examples/directory.json \
//	    -ca-cert embedca-state/ca.crt &
//	go run ./examples/embedca -state embedca-state -jwks http://127.0.0.1:8081/jwks \
//	    -directory examples/directory.json
//
// API:
//
//   - POST /enroll with {"csr": "<base64 DER PKCS#10>", "challenge": "<challenge>"}
//     (at most 64 KiB). 200: {"certificate": "<PEM>", "serial", "not_after",
//     "transaction_id"}. 403: the registration point refused, {"phase", "reason",
//     "fail_info", "transaction_id"} (fail_info is what a SCEP device would have seen).
//     400: the body, the base64 or the CSR is malformed, the CSR's signature does not
//     verify or the challenge is not a challenge (also with phase, reason and fail_info
//     when the registration point said so). 413: the body is over 64 KiB. 202: the
//     request is pending.
//     503: the CA or a store is unavailable; retry with the same challenge.
//   - Renewal, with no challenge: POST /enroll with {"csr": ..., "certificate": "<PEM of
//     the certificate being renewed>", "signature": "<base64>"}, the signature being
//     the old key's over the CSR's DER (openssl dgst -sha256 -sign old.key csr.der).
//     The certificate alone would prove nothing (certificates are public):
//     crp.SignatureProof checks the signature, and the registration point then checks
//     the certificate as for any renewal (issued here, valid, not revoked, renewed
//     once). 403 with reason "renewal signer not acceptable" when the signature does
//     not verify. A front end with TLS client authentication would use
//     crp.TLSProof(r.TLS) instead.
//   - GET /ca: the CA certificate (PEM).
//
// The challenge comes from the MDM (examples/mdm, whose -gateway must be this CA's
// -identity, scepkit-embedca by default: a challenge minted for the SCEP gateway,
// scepkit-gateway, is refused here, and the other way round); the CSR must match the
// MDM's profile for that user and device (subject CN=<UPN>, RSA 2048). Flags: -listen,
// -state (the CA, kept with catemplate.SaveCA, and state.db: challenge claims,
// transactions and issued certificates, package boltstore),
// -identity, -mdm-issuer, -jwks (URL or file), -directory, -log text|json.
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/examples/internal/demo"
	"github.com/scepkit/scepkit/scep"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed, and asking for it is no failure
		}
		fmt.Fprintln(os.Stderr, "embedca:", err)
		os.Exit(1)
	}
}

type config struct {
	listen, state, identity, mdmIssuer, jwks, directory, log string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("embedca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8090", "listen on `ADDR` (the gateways of the README use 8080 and 8082, the MDM 8081)")
	fs.StringVar(&c.state, "state", "scepkit-embedca-state", "CA and issued certificates `DIR`")
	fs.StringVar(&c.identity, "identity", "scepkit-embedca", "this CA's identity: the audience of its challenges (not the gateway's, so that no challenge is good at both)")
	fs.StringVar(&c.mdmIssuer, "mdm-issuer", "scepkit-mdm", "the MDM's issuer `name`")
	fs.StringVar(&c.jwks, "jwks", "", "the MDM's challenge keys: JWKS `URL or FILE`; required")
	fs.StringVar(&c.directory, "directory", "", "users and devices JSON `FILE`; required")
	fs.StringVar(&c.log, "log", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.jwks == "" || c.directory == "":
		return nil, errors.New("-jwks and -directory are required")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := demo.NewLogger(c.log, stderr)
	if err != nil {
		return err
	}
	a, err := newCA(ctx, c, log)
	if err != nil {
		return err
	}
	defer a.store.Close()
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /enroll", a.enroll)
	mux.HandleFunc("GET /ca", a.caPEM)
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "scepkit embedca serving on %s\n", base)
	fmt.Fprintf(stdout, "  enroll: POST %s/enroll {\"csr\": base64 DER, \"challenge\": ...}\n", base)
	log.Info("serving", "addr", base, "identity", c.identity, "mdm", c.mdmIssuer)
	return demo.Serve(ctx, ln, mux, log)
}

// ca is the existing CA with the registration point embedded.
type ca struct {
	ca    *catemplate.CA
	rp    *crp.RegistrationPoint
	store *boltstore.Store
	log   *slog.Logger
}

// newCA assembles the registration point around the CA: the MDM's keys and a verifier
// for this CA's identity, the directory and device registry, the profiles the MDM hands
// out, the template, the CA as Issuer, and a store of what it issued.
func newCA(ctx context.Context, c *config, log *slog.Logger) (*ca, error) {
	authority, err := catemplate.LoadCA(c.state)
	if errors.Is(err, os.ErrNotExist) {
		authority, err = catemplate.NewCA(catemplate.CAOptions{KeySize: 2048,
			Subject: pkix.Name{CommonName: "scepkit embedded CA", Organization: []string{"scepkit"}}})
		if err == nil {
			err = catemplate.SaveCA(c.state, authority)
		}
	}
	if err != nil {
		return nil, err
	}
	keys, err := demo.LoadKeySet(ctx, c.jwks)
	if err != nil {
		return nil, err
	}
	dir, err := demo.LoadDirectory(c.directory)
	if err != nil {
		return nil, err
	}
	// The profiles' server URLs do not matter here (no SCEP), only what they make the
	// CSR carry.
	profiles, err := demo.Profiles("http://"+c.listen+"/enroll", authority.Certificate)
	if err != nil {
		return nil, err
	}
	// Challenge claims, transactions and issued certificates survive restarts and
	// crashes in one file (a challenge is used once, also across a restart).
	store, migrated, err := boltstore.OpenDir(c.state, &boltstore.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	if migrated > 0 {
		log.Info("migrated issued certificates into the store", "count", migrated)
	}
	rp := &crp.RegistrationPoint{
		Verifier: &challenge.Verifier{Keys: keys, Issuer: c.mdmIssuer, Audience: c.identity,
			Replay: store},
		Transactions: store,
		Users:        &dir.MemoryDirectory, Devices: &dir.MemoryRegistry, Profiles: profiles,
		Templates: demo.Templates(), Issuer: crp.CAIssuer{CA: authority},
		Certificates: store, Revocation: store,
		Notifier: crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
			log.InfoContext(ctx, "outcome", "transactionID", n.TransactionID, "outcome", n.Outcome,
				"user", n.UserID, "device", n.DeviceID, "reason", n.Reason)
			return nil
		}),
		Logger: log,
	}
	if err := rp.Validate(); err != nil {
		store.Close()
		return nil, err
	}
	return &ca{ca: authority, rp: rp, store: store, log: log}, nil
}

type enrollRequest struct {
	CSR       string `json:"csr"` // base64 (standard) of the DER PKCS#10
	Challenge string `json:"challenge,omitempty"`
	// Renewal: the certificate being renewed (PEM) and its key's signature over the
	// CSR's DER (base64).
	Certificate string `json:"certificate,omitempty"`
	Signature   string `json:"signature,omitempty"`
}

type enrollResponse struct {
	TransactionID string `json:"transaction_id"`
	Certificate   string `json:"certificate,omitempty"`
	Serial        string `json:"serial,omitempty"`
	NotAfter      string `json:"not_after,omitempty"`
	Status        string `json:"status,omitempty"`
	Phase         string `json:"phase,omitempty"`
	Reason        string `json:"reason,omitempty"`
	FailInfo      string `json:"fail_info,omitempty"`
	Error         string `json:"error,omitempty"`
}

const maxBody = 64 << 10

func (a *ca) enroll(w http.ResponseWriter, r *http.Request) {
	var req enrollRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, enrollResponse{Error: "body over 64 KiB"})
			return
		}
		writeJSON(w, http.StatusBadRequest, enrollResponse{Error: "want JSON {\"csr\": base64 DER, \"challenge\": string}"})
		return
	}
	der, err := base64.StdEncoding.DecodeString(req.CSR)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, enrollResponse{Error: "csr is not standard base64"})
		return
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, enrollResponse{Error: "csr is not a DER PKCS#10 request"})
		return
	}
	tid := newTransactionID()
	var proof *crp.Proof
	var proofErr error
	switch {
	case req.Certificate != "":
		// Renewal: the client proves it holds the old certificate's key by signing
		// its CSR with it. Never pass on a certificate without such a proof.
		blk, _ := pem.Decode([]byte(req.Certificate))
		sig, serr := base64.StdEncoding.DecodeString(req.Signature)
		if blk == nil || serr != nil {
			writeJSON(w, http.StatusBadRequest, enrollResponse{Error: "certificate must be PEM and signature base64"})
			return
		}
		old, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, enrollResponse{Error: "certificate is not an X.509 certificate"})
			return
		}
		proof, proofErr = crp.SignatureProof(old, csr, sig)
	case req.Challenge == "":
		writeJSON(w, http.StatusBadRequest, enrollResponse{Error: "challenge is required (or certificate and signature, to renew)"})
		return
	}
	var res *crp.Result
	if proofErr != nil {
		err = &crp.Error{Phase: crp.PhaseGateway, Reason: crp.ReasonRenewalSigner, Err: proofErr}
	} else {
		res, err = a.rp.Enroll(r.Context(), &crp.EnrollRequest{TransactionID: tid, CSR: csr, Challenge: req.Challenge, Proof: proof})
	}
	var refused *crp.Error
	switch {
	case errors.As(err, &refused):
		code := http.StatusForbidden // the request is well formed but not allowed
		switch {
		case errors.Is(err, crp.ErrUnavailable) || refused.Reason == crp.ReasonCAUnavailable:
			code = http.StatusServiceUnavailable
		case refused.Reason == crp.ReasonCSRSignature || refused.Reason == crp.ReasonMalformed ||
			refused.Reason == crp.ReasonNoChallenge:
			code = http.StatusBadRequest // the request itself is broken
		}
		writeJSON(w, code, enrollResponse{TransactionID: tid, Status: "refused", Phase: refused.Phase.String(),
			Reason: string(refused.Reason), FailInfo: refused.FailInfo().String()})
	case err != nil:
		a.log.ErrorContext(r.Context(), "enroll", "transactionID", tid, "err", err)
		writeJSON(w, http.StatusInternalServerError, enrollResponse{TransactionID: tid, Error: "internal error"})
	case res.Status == scep.Pending:
		writeJSON(w, http.StatusAccepted, enrollResponse{TransactionID: tid, Status: "pending"})
	default:
		c := res.Certificate
		writeJSON(w, http.StatusOK, enrollResponse{TransactionID: tid, Status: "issued",
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})),
			Serial:      fmt.Sprintf("%x", c.SerialNumber), NotAfter: c.NotAfter.UTC().Format(time.RFC3339)})
	}
}

func (a *ca) caPEM(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.ca.Certificate.Raw}))
}

// newTransactionID names a request in the trace and the logs.
func newTransactionID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "rest-" + hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
