package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scepkit/scepkit/internal/atomicfile"
)

const adminUsage = `usage: scepkit admin [flags] COMMAND

commands:
  pending                       list pending requests (every page)
  approve TRANSACTION-ID        issue a pending request
  reject TRANSACTION-ID [WHY]   refuse a pending request
  revoke [-unrecorded] SERIAL REASON
                                revoke a certificate (serial in hex; RFC 5280 CRLReason 0-6, 9 or 10);
                                -unrecorded for one the log says was withheld from its device and not
                                recorded in the inventory (listed in every CA's CRL)
  cert SERIAL                   show one issued certificate
  certs [-user U] [-device D] [-expiring-within 720h] [-withheld]
                                list issued certificates (every page); -withheld: only those
                                the CA signed that their device was refused (revoke them)
  backup FILE                   save a copy of state.db taken while the gateway serves (not
                                with PostgreSQL); restore it as state.db beside an empty
                                state.db-journal, with the gateway stopped

flags (also from the environment in brackets):
`

// adminCommand calls the admin API and prints its JSON answer.
func adminCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	u := fs.String("url", envOr("SCEPKIT_ADMIN_URL", "https://127.0.0.1:8443"), "admin API base `URL` [SCEPKIT_ADMIN_URL]")
	caFile := fs.String("ca", os.Getenv("SCEPKIT_ADMIN_CA"), "PEM `FILE` of the CA that issued the admin listener's certificate [SCEPKIT_ADMIN_CA]")
	tokenFile := fs.String("token-file", os.Getenv("SCEPKIT_ADMIN_TOKEN_FILE"), "`FILE` holding the bearer token [SCEPKIT_ADMIN_TOKEN_FILE]")
	certFile := fs.String("cert", os.Getenv("SCEPKIT_ADMIN_CLIENT_CERT"), "client certificate PEM `FILE` [SCEPKIT_ADMIN_CLIENT_CERT]")
	keyFile := fs.String("key", os.Getenv("SCEPKIT_ADMIN_CLIENT_KEY"), "client key PEM `FILE` [SCEPKIT_ADMIN_CLIENT_KEY]")
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &configError{err}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return &configError{errors.New("admin: a command is required")}
	}
	// A flag after the command ("approve -h") is a request for help, never a
	// transaction ID or serial sent to the API.
	for _, a := range rest[1:] {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.Usage()
			return flag.ErrHelp
		}
	}
	// The admin API is HTTPS only: a bearer token sent to a plain-http URL (a typo, a
	// wrong variable) would be readable on the way.
	if base, err := url.Parse(*u); err != nil || base.Scheme != "https" || base.Host == "" {
		return &configError{fmt.Errorf("admin: -url %q: the admin API is reached over https only", *u)}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		b, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return fmt.Errorf("-ca %s: no PEM certificate", *caFile)
		}
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	var token string
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Scheme != "https" {
				return fmt.Errorf("redirected to %s: the admin API is reached over https only", r.URL.Redacted())
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}}
	// send makes one call and returns the answer's body, which it writes to stdout
	// unless the status is 200.
	send := func(method, path string, body any) ([]byte, error) {
		req, err := newAdminRequest(ctx, method, strings.TrimSuffix(*u, "/")+path, token, body)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			stdout.Write(out)
			return nil, fmt.Errorf("admin API: %s", resp.Status)
		}
		return out, nil
	}
	call := func(method, path string, body any) error {
		out, err := send(method, path, body)
		if err == nil {
			_, err = stdout.Write(out)
		}
		return err
	}
	// list follows a list call's pages (query q, entries under field) and prints
	// their entries as one JSON array, those keep accepts when it is set.
	list := func(path string, q url.Values, field string, keep func(json.RawMessage) bool) error {
		all := []json.RawMessage{}
		for {
			out, err := send(http.MethodGet, path+"?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			var page map[string]json.RawMessage
			var entries []json.RawMessage
			var next string
			if err := json.Unmarshal(out, &page); err != nil {
				return fmt.Errorf("admin API: %w", err)
			}
			if err := json.Unmarshal(page[field], &entries); err != nil {
				return fmt.Errorf("admin API: %s: %w", field, err)
			}
			if raw, ok := page["next"]; ok {
				if err := json.Unmarshal(raw, &next); err != nil {
					return fmt.Errorf("admin API: next: %w", err)
				}
			}
			for _, e := range entries {
				if keep == nil || keep(e) {
					all = append(all, e)
				}
			}
			if next == "" || next == q.Get("after") {
				break
			}
			q.Set("after", next)
		}
		b, err := json.Marshal(all)
		if err != nil {
			return err
		}
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	need := func(n int) error {
		if len(rest) < n+1 {
			return &configError{fmt.Errorf("admin %s: %d argument(s) needed (scepkit admin -h)", rest[0], n)}
		}
		return nil
	}
	switch rest[0] {
	case "backup":
		if err := need(1); err != nil {
			return err
		}
		return backupTo(ctx, client, strings.TrimSuffix(*u, "/")+"/v1/backup", token, rest[1])
	case "pending":
		return list("/v1/pending", url.Values{}, "pending", nil)
	case "approve":
		if err := need(1); err != nil {
			return err
		}
		return call(http.MethodPost, "/v1/pending/"+pathSegment(rest[1])+"/approve", nil)
	case "reject":
		if err := need(1); err != nil {
			return err
		}
		why := strings.Join(rest[2:], " ")
		return call(http.MethodPost, "/v1/pending/"+pathSegment(rest[1])+"/reject", map[string]string{"reason": why})
	case "revoke":
		unrecorded := false
		for i := 1; i < len(rest); i++ { // the flag before or after the arguments
			if rest[i] == "-unrecorded" || rest[i] == "--unrecorded" {
				unrecorded = true
				rest = append(rest[:i:i], rest[i+1:]...)
				break
			}
		}
		if err := need(2); err != nil {
			return err
		}
		reason, err := strconv.Atoi(rest[2])
		if err != nil {
			return &configError{fmt.Errorf("admin revoke: REASON is a number (RFC 5280 CRLReason): %w", err)}
		}
		return call(http.MethodPost, "/v1/certificates/"+pathSegment(rest[1])+"/revoke",
			map[string]any{"reason": reason, "unrecorded": unrecorded})
	case "cert":
		if err := need(1); err != nil {
			return err
		}
		return call(http.MethodGet, "/v1/certificates/"+pathSegment(rest[1]), nil)
	case "certs":
		cfs := flag.NewFlagSet("certs", flag.ContinueOnError)
		cfs.SetOutput(stderr)
		user := cfs.String("user", "", "issued to this user id")
		device := cfs.String("device", "", "issued to this device id")
		within := cfs.Duration("expiring-within", 0, "expiring within this duration")
		withheld := cfs.Bool("withheld", false, "only the certificates withheld from their device")
		if err := cfs.Parse(rest[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &configError{err}
		}
		q := url.Values{}
		if *user != "" {
			q.Set("user", *user)
		}
		if *device != "" {
			q.Set("device", *device)
		}
		if *within > 0 {
			q.Set("expiring_within", within.String())
		}
		var keep func(json.RawMessage) bool
		if *withheld {
			q.Set("withheld", "true")
			// Only what the gateway marks withheld is printed: one older than the
			// filter ignores withheld=true and answers with every certificate, which an
			// operator told to revoke this list must never see.
			keep = func(e json.RawMessage) bool {
				var c struct {
					Withheld bool `json:"withheld"`
				}
				return json.Unmarshal(e, &c) == nil && c.Withheld
			}
		}
		return list("/v1/certificates", q, "certificates", keep)
	}
	fs.Usage()
	return &configError{fmt.Errorf("admin: unknown command %q", rest[0])}
}

// newAdminRequest is a call to the admin API at url with the bearer token (none when
// token is empty), and body, unless nil, sent as JSON.
func newAdminRequest(ctx context.Context, method, url, token string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// backupTo saves the store's backup the admin API answers at url into path, whole or
// not at all: a file of its own beside path, synced, then renamed. It is readable by
// its owner alone: it holds every certificate and transaction.
func backupTo(ctx context.Context, client *http.Client, url, token, path string) error {
	req, err := newAdminRequest(ctx, http.MethodGet, url, token, nil)
	if err != nil {
		return err
	}
	// The file first: a destination that cannot be written fails before the gateway
	// makes a copy of the whole store for nothing.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// A copy of a large store takes longer than the other calls' whole timeout:
	// bounded here while the gateway makes its copy, not while it sends.
	c := *client
	c.Timeout = 0
	if t, ok := c.Transport.(*http.Transport); ok {
		t = t.Clone()
		t.ResponseHeaderTimeout = 10 * time.Minute
		c.Transport = t
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("admin API: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	// A body cut short is an error here (net/http's, for a declared length; a
	// chunked body without its last chunk, for the gateway's cut connection).
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("admin backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path)) // the new name, as atomicfile.Write keeps it
}

// pathSegment is s escaped as one segment of a URL path. url.PathEscape leaves '.'
// alone, and a segment "." or ".." would be removed (RFC 3986 §5.2.4) by the admin
// API's router, which redirects the call elsewhere: a transactionID is the device's
// choice of printable text (RFC 8894 §3.2.1.1) and may be either. Their dots are
// escaped as %2E, which names them.
func pathSegment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}
