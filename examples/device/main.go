// Command device is the device's part of scepkit's flow: it makes a key, builds a CSR
// carrying the subject and the challenge from its SCEP profile, enrolls with
// scep.Client, and later renews its certificate, signing the renewal with the
// certificate being renewed (no challenge needed). The CA is pinned by the SHA-256
// fingerprint the profile or the gateway gives.
//
//	go run ./examples/device -url http://127.0.0.1:8080/scep -challenge "$CHALLENGE" \
//	    -subject CN=alice@example.com -ca-fingerprint "$CA_SHA256" -key key.pem -cert cert.pem
//	go run ./examples/device -url http://127.0.0.1:8080/scep -renew \
//	    -ca-fingerprint "$CA_SHA256" -key key.pem -cert cert.pem
//
// Get the challenge and subject from the MDM (examples/mdm's /profile, or the
// quickstart's /mdm/profile, which also gives ca_fingerprint).
//
// -subject is a distinguished name such as CN=alice@example.com,O=Example (a value
// without "=" is taken as the CN); values with a comma are quoted ("...").
// Enrollment makes a new RSA key (-key-size, default 2048). Renewal makes a new key too
// and keeps the subject and SANs of the certificate being renewed. The key is written
// as PKCS#8 PEM with mode 0600 and the certificate as PEM, each to a temporary file
// renamed into place, so a crash never leaves half a file; the key is written first,
// then the certificate. -ca-fingerprint is required: without it anyone on the network
// path could read the challenge and answer in the CA's name. -insecure-skip-ca-verify
// drops that requirement, for looking at a server by hand only.
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"github.com/scepkit/scepkit/internal/atomicfile"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/scepkit/scepkit/scep"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed, and asking for it is no failure
		}
		fmt.Fprintln(os.Stderr, "device:", err)
		os.Exit(1)
	}
}

type config struct {
	url, challenge, subject, keyPath, certPath, fingerprint string
	renew, insecure, sha1                                   bool
	keySize                                                 int
	timeout                                                 time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.url, "url", "", "SCEP `URL` of the gateway; required")
	fs.StringVar(&c.challenge, "challenge", "", "challenge password from the profile (enrollment)")
	fs.StringVar(&c.subject, "subject", "", "subject `DN` from the profile, e.g. CN=alice@example.com (enrollment)")
	fs.StringVar(&c.keyPath, "key", "device.key", "private key `FILE` (PEM)")
	fs.StringVar(&c.certPath, "cert", "device.crt", "certificate `FILE` (PEM)")
	fs.StringVar(&c.fingerprint, "ca-fingerprint", "", "SHA-256 of the CA certificate, `hex`: pins the CA")
	fs.BoolVar(&c.insecure, "insecure-skip-ca-verify", false, "trust whatever CA the server presents (no -ca-fingerprint); unsafe")
	fs.BoolVar(&c.renew, "renew", false, "renew the certificate in -cert, signing with it and -key")
	fs.BoolVar(&c.sha1, "sha1", false, "sign with SHA-1 and accept replies signed with it, for servers that sign their replies so (step-ca v0.30); off: SHA-1 is refused")
	fs.IntVar(&c.keySize, "key-size", 2048, "RSA key size in bits")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "give up after this long (polling included)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.url == "":
		return nil, errors.New("-url is required")
	case c.fingerprint == "" && !c.insecure:
		return nil, errors.New("-ca-fingerprint is required (the CA's SHA-256, from the profile or the gateway)")
	case !c.renew && (c.challenge == "" || c.subject == ""):
		return nil, errors.New("enrollment needs -challenge and -subject (or use -renew)")
	case c.renew && (c.challenge != "" || c.subject != ""):
		return nil, errors.New("-renew takes the subject from the certificate and needs no challenge")
	case c.keySize < 2048:
		return nil, errors.New("-key-size: at least 2048")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	client := &scep.Client{URL: c.url}
	if c.sha1 {
		client.Digest = crypto.SHA1
	}
	if c.fingerprint == "" {
		fmt.Fprintln(stderr, "device: warning: -insecure-skip-ca-verify: the CA is not pinned")
		client.InsecureSkipCAVerify = true
	} else {
		fp, err := hex.DecodeString(strings.ReplaceAll(c.fingerprint, ":", ""))
		if err != nil || len(fp) != sha256.Size {
			return fmt.Errorf("-ca-fingerprint: want %d hex bytes (SHA-256)", sha256.Size)
		}
		client.CAFingerprint = fp
	}
	// GetCACert checks the pin before the key is made and the challenge sent.
	if _, err := client.GetCACert(ctx); err != nil {
		return fmt.Errorf("GetCACert: %w", err)
	}

	key, err := rsa.GenerateKey(rand.Reader, c.keySize)
	if err != nil {
		return err
	}
	var cert *x509.Certificate
	if c.renew {
		cert, err = renew(ctx, client, c, key)
	} else {
		cert, err = enroll(ctx, client, c, key)
	}
	var fe *scep.FailError
	if errors.As(err, &fe) {
		return fmt.Errorf("the gateway refused the request: FAILURE %v (the gateway's log says why)", fe.Info)
	}
	if err != nil {
		return err
	}
	// The Client accepts only a certificate a CA it keeps issued: the pinned CA or an
	// intermediate chaining to it, such as an issuing CA under a pinned root.
	if err := save(c, key, cert); err != nil {
		return err
	}
	verb := "enrolled"
	if c.renew {
		verb = "renewed"
	}
	fmt.Fprintf(stdout, "%s: subject %s, serial %x, valid until %s, issuer %s\n", verb, cert.Subject,
		cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339), cert.Issuer)
	fmt.Fprintf(stdout, "key %s, certificate %s\n", c.keyPath, c.certPath)
	return nil
}

