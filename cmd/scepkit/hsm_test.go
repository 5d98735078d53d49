//go:build cgo

package main

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/internal/softhsmtest"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/pkcs11key"
	"github.com/scepkit/scepkit/scep"
)

// pssOnly is how an operator restricts a token key to RSA-PSS: pkcs11-tool's
// --allowed-mechanisms (CKA_ALLOWED_MECHANISMS).
const pssOnly = "RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS"

// tokenWithRestrictedKeys is tokenWithKeys, except that the keys labelled in
// restricted are made by pkcs11-tool and may be used with RSA-PSS only.
func tokenWithRestrictedKeys(t *testing.T, restricted ...string) *softhsmtest.Token {
	t.Helper()
	tool := testserver.LookPath(t, "pkcs11-tool", "apt-get install opensc")
	st := softhsmtest.New(t)
	tok, err := pkcs11key.Open(pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
	require.NoError(t, err)
	defer tok.Close()
	for _, label := range []string{"scepkit-ca", "scepkit-ra-sign", "scepkit-ra-encrypt"} {
		if !slices.Contains(restricted, label) {
			_, err := tok.GenerateKey(label, pkcs11key.RSA2048)
			require.NoError(t, err)
			continue
		}
		id := make([]byte, 8)
		rand.Read(id)
		cmd := exec.Command(tool, "--module", st.Module, "--token-label", st.Label, "--login", "--pin", st.PIN,
			"--keypairgen", "--key-type", "rsa:2048", "--label", label, "--id", hex.EncodeToString(id),
			"--sensitive", "--allowed-mechanisms", pssOnly)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+st.Conf)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	return st
}

// certsForTokenKeys writes into stateDir the CA and RA certificates of the token's
// keys, as a first start with keys that all sign would have (the CA's must).
func certsForTokenKeys(t *testing.T, st *softhsmtest.Token, stateDir string) {
	t.Helper()
	tok, err := pkcs11key.Open(pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
	require.NoError(t, err)
	defer tok.Close()
	keys := map[string]*pkcs11key.Key{}
	for _, label := range []string{"scepkit-ca", "scepkit-ra-sign", "scepkit-ra-encrypt"} {
		keys[label], err = tok.Key(label)
		require.NoError(t, err)
	}
	name, err := parseCAName("CN=scepkit CA,O=scepkit")
	require.NoError(t, err)
	ca, ra, err := newPKI(name, "", keys["scepkit-ca"], keys["scepkit-ra-sign"], keys["scepkit-ra-encrypt"])
	require.NoError(t, err)
	require.NoError(t, writeCerts(stateDir, ca, ra))
}

// deleteTokenKey deletes the token's key pair labelled label.
func deleteTokenKey(t *testing.T, st *softhsmtest.Token, label string) {
	t.Helper()
	ctx, err := crypto11.Configure(&crypto11.Config{Path: st.Module, TokenLabel: st.Label, Pin: st.PIN})
	require.NoError(t, err)
	defer ctx.Close()
	k, err := ctx.FindKeyPair(nil, []byte(label))
	require.NoError(t, err)
	require.NotNil(t, k)
	require.NoError(t, k.(interface{ Delete() error }).Delete())
}

// requireKeysKept checks that the token's key pairs labelled labels are there, their
// private keys sensitive and not extractable.
func requireKeysKept(t *testing.T, st *softhsmtest.Token, labels ...string) {
	t.Helper()
	ctx, err := crypto11.Configure(&crypto11.Config{Path: st.Module, TokenLabel: st.Label, Pin: st.PIN})
	require.NoError(t, err)
	defer ctx.Close()
	for _, label := range labels {
		k, err := ctx.FindKeyPair(nil, []byte(label))
		require.NoError(t, err)
		require.NotNil(t, k, label)
		attrs, err := ctx.GetAttributes(k, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
		require.NoError(t, err)
		require.Equal(t, []byte{1}, attrs[crypto11.CkaSensitive].Value, "%s CKA_SENSITIVE", label)
		require.Equal(t, []byte{0}, attrs[crypto11.CkaExtractable].Value, "%s CKA_EXTRACTABLE", label)
	}
}

// TestKeysThatCannotSignRefused: a CA or RA signing key in the token that cannot make
// the signatures the gateway makes (restricted to RSA-PSS, or gone) refuses the
// start, naming its setting, on a first start (before any certificate is made) and
// on a later one. It started: /readyz said the keys were not ok, and every
// enrollment issued and recorded a certificate, then answered HTTP 500 because the
// CertRep could not be signed (CKR_MECHANISM_INVALID).
func TestKeysThatCannotSignRefused(t *testing.T) {
	cases := []struct {
		name       string
		restricted []string
		certs      bool   // the certificates are in state_dir already
		deleted    string // a key deleted after the certificates were made
		want       []string
	}{
		{name: "RA signing key restricted to RSA-PSS, first start", restricted: []string{"scepkit-ra-sign"},
			want: []string{"setting pkcs11.ra_sign_key (SCEPKIT_PKCS11_RA_SIGN_KEY): the key cannot make the SHA256-RSA signatures", "CKR_MECHANISM_INVALID"}},
		{name: "RA signing key restricted to RSA-PSS, certificates made", restricted: []string{"scepkit-ra-sign"}, certs: true,
			want: []string{"setting pkcs11.ra_sign_key (SCEPKIT_PKCS11_RA_SIGN_KEY): the key cannot make the SHA256-RSA signatures", "CKR_MECHANISM_INVALID"}},
		{name: "CA key restricted to RSA-PSS, first start", restricted: []string{"scepkit-ca"},
			want: []string{"setting pkcs11.ca_key (SCEPKIT_PKCS11_CA_KEY): the key cannot make the SHA256-RSA signatures", "CKR_MECHANISM_INVALID"}},
		{name: "RA encryption key restricted to RSA-PSS, first start", restricted: []string{"scepkit-ra-encrypt"},
			want: []string{"setting pkcs11.ra_encrypt_key (SCEPKIT_PKCS11_RA_ENCRYPT_KEY): the key cannot decrypt what clients encrypt to it", "CKR_MECHANISM_INVALID"}},
		{name: "RA encryption key restricted to RSA-PSS, certificates made", restricted: []string{"scepkit-ra-encrypt"}, certs: true,
			want: []string{"setting pkcs11.ra_encrypt_key (SCEPKIT_PKCS11_RA_ENCRYPT_KEY): the key cannot decrypt what clients encrypt to it", "CKR_MECHANISM_INVALID"}},
		{name: "RA signing key deleted", certs: true, deleted: "scepkit-ra-sign",
			want: []string{"setting pkcs11.ra_sign_key (SCEPKIT_PKCS11_RA_SIGN_KEY): pkcs11key: key not found"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := tokenWithRestrictedKeys(t, tc.restricted...)
			f := newFixture(t)
			f.write(t, "pin", []byte(st.PIN+"\n"))
			if tc.certs {
				certsForTokenKeys(t, st, f.path("state"))
			}
			if tc.deleted != "" {
				deleteTokenKey(t, st, tc.deleted)
			}
			out, _ := refusedStart(t, f.config(t, "", pkcs11Section(st, f)), "SOFTHSM2_CONF="+st.Conf)
			for _, w := range tc.want {
				require.Contains(t, out, w)
			}
			if !tc.certs {
				_, err := os.Stat(filepath.Join(f.path("state"), catemplate.CACertFile))
				require.ErrorIs(t, err, os.ErrNotExist, "a refused first start left a CA certificate behind")
			}
		})
	}
}

// pkcs11Section is the [pkcs11] section for st, with its PIN in f's file "pin".
func pkcs11Section(st *softhsmtest.Token, f *fixture) string {
	return "[pkcs11]\nmodule = \"" + st.Module + "\"\ntoken_label = \"" + st.Label + "\"\npin_file = \"" + f.path("pin") + "\"\n"
}

// TestTokenOpenErrorsNameSetting: a PIN the token refuses is blamed on
// pkcs11.pin_file, a token the module does not have on pkcs11.token_label, and only
// what else fails on pkcs11.module (every failure of pkcs11key.Open was the
// module's); a locked PIN says that the token's SO must unlock it.
func TestTokenOpenErrorsNameSetting(t *testing.T) {
	st := softhsmtest.New(t)
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	f.write(t, "wrong-pin", []byte("9999\n"))
	f.write(t, "short-pin", []byte("1\n"))
	cfg := f.config(t, "", pkcs11Section(st, f))
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"wrong PIN", []string{"SCEPKIT_PKCS11_PIN_FILE=" + f.path("wrong-pin")},
			[]string{"setting pkcs11.pin_file (SCEPKIT_PKCS11_PIN_FILE): the token refused the user PIN", "CKR_PIN_INCORRECT"}},
		{"PIN too short", []string{"SCEPKIT_PKCS11_PIN_FILE=" + f.path("short-pin")},
			[]string{"setting pkcs11.pin_file (SCEPKIT_PKCS11_PIN_FILE): the token refused the user PIN"}},
		{"unknown token", []string{"SCEPKIT_PKCS11_TOKEN_LABEL=no-such-token"},
			[]string{"setting pkcs11.token_label (SCEPKIT_PKCS11_TOKEN_LABEL): pkcs11key: token not found", `"no-such-token"`}},
		{"missing module", []string{"SCEPKIT_PKCS11_MODULE=" + f.path("absent.so")},
			[]string{"setting pkcs11.module (SCEPKIT_PKCS11_MODULE): "}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := refusedStart(t, cfg, append(tc.env, "SOFTHSM2_CONF="+st.Conf)...)
			for _, w := range tc.want {
				require.Contains(t, out, w)
			}
		})
	}

	// What SoftHSM2 does not do: lock or expire the PIN. The codes as a module
	// returns them, through pkcs11key.Open's wrapping.
	codes := []struct {
		code pkcs11.Error
		want string
	}{
		{pkcs11.CKR_PIN_LOCKED, "setting pkcs11.pin_file (SCEPKIT_PKCS11_PIN_FILE): the token's user PIN is locked: the token's security officer (SO) must unlock it"},
		{pkcs11.CKR_PIN_EXPIRED, "setting pkcs11.pin_file (SCEPKIT_PKCS11_PIN_FILE): the token's user PIN has expired"},
		{pkcs11.CKR_PIN_LEN_RANGE, "setting pkcs11.pin_file (SCEPKIT_PKCS11_PIN_FILE): the token refused the user PIN"},
		{pkcs11.CKR_DEVICE_ERROR, "setting pkcs11.module (SCEPKIT_PKCS11_MODULE): "},
	}
	for _, c := range codes {
		err := tokenOpenError(fmt.Errorf("pkcs11key: opening token: failed to log into long term session: %w", c.code))
		require.ErrorContains(t, err, c.want)
	}
}

// TestExitStatus: a start refused for its configuration (a setting, the file, the
// command line, the token's PIN, a key that cannot sign) exits with exitConfig, 2,
// which dist/scepkit.service lists in RestartPreventExitStatus; what a restart may
// mend (a token not present, a port busy) exits 1, and -h 0. Every failure exited 1,
// so systemd's Restart=on-failure tried a wrong PIN every 5 seconds, which locks
// tokens that lock the user PIN after a few failures.
func TestExitStatus(t *testing.T) {
	st := tokenWithRestrictedKeys(t, "scepkit-ra-sign")
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	f.write(t, "wrong-pin", []byte("9999\n"))
	f.write(t, "unknown.toml", []byte("listne = \"127.0.0.1:0\"\n"))
	cfg := f.config(t, "", "")
	hsm := f.config(t, "", pkcs11Section(st, f))
	busy, err := net.Listen("tcp", "127.0.0.1:26899")
	require.NoError(t, err)
	defer busy.Close()
	mdm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/busy":
			http.Error(w, "starting", http.StatusServiceUnavailable)
		case "/broken":
			w.Write([]byte(`{"keys": [`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer mdm.Close()
	cases := []struct {
		name string
		args []string
		env  []string
		want int
	}{
		{"help", []string{"-h"}, nil, 0},
		{"unknown command", []string{"serv"}, nil, exitConfig},
		{"unknown flag", []string{"serve", "-confg", cfg}, nil, exitConfig},
		{"unknown setting in the file", []string{"serve", "-config", f.path("unknown.toml")}, nil, exitConfig},
		{"misspelt variable", []string{"serve", "-config", cfg}, []string{"SCEPKIT_REQUIRE_APROVAL=true"}, exitConfig},
		{"bad setting", []string{"serve", "-config", cfg}, []string{"SCEPKIT_LOG=xml"}, exitConfig},
		{"missing file", []string{"serve", "-config", cfg}, []string{"SCEPKIT_DIRECTORY=" + f.path("absent.json")}, exitConfig},
		{"wrong PIN", []string{"serve", "-config", hsm}, []string{"SCEPKIT_PKCS11_PIN_FILE=" + f.path("wrong-pin")}, exitConfig},
		{"RA key that cannot sign", []string{"serve", "-config", hsm}, nil, exitConfig},
		{"token not present", []string{"serve", "-config", hsm}, []string{"SCEPKIT_PKCS11_TOKEN_LABEL=not-plugged-in"}, exitFailure},
		{"port busy", []string{"serve", "-config", cfg}, []string{"SCEPKIT_ADMIN_LISTEN=127.0.0.1:26899"}, exitFailure},
		// The MDM may come up later, on loopback over plain HTTP too.
		{"JWKS URL not reachable", []string{"serve", "-config", cfg}, []string{"SCEPKIT_JWKS=http://127.0.0.1:1/jwks"}, exitFailure},
		{"JWKS URL answers 503", []string{"serve", "-config", cfg}, []string{"SCEPKIT_JWKS=" + mdm.URL + "/busy"}, exitFailure},
		{"JWKS over plain HTTP off loopback", []string{"serve", "-config", cfg}, []string{"SCEPKIT_JWKS=http://mdm.example.com/jwks"}, exitConfig},
		// Waiting mends none of these: systemd restarted the gateway every 5 s.
		{"JWKS URL answers 404", []string{"serve", "-config", cfg}, []string{"SCEPKIT_JWKS=" + mdm.URL + "/typo"}, exitConfig},
		{"JWKS URL answers what is not a JWKS", []string{"serve", "-config", cfg}, []string{"SCEPKIT_JWKS=" + mdm.URL + "/broken"}, exitConfig},
		{"JWKS URL port out of range", []string{"serve", "-config", cfg}, []string{"SCEPKIT_JWKS=http://127.0.0.1:99999/jwks"}, exitConfig},
		// rollover-prepare refuses the same way: nothing in it is mended by running it again.
		{"rollover-prepare without -dir", []string{"rollover-prepare", "-config", cfg}, nil, exitConfig},
		{"rollover-prepare unknown flag", []string{"rollover-prepare", "-config", cfg, "-dri", f.path("next")}, nil, exitConfig},
		{"rollover-prepare misspelt variable", []string{"rollover-prepare", "-config", cfg, "-dir", f.path("next")},
			[]string{"SCEPKIT_STATE_DIRR=x"}, exitConfig},
		// scepkit admin: a command line it refuses is exit 2 too (it was 1, as a
		// gateway that does not answer).
		{"admin without a command", []string{"admin"}, nil, exitConfig},
		{"admin unknown command", []string{"admin", "frob"}, nil, exitConfig},
		{"admin unknown flag", []string{"admin", "-bogus", "pending"}, nil, exitConfig},
		{"admin argument missing", []string{"admin", "revoke", "a"}, nil, exitConfig},
		{"admin revoke reason not a number", []string{"admin", "revoke", "0a", "keyCompromise"}, nil, exitConfig},
		{"admin certs unknown flag", []string{"admin", "certs", "-expiring", "1h"}, nil, exitConfig},
		{"admin over plain http", []string{"admin", "-url", "http://127.0.0.1:26898", "pending"}, nil, exitConfig},
		{"admin API not reachable", []string{"admin", "-url", "https://127.0.0.1:1", "pending"}, nil, exitFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			cmd.Env = append(append(os.Environ(), "SOFTHSM2_CONF="+st.Conf,
				"SCEPKIT_LISTEN=127.0.0.1:26897", "SCEPKIT_ADMIN_LISTEN=127.0.0.1:26898"), tc.env...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, code, string(out))
		})
	}

	// The unit does not restart on exitConfig, and restarts on the rest.
	unit, err := os.ReadFile("dist/scepkit.service")
	require.NoError(t, err)
	require.Contains(t, string(unit), fmt.Sprintf("\nRestartPreventExitStatus=%d\n", exitConfig))
	require.Contains(t, string(unit), "\nRestart=on-failure\n")
}

// TestKeyErrorsNameSetting: an RA encryption key that is not RSA, and a certificate
// in state_dir that is not the labelled key's, are reported with the pkcs11.*_key
// (or rollover.*_key) setting that names the key. They said only "catemplate: the RA
// encryption key must be RSA", and "…/ca.crt is not the certificate of the token's
// key", which names the file but not the label to check.
func TestKeyErrorsNameSetting(t *testing.T) {
	st := tokenWithKeys(t)
	tok, err := pkcs11key.Open(pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
	require.NoError(t, err)
	_, err = tok.GenerateKey("ec-key", pkcs11key.ECDSAP256)
	require.NoError(t, err)
	require.NoError(t, tok.Close())
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	first := f.config(t, "", pkcs11Section(st, f))
	made := newFixture(t) // its state_dir holds the certificates of the token's keys
	made.write(t, "pin", []byte(st.PIN+"\n"))
	certsForTokenKeys(t, st, made.path("state"))
	later := made.config(t, "", pkcs11Section(st, made))
	cases := []struct {
		name string
		cfg  string
		env  []string
		want string
	}{
		{"ECDSA RA encryption key, first start", first, []string{"SCEPKIT_PKCS11_RA_ENCRYPT_KEY=ec-key"},
			"setting pkcs11.ra_encrypt_key (SCEPKIT_PKCS11_RA_ENCRYPT_KEY): the RA encryption key must be RSA"},
		{"ECDSA RA encryption key, later start", later, []string{"SCEPKIT_PKCS11_RA_ENCRYPT_KEY=ec-key"},
			"setting pkcs11.ra_encrypt_key (SCEPKIT_PKCS11_RA_ENCRYPT_KEY): the RA encryption key must be RSA"},
		{"CA certificate of another key", later, []string{"SCEPKIT_PKCS11_CA_KEY=scepkit-ra-sign"},
			"setting pkcs11.ca_key (SCEPKIT_PKCS11_CA_KEY): " + filepath.Join(made.path("state"), catemplate.CACertFile) +
				` is not the certificate of the token's key labelled "scepkit-ra-sign"`},
		{"RA signing certificate of another key", later, []string{"SCEPKIT_PKCS11_RA_SIGN_KEY=scepkit-ra-encrypt"},
			"setting pkcs11.ra_sign_key (SCEPKIT_PKCS11_RA_SIGN_KEY): " + filepath.Join(made.path("state"), catemplate.RASigningCertFile) +
				` is not the certificate of the token's key labelled "scepkit-ra-encrypt"`},
		{"RA encryption certificate of another key", later, []string{"SCEPKIT_PKCS11_RA_ENCRYPT_KEY=scepkit-ra-sign"},
			"setting pkcs11.ra_encrypt_key (SCEPKIT_PKCS11_RA_ENCRYPT_KEY): " + filepath.Join(made.path("state"), catemplate.RAEncryptCertFile) +
				` is not the certificate of the token's key labelled "scepkit-ra-sign"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := refusedStart(t, tc.cfg, append(tc.env, "SOFTHSM2_CONF="+st.Conf)...)
			require.Contains(t, out, tc.want)
		})
	}
	_, err = os.Stat(filepath.Join(f.path("state"), catemplate.CACertFile))
	require.ErrorIs(t, err, os.ErrNotExist, "a refused first start left a CA certificate behind")

	// rollover-prepare, with next RA keys in the token: the encryption key is ECDSA.
	cmd := exec.Command(bin, "rollover-prepare", "-config", later, "-dir", made.path("next"), "-ra-only")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+st.Conf, "SCEPKIT_ROLLOVER_RA_SIGN_KEY=scepkit-ra-sign",
		"SCEPKIT_ROLLOVER_RA_ENCRYPT_KEY=ec-key")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "setting rollover.ra_encrypt_key (SCEPKIT_ROLLOVER_RA_ENCRYPT_KEY): the RA encryption key must be RSA")
}

// TestTokenStallBounded: a token that stops answering (here SoftHSM2 waiting for the
// locks another process holds on the token's files; a network HSM gone silent is
// alike) holds no request past tokenTimeout per call into the token: an enrollment
// gets an answer (an HTTP 500: the FAILURE cannot be signed either) and no
// certificate, /readyz answers 503, the gateway closes; once the token answers again,
// enrollments succeed. Every call waited for the token as long as it stalled: the
// enrollment past its deadline, /readyz and the probes behind it, and closing the
// gateway.
func TestTokenStallBounded(t *testing.T) {
	defer func(d time.Duration) { tokenTimeout = d }(tokenTimeout)
	tokenTimeout = time.Second
	st := tokenWithKeys(t)
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	p := startInProcess(t, f, "", pkcs11Section(st, f))
	base := p.public.URL
	_, caDER, _ := get(t, base+"/ca.cer")
	fp := sha256.Sum256([]byte(caDER))
	client := &scep.Client{URL: base + "/scep", CAFingerprint: fp[:], HTTPClient: &http.Client{Timeout: time.Minute}}
	enroll := func(user, device string) (time.Duration, error) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: user}}, key)
		require.NoError(t, err)
		der, err = scep.AddChallengePassword(der, f.challenge(t, user, device), key, nil)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		_, err = client.Enroll(ctx, der, key)
		return time.Since(start), err
	}
	_, err := enroll("alice@example.com", "alice-laptop")
	require.NoError(t, err)

	release := st.Stall(t)
	took, err := enroll("bob@example.com", "bob-phone")
	require.Error(t, err)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "no answer while the token stalled")
	require.Less(t, took, 8*time.Second, "the answer waited for the token: %v", err)
	readyz := &http.Client{Timeout: 20 * time.Second}
	start := time.Now()
	resp, err := readyz.Get(base + "/readyz")
	require.NoError(t, err, "/readyz waited for the token")
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Less(t, time.Since(start), 10*time.Second)
	code, body := p.call(t, http.MethodGet, "/v1/certificates?user=bob@example.com", nil)
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, "bob-phone", "a certificate was issued while the token stalled")

	release()
	_, err = enroll("bob@example.com", "bob-phone")
	require.NoError(t, err, "the token answers again")

	// Closing the gateway waits for a call in flight in a stalled token only so long.
	release = st.Stall(t)
	go enroll("alice@example.com", "alice-laptop")
	time.Sleep(500 * time.Millisecond) // its decryption is in the token
	closed := make(chan struct{})
	go func() { p.g.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the gateway waited for the stalled token")
	}
	release()
}

// TestReadyzTokenStallOneTimeout: /readyz tries the CA's and the RA's keys side by
// side, so that a token that stops answering costs it one call's timeout, not one per
// key (three keys in the token here; with a next CA and RA, six). Before, the keys were
// tried in turn: 3 × tokenTimeout, 30 s with the gateway's own.
func TestReadyzTokenStallOneTimeout(t *testing.T) {
	defer func(d time.Duration) { tokenTimeout = d }(tokenTimeout)
	tokenTimeout = 2 * time.Second
	st := tokenWithKeys(t)
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	p := startInProcess(t, f, "", pkcs11Section(st, f))
	release := st.Stall(t)
	defer release()
	start := time.Now()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(p.public.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	took := time.Since(start)
	t.Logf("/readyz answered in %v", took)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Less(t, took, 2*tokenTimeout+time.Second, "the keys were tried one after another")
}

// TestTokenStallAtStart: a token that does not answer at start (SoftHSM2 waiting for
// the locks another process holds on the token's files) makes the start fail within
// tokenTimeout per call with exitFailure, naming pkcs11.module, so that systemd
// starts it again once the token may answer. The start waited for the token as long
// as it stalled, without a word (systemd's Type=simple took it for started).
func TestTokenStallAtStart(t *testing.T) {
	st := tokenWithKeys(t)
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	st.Stall(t)
	start := time.Now()
	out, code := refusedStart(t, f.config(t, "", pkcs11Section(st, f)), "SOFTHSM2_CONF="+st.Conf)
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "setting pkcs11.module (SCEPKIT_PKCS11_MODULE): ")
	require.Contains(t, out, "the token did not answer in time")
	require.Less(t, time.Since(start), tokenTimeout+20*time.Second)

	// The calls after the login (finding the keys, their first signatures) are alike.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for _, err := range []error{
		checkSigns("pkcs11.ca_key", stalledSigner{key}, key.Public(), caSigns),
		rsaEncryptKey("pkcs11.ra_encrypt_key", stalledSigner{key}),
		tokenKeyError("pkcs11.ra_sign_key", fmt.Errorf("pkcs11key: finding: %w", pkcs11key.ErrTimeout)),
	} {
		require.ErrorIs(t, err, pkcs11key.ErrTimeout)
		require.Equal(t, exitFailure, exitStatus(err), err.Error())
	}
}

// stalledSigner is a token's key whose token does not answer.
type stalledSigner struct{ *rsa.PrivateKey }

func (stalledSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, fmt.Errorf("%w: no answer within 10s", pkcs11key.ErrTimeout)
}

func (stalledSigner) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, fmt.Errorf("%w: no answer within 10s", pkcs11key.ErrTimeout)
}

// TestCAEnvelopesTokenKeyMustDecrypt: ca_envelopes with the CA key in the token
// refuses a CA key that cannot decrypt what clients encrypt to the CA certificate (an
// ECDSA key, an RSA key without CKA_DECRYPT), naming ca_envelopes, as it refuses an
// ECDSA key file. Every token key passed, since pkcs11key.Key is a crypto.Decrypter
// whatever its type: the gateway started and answered every request encrypted to
// its CA badMessageCheck.
func TestCAEnvelopesTokenKeyMustDecrypt(t *testing.T) {
	cases := []struct {
		name string
		make func(ctx *crypto11.Context, id, label []byte) error
		want string
	}{
		{"ECDSA CA key", func(ctx *crypto11.Context, id, label []byte) error {
			_, err := ctx.GenerateECDSAKeyPairWithLabel(id, label, elliptic.P256())
			return err
		}, "setting ca_envelopes (SCEPKIT_CA_ENVELOPES): the CA key cannot decrypt (an RSA key is needed)"},
		{"RSA CA key without CKA_DECRYPT", func(ctx *crypto11.Context, id, label []byte) error {
			pub, err := crypto11.NewAttributeSetWithIDAndLabel(id, label)
			if err != nil {
				return err
			}
			priv := pub.Copy()
			if err := priv.Set(crypto11.CkaDecrypt, false); err != nil {
				return err
			}
			_, err = ctx.GenerateRSAKeyPairWithAttributes(pub, priv, 2048)
			return err
		}, "setting ca_envelopes (SCEPKIT_CA_ENVELOPES): the CA key cannot decrypt what clients encrypt to the CA certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := softhsmtest.New(t)
			tok, err := pkcs11key.Open(pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
			require.NoError(t, err)
			for _, label := range []string{"scepkit-ra-sign", "scepkit-ra-encrypt"} {
				_, err := tok.GenerateKey(label, pkcs11key.RSA2048)
				require.NoError(t, err)
			}
			require.NoError(t, tok.Close())
			ctx, err := crypto11.Configure(&crypto11.Config{Path: st.Module, TokenLabel: st.Label, Pin: st.PIN})
			require.NoError(t, err)
			require.NoError(t, tc.make(ctx, []byte("ca"), []byte("scepkit-ca")))
			require.NoError(t, ctx.Close())
			f := newFixture(t)
			f.write(t, "pin", []byte(st.PIN+"\n"))
			got, code := refusedStart(t, f.config(t, "ca_envelopes = true\n", pkcs11Section(st, f)), "SOFTHSM2_CONF="+st.Conf)
			require.Equal(t, exitConfig, code, got)
			require.Contains(t, got, tc.want)
		})
	}
}