func enroll(ctx context.Context, client *scep.Client, c *config, key *rsa.PrivateKey) (*x509.Certificate, error) {
	rawSubject, err := parseSubject(c.subject)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: rawSubject}, key)
	if err != nil {
		return nil, err
	}
	if csr, err = scep.AddChallengePassword(csr, c.challenge, key, nil); err != nil {
		return nil, err
	}
	return client.Enroll(ctx, csr, key)
}

// renew asks for a new certificate for a new key, with the subject and SANs of the
// current one, signed with the current certificate and key.
func renew(ctx context.Context, client *scep.Client, c *config, key *rsa.PrivateKey) (*x509.Certificate, error) {
	old, oldKey, err := load(c)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{RawSubject: old.RawSubject}
	for _, ext := range old.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	return client.Renew(ctx, csr, old, oldKey)
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

func load(c *config) (*x509.Certificate, *rsa.PrivateKey, error) {
	b, err := os.ReadFile(c.certPath)
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", c.certPath)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if b, err = os.ReadFile(c.keyPath); err != nil {
		return nil, nil, err
	}
	if blk, _ = pem.Decode(b); blk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", c.keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", c.keyPath, err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the RSA key of %s", c.keyPath, c.certPath)
	}
	return cert, key, nil
}

func save(c *config, key *rsa.PrivateKey, cert *x509.Certificate) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(c.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// attributeTypes maps the DN keywords -subject accepts to their OIDs.
var attributeTypes = map[string]asn1.ObjectIdentifier{
	"CN": {2, 5, 4, 3}, "SERIALNUMBER": {2, 5, 4, 5}, "C": {2, 5, 4, 6}, "L": {2, 5, 4, 7},
	"ST": {2, 5, 4, 8}, "S": {2, 5, 4, 8}, "STREET": {2, 5, 4, 9}, "O": {2, 5, 4, 10}, "OU": {2, 5, 4, 11},
	"T": {2, 5, 4, 12}, "TITLE": {2, 5, 4, 12}, "UID": {0, 9, 2342, 19200300, 100, 1, 1},
	"E": {1, 2, 840, 113549, 1, 9, 1}, "EMAIL": {1, 2, 840, 113549, 1, 9, 1},
	"DC": {0, 9, 2342, 19200300, 100, 1, 25},
}

// parseSubject turns "CN=alice@example.com,O=Example" into a DER subject, in the order
// written. Values may be double-quoted (a doubled quote inside is one quote); a bare
// value without "=" is a CN.
func parseSubject(s string) ([]byte, error) {
	if !strings.Contains(s, "=") {
		s = "CN=" + quote(s)
	}
	var rdns pkix.RDNSequence
	for rest := s; ; {
		kw, after, ok := strings.Cut(rest, "=")
		if !ok {
			return nil, fmt.Errorf("-subject %q: want KEYWORD=value[,KEYWORD=value...]", s)
		}
		oid, known := attributeTypes[strings.ToUpper(strings.TrimSpace(kw))]
		if !known {
			return nil, fmt.Errorf("-subject %q: unknown keyword %q", s, strings.TrimSpace(kw))
		}
		var value string
		after = strings.TrimLeft(after, " ")
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after); i++ {
				if after[i] == '"' {
					if i+1 < len(after) && after[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(after[i])
			}
			if i >= len(after) {
				return nil, fmt.Errorf("-subject %q: unterminated quote", s)
			}
			value, after = b.String(), strings.TrimLeft(after[i+1:], " ")
			if after != "" && after[0] != ',' {
				return nil, fmt.Errorf("-subject %q: text after a quoted value", s)
			}
		} else {
			value, after, _ = strings.Cut(after, ",")
			after = "," + after
			value = strings.TrimSpace(value)
		}
		if value == "" {
			return nil, fmt.Errorf("-subject %q: empty value for %s", s, kw)
		}
		attr := pkix.AttributeTypeAndValue{Type: oid, Value: value}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{attr})
		if after == "" || after == "," {
			break
		}
		rest = after[1:]
	}
	return asn1.Marshal(rdns)
}

func quote(v string) string { return `"` + strings.ReplaceAll(v, `"`, `""`) + `"` }
