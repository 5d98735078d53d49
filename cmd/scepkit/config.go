package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/scepkit/scepkit/internal/plainhttp"
	"github.com/scepkit/scepkit/profile"
)

// config is the gateway's configuration: a TOML file, then the environment (every
// setting has a variable, SCEPKIT_ and its path in upper case with dots as
// underscores: SCEPKIT_ADMIN_LISTEN), which wins.
type config struct {
	Listen    string `toml:"listen" doc:"address of the SCEP, CRL, health and metrics listener (plain HTTP unless tls_cert is set)" default:"127.0.0.1:8080"`
	PublicURL string `toml:"public_url" doc:"base URL devices and relying parties reach this listener at, http or https with a host and no user info, query or fragment; the CRL distribution point and CA URL in issued certificates are under it (default http://LISTEN; required when listen is every interface, such as 0.0.0.0:8080)"`
	TLSCert   string `toml:"tls_cert" doc:"PEM certificate chain for the SCEP listener; SCEP clients (RFC 8894) use plain HTTP, so this is optional"`
	TLSKey    string `toml:"tls_key" doc:"PEM private key of tls_cert"`
	StateDir  string `toml:"state_dir" doc:"directory holding the CA and RA certificates (and their keys unless pkcs11 is set), created on first start (other users may not write to it), and state.db (the embedded store: challenge claims, transactions, pending requests, issued certificates, revocations) unless postgres.dsn is set" default:"/var/lib/scepkit"`
	Identity  string `toml:"identity" doc:"this gateway's identity: the audience the MDM mints challenges for" default:"scepkit-gateway"`
	MDMIssuer string `toml:"mdm_issuer" doc:"the issuer name in the MDM's challenges" default:"scepkit-mdm"`
	JWKS      string `toml:"jwks" doc:"the MDM's challenge keys: a JWKS file or https URL (plain http only on a loopback host), at most 1 MiB (required)"`
	// JWKSRefresh paces the re-reading of JWKS, so that the MDM's key rotation needs
	// no restart.
	JWKSRefresh duration `toml:"jwks_refresh" doc:"how often to read jwks again, so that a key the MDM adds is trusted and one it removes is not, without a restart (on failure the keys in use stay); 0 reads it at start only" default:"5m"`
	Directory   string   `toml:"directory" doc:"users and devices, a JSON file {\"users\": [{\"id\", \"upn\", \"email\", \"name\", \"disabled\"}], \"devices\": [{\"id\", \"user\", \"name\", \"serial\", \"compliant\"}]}, each id once, at most 64 MiB (required)"`
	// Profiles are the ids challenges name in their prof claim.
	Profiles        []string `toml:"profiles" doc:"SCEP profile ids challenges may name (comma-separated in the environment), distinct, each of letters, digits, -, _ and . (dots only between other characters); each is a user certificate CN={{UserPrincipalName}}, RSA 2048, client authentication" default:"win,ios,mac"`
	CAName          string   `toml:"ca_name" doc:"distinguished name of the CA made on the first start in an empty state_dir, and by rollover-prepare with the date appended to its CN, written as RFC 4514 writes it (CN=Example Device CA,O=Example,C=FR; escape a comma in a value: O=Example\\, Inc.); its RA is named alike, RA in place of a final CA in the CN (rollover-prepare -ra-only names the new RA after the CA in force); a CA already made keeps its name: on an existing gateway set it to that CA's name before rollover-prepare" default:"CN=scepkit CA,O=scepkit"`
	CertValidity    duration `toml:"cert_validity" doc:"validity of issued certificates, at most 17520h (730 days, the longest a profile may carry)" default:"8760h"`
	RequireApproval bool     `toml:"require_approval" doc:"queue every request (PENDING) until an operator approves it through the admin API"`
	Legacy          bool     `toml:"legacy" doc:"accept single DES and SHA-1 from old clients (micromdm's scepclient needs it)"`
	CAEnvelopes     bool     `toml:"ca_envelopes" doc:"accept requests encrypted to the CA certificate, and sign the replies to them with the CA, as clients that pin the CA by fingerprint need (scepclient -ca-fingerprint); the CA key (RSA) then serves key transport as well as signing"`
	ExpiryWarning   duration `toml:"expiry_warning" doc:"warn (log, /readyz detail) when a CA or RA certificate expires within this" default:"720h"`
	Log             string   `toml:"log" doc:"log format: text or json (on stderr)" default:"text"`
	LogLevel        string   `toml:"log_level" doc:"the least level of the lines written about each request (a SCEP operation, a step of the registration point: about a dozen at info per enrollment): debug, info, warn or error; the gateway's own lines (start, stop, the admin API's audit, the store's faults) are written whatever it says" default:"info"`
	NextCACert      string   `toml:"next_ca_cert" doc:"PEM file of the next CA certificate (then its chain), prepared ahead of a rollover and announced to devices through GetNextCACert (RFC 8894 section 4.7)"`
	Rollover        struct {
		At           string `toml:"at" doc:"when to switch to the next CA and RA in rollover.dir, RFC 3339 (2027-01-31T00:00:00Z); before it they are announced through GetNextCACert, from it on GetCACert serves them, certificates are issued by the next CA and CertReps signed by the next RA, while requests still encrypted to the previous RA are decrypted and answered (RFC 8894 section 3.5.2)"`
		Dir          string `toml:"dir" doc:"directory holding the next CA and RA, laid out as state_dir (scepkit rollover-prepare writes it); without ca.crt only the RA rolls over; with pkcs11 it holds the certificates and the keys are the token's rollover.*_key labels"`
		CAKey        string `toml:"ca_key" doc:"with pkcs11: label of the next CA key pair in the token (scepkit rollover-prepare -generate-keys makes the next keys there)" default:"scepkit-next-ca"`
		RASignKey    string `toml:"ra_sign_key" doc:"with pkcs11: label of the next RA signing key pair" default:"scepkit-next-ra-sign"`
		RAEncryptKey string `toml:"ra_encrypt_key" doc:"with pkcs11: label of the next RA encryption key pair (RSA)" default:"scepkit-next-ra-encrypt"`
	} `toml:"rollover"`
	Intune struct {
		Tenant           string `toml:"tenant" doc:"Microsoft Entra tenant (its id or a verified domain) whose Intune SCEP challenges this gateway judges through Intune's validation service, and notifies of the outcome; empty disables Intune"`
		ClientID         string `toml:"client_id" doc:"application (client) id of the Entra app registration holding Intune's SCEP challenge validation permission and Graph's Application.Read.All"`
		ClientSecret     string `toml:"client_secret" doc:"the app's client secret; written in the configuration file, that file must give other users no access (refused otherwise); prefer client_secret_file or the environment"`
		ClientSecretFile string `toml:"client_secret_file" doc:"file holding the app's client secret (not readable by other users)"`
		CertFile         string `toml:"cert_file" doc:"PEM certificate credential of the app, instead of a secret"`
		KeyFile          string `toml:"key_file" doc:"PEM RSA private key of intune.cert_file (not readable by other users)"`
		CallerInfo       string `toml:"caller_info" doc:"how this CA names itself in Intune's logs" default:"scepkit"`
		Authority        string `toml:"authority" doc:"Entra sign-in endpoint (default https://login.microsoftonline.com/; another for national clouds)"`
		GraphURL         string `toml:"graph_url" doc:"Microsoft Graph root for service discovery (default https://graph.microsoft.com/)"`
		// RevocationInterval paces the revocation poller.
		RevocationInterval duration `toml:"revocation_interval" doc:"how often to ask Intune for the revocations its admins requested when none are waiting; each is recorded, put in the CRL and reported back" default:"5m"`
	} `toml:"intune"`
	CRL struct {
		Validity duration `toml:"validity" doc:"how long each CRL is valid (its nextUpdate)" default:"24h"`
		Refresh  duration `toml:"refresh" doc:"how often a new CRL is signed when nothing was revoked here" default:"1h"`
	} `toml:"crl"`
	Admin struct {
		Listen    string `toml:"listen" doc:"address of the admin API listener (HTTPS only); empty disables it"`
		TLSCert   string `toml:"tls_cert" doc:"PEM certificate chain of the admin listener (required with listen)"`
		TLSKey    string `toml:"tls_key" doc:"PEM private key of admin.tls_cert"`
		ClientCA  string `toml:"client_ca" doc:"PEM CA certificates whose client certificates may call the admin API; never the CA that issues device certificates nor one above it (refused at start: every device would be an operator)"`
		TokenFile string `toml:"token_file" doc:"file holding the bearer token that may call the admin API (at least 32 characters; no access for other users)"`
	} `toml:"admin"`
	OTLP struct {
		TracesURL string `toml:"traces_url" doc:"OTLP/HTTP traces endpoint of a collector (for example http://127.0.0.1:4318/v1/traces): one span per SCEP request with a child per CRP phase; empty sends no traces"`
	} `toml:"otlp"`
	Postgres struct {
		DSN string `toml:"dsn" doc:"PostgreSQL connection string (postgres://user@host/db): keep everything in PostgreSQL, shared by gateways side by side, instead of state_dir/state.db; with a password in it, the configuration file must give other users no access (prefer PGPASSFILE or the environment)"`
	} `toml:"postgres"`
	Redis struct {
		Addr   string `toml:"addr" doc:"host:port of a Redis for the one-time use of challenges and transaction records; it does not replace state.db: gateways side by side need postgres.dsn"`
		Prefix string `toml:"prefix" doc:"key prefix in Redis"`
	} `toml:"redis"`
	PKCS11 struct {
		Module       string `toml:"module" doc:"PKCS#11 module path (for example /usr/lib/softhsm/libsofthsm2.so); set to keep the CA and RA keys in a token"`
		TokenLabel   string `toml:"token_label" doc:"label of the token"`
		PINFile      string `toml:"pin_file" doc:"file holding the token's user PIN (no access for other users)"`
		CAKey        string `toml:"ca_key" doc:"label of the CA key pair in the token" default:"scepkit-ca"`
		RASignKey    string `toml:"ra_sign_key" doc:"label of the RA signing key pair" default:"scepkit-ra-sign"`
		RAEncryptKey string `toml:"ra_encrypt_key" doc:"label of the RA encryption key pair (RSA)" default:"scepkit-ra-encrypt"`
	} `toml:"pkcs11"`
}

// duration is a time.Duration written as "24h" in the file and the environment.
type duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("a duration such as \"24h\" or \"90m\": %w", err)
	}
	*d = duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// badSetting names the setting a configuration error is about.
type badSetting struct {
	Setting, Env string
	Err          error
	// Retry is set when the setting may be right and what it names unavailable for
	// now (a store, a port, a token not yet present): a restart may mend it, so it
	// exits with exitFailure rather than exitConfig.
	Retry bool
}

func (e *badSetting) Error() string {
	return fmt.Sprintf("setting %s (%s): %v", e.Setting, e.Env, e.Err)
}

func (e *badSetting) Unwrap() error { return e.Err }

// envName is the environment variable of the setting at path: SCEPKIT_ and the path
// in upper case, dots as underscores.
func envName(path string) string {
	return "SCEPKIT_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// settingError is err about the setting at path, with its environment variable.
func settingError(path string, err error) error {
	return &badSetting{Setting: path, Env: envName(path), Err: err}
}

// unavailableSetting is err about the setting at path, whose target may come up
// later: a restart may succeed (see badSetting.Retry).
func unavailableSetting(path string, err error) error {
	return &badSetting{Setting: path, Env: envName(path), Err: err, Retry: true}
}

// setting is one leaf of config.
type setting struct {
	path, env, doc, def string
	v                   reflect.Value
}

func settings(c *config) []setting {
	var out []setting
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := prefix + f.Tag.Get("toml")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(duration(0)) {
				walk(v.Field(i), name+".")
				continue
			}
			out = append(out, setting{path: name, env: envName(name),
				doc: f.Tag.Get("doc"), def: f.Tag.Get("default"), v: v.Field(i)})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

func setValue(s setting, raw string) error {
	switch p := s.v.Addr().Interface().(type) {
	case *string:
		*p = raw
	case *bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		*p = b
	case *duration:
		return p.UnmarshalText([]byte(raw))
	case *[]string:
		*p = nil
		for _, part := range strings.Split(raw, ",") {
			if part = strings.TrimSpace(part); part != "" {
				*p = append(*p, part)
			}
		}
	default:
		return fmt.Errorf("unsupported setting type %T", p)
	}
	return nil
}

// loadConfig reads the defaults, then the file (if path is not empty), then the
// environment, and validates the result. Its errors are configuration errors
// (exitConfig), a badSetting keeping its own status.
func loadConfig(path string, env func(string) (string, bool)) (*config, error) {
	c, err := readConfig(path, env)
	if err != nil {
		return nil, &configError{err}
	}
	return c, nil
}

func readConfig(path string, env func(string) (string, bool)) (*config, error) {
	c := &config{}
	for _, s := range settings(c) {
		if s.def != "" {
			if err := setValue(s, s.def); err != nil {
				return nil, fmt.Errorf("default of %s: %w", s.path, err)
			}
		}
	}
	if path != "" {
		b, mode, err := readConfigFile(path)
		if err != nil {
			return nil, err
		}
		// Whoever can edit the file chooses the gateway's keys, its CA, the MDM keys it
		// trusts: the rule of state_dir applies to it.
		if mode&0o002 != 0 {
			return nil, fmt.Errorf("%s may be written by other users (mode %v): chmod o-w it", path, mode)
		}
		if err := dirOthersMayWrite(path); err != nil {
			return nil, err
		}
		md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if undec := md.Undecoded(); len(undec) > 0 {
			return nil, fmt.Errorf("%s: unknown setting %s", path, undec[0].String())
		}
		// A secret written in the file is as exposed as the file: the rule of
		// readSecretFile applies to it.
		if name := c.inlineSecret(); name != "" && mode&0o007 != 0 {
			return nil, settingError(name, fmt.Errorf(
				"a secret written in %s, which other users may read or write (mode %v): chmod o-rwx it, or give the secret in a file or the environment",
				path, mode))
		}
	}
	for _, s := range settings(c) {
		if raw, ok := env(s.env); ok {
			if err := setValue(s, raw); err != nil {
				return nil, &badSetting{Setting: s.path, Env: s.env, Err: err}
			}
		}
	}
	return c, c.validate()
}

// clientEnv are the SCEPKIT_ variables that are not settings of serve: its -config,
// and those of the admin client (scepkit admin), often set in the same environment.
var clientEnv = []string{"SCEPKIT_CONFIG", "SCEPKIT_ADMIN_URL", "SCEPKIT_ADMIN_CA",
	"SCEPKIT_ADMIN_CLIENT_CERT", "SCEPKIT_ADMIN_CLIENT_KEY"}

// unknownEnv checks the SCEPKIT_ variables of environ that name no setting. One a
// letter or two from a setting's is refused as an unknown key of the file is (a
// misspelt SCEPKIT_REQUIRE_APPROVAL would otherwise start a gateway that issues
// without approval); the others (another program's, say) are returned, to be logged.
func unknownEnv(environ []string) (others []string, err error) {
	known := map[string]bool{}
	for _, s := range settings(&config{}) {
		known[s.env] = true
	}
	for _, name := range clientEnv {
		known[name] = true
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "SCEPKIT_") || known[name] {
			continue
		}
		best, bestD := "", 3
		for k := range known {
			if d := editDistance(name, k); d < bestD || d == bestD && k < best {
				best, bestD = k, d
			}
		}
		if best != "" {
			return nil, fmt.Errorf("unknown setting %s in the environment: did you mean %s? (scepkit -h lists them)", name, best)
		}
		others = append(others, name)
	}
	return others, nil
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// requestLevel is log_level's level, as slog names levels (debug, info, warn, error,
// in any case).
func (c *config) requestLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// caName is ca_name parsed; validate has checked it.
func (c *config) caName() caName {
	n, err := parseCAName(c.CAName)
	if err != nil {
		panic("scepkit: ca_name not validated: " + err.Error())
	}
	return n
}

func (c *config) validate() error {
	_, caNameErr := parseCAName(c.CAName)
	_, levelErr := c.requestLevel()
	listenErr, adminListenErr := checkListenAddr(c.Listen), error(nil)
	if c.Admin.Listen != "" {
		adminListenErr = checkListenAddr(c.Admin.Listen)
	}
	switch {
	case c.Listen == "":
		return settingError("listen", errors.New("required"))
	case listenErr != nil:
		return settingError("listen", listenErr)
	case adminListenErr != nil:
		return settingError("admin.listen", adminListenErr)
	case c.StateDir == "":
		return settingError("state_dir", errors.New("required"))
	case c.Identity == "":
		return settingError("identity", errors.New("required"))
	case c.MDMIssuer == "":
		return settingError("mdm_issuer", errors.New("required"))
	case c.JWKS == "":
		return settingError("jwks", errors.New("required: the MDM's JWKS file or URL"))
	case c.JWKSRefresh < 0 || c.JWKSRefresh > 0 && c.JWKSRefresh < duration(time.Second):
		return settingError("jwks_refresh", errors.New("0 (at start only) or at least 1s"))
	case c.Directory == "":
		return settingError("directory", errors.New("required"))
	case len(c.Profiles) == 0:
		return settingError("profiles", errors.New("at least one profile id"))
	case caNameErr != nil:
		return settingError("ca_name", caNameErr)
	case c.CertValidity < duration(time.Hour):
		// Issued certificates start 5 minutes back (clock skew): shorter than this,
		// devices would get certificates that have expired or are about to.
		return settingError("cert_validity", errors.New("at least 1h"))
	case c.CertValidity > duration(profile.MaxValidityDays*24*time.Hour):
		// The built-in profiles carry it, and a profile's validity is at most 24
		// months (Intune's limit, which profile.Validate keeps): a longer one would be
		// cut to the profile's without a word.
		return settingError("cert_validity", fmt.Errorf("at most %dh (%d days, the longest validity a profile may carry)",
			profile.MaxValidityDays*24, profile.MaxValidityDays))
	case c.Log != "text" && c.Log != "json":
		return settingError("log", fmt.Errorf("%q: want text or json", c.Log))
	case levelErr != nil:
		return settingError("log_level", fmt.Errorf("%q: want debug, info, warn or error", c.LogLevel))
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return settingError("tls_key", errors.New("tls_cert and tls_key go together"))
	case c.CRL.Validity < duration(time.Minute):
		return settingError("crl.validity", errors.New("at least 1m"))
	case c.CRL.Refresh <= 0:
		return settingError("crl.refresh", errors.New("must be positive"))
	case c.CRL.Refresh >= c.CRL.Validity:
		// Relying parties would hold an expired CRL until the next one is signed.
		return settingError("crl.refresh", errors.New("must be shorter than crl.validity"))
	case c.Admin.Listen != "" && (c.Admin.TLSCert == "" || c.Admin.TLSKey == ""):
		return settingError("admin.tls_cert", errors.New("the admin listener is HTTPS only: set admin.tls_cert and admin.tls_key"))
	case c.Admin.Listen != "" && c.Admin.ClientCA == "" && c.Admin.TokenFile == "":
		return settingError("admin.token_file", errors.New("the admin API needs admin.client_ca or admin.token_file"))
	case c.PKCS11.Module != "" && c.PKCS11.TokenLabel == "":
		return settingError("pkcs11.token_label", errors.New("required with pkcs11.module"))
	case c.PKCS11.Module != "" && c.PKCS11.PINFile == "":
		return settingError("pkcs11.pin_file", errors.New("required with pkcs11.module"))
	}
	if err := checkProfileIDs(c.Profiles); err != nil {
		return settingError("profiles", err)
	}
	if (c.Rollover.At == "") != (c.Rollover.Dir == "") {
		return settingError("rollover.at", errors.New("rollover.at and rollover.dir go together"))
	}
	if c.Rollover.At != "" {
		if _, err := c.rolloverAt(); err != nil {
			return settingError("rollover.at", err)
		}
		if c.NextCACert != "" {
			return settingError("next_ca_cert", errors.New("a rollover announces its own next CA: leave next_ca_cert empty"))
		}
	}
	if err := c.validateIntune(); err != nil {
		return err
	}
	if u := c.OTLP.TracesURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return settingError("otlp.traces_url", fmt.Errorf("%q is not an http(s) URL", u))
	}
	if c.PublicURL != "" {
		if err := checkPublicURL(c.PublicURL); err != nil {
			return settingError("public_url", err)
		}
	}
	if host, _, err := net.SplitHostPort(c.Listen); c.PublicURL == "" && err == nil &&
		(host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified()) {
		// The default, http://LISTEN, would write 0.0.0.0 or [::] into every certificate.
		return settingError("public_url", fmt.Errorf("required when listen (%q) is every interface: the CRL and CA URLs in every issued certificate are under it", c.Listen))
	}
	return nil
}

// checkProfileIDs checks the profiles setting: each id one that profile.ValidateID
// accepts (the profiles' exports name a Windows CSP node and an Apple
// PayloadIdentifier after it), none listed twice (the second copy would replace the
// first without a word).
func checkProfileIDs(ids []string) error {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if err := profile.ValidateID(id); err != nil {
			return err
		}
		if seen[id] {
			return fmt.Errorf("profile id %q listed twice", id)
		}
		seen[id] = true
	}
	return nil
}

// checkListenAddr checks a listener's address as net.Listen reads it: host:port, the
// port a number up to 65535 or a service name. A malformed address is a mistake no
// restart mends: refused here, it exits with exitConfig, where net.Listen's error would
// exit as a busy port does (exitFailure), and systemd would retry it for ever.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port, such as 127.0.0.1:8080: %w", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: want host:port, such as 127.0.0.1:8080: %w", addr, err)
	}
	return nil
}

// checkPublicURL checks public_url, which every issued certificate carries (its CRL
// distribution point and caIssuers URL are under it), and the profiles too: an
// absolute http or https URL with a host, a port (if any) from 1 to 65535, and no user
// info, query or fragment, which would make the URLs under it wrong or put a password
// in every certificate. The URL is not quoted back: its user info may hold one.
func checkPublicURL(s string) error {
	const want = "want an http or https URL with a host and no user info, query or fragment, such as https://scep.example.com"
	u, err := url.Parse(s)
	problem := ""
	switch {
	case err != nil:
		problem = "does not parse"
	case !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://"):
		// Lower case, as written into every certificate's CRL and caIssuers URLs.
		problem = "is not http or https (in lower case)"
	case u.User != nil:
		problem = "has user info"
	case u.Hostname() == "":
		problem = "has no host"
	case u.RawQuery != "" || u.ForceQuery:
		problem = "has a query"
	case strings.Contains(s, "#"):
		problem = "has a fragment"
	}
	if problem == "" && u.Port() != "" {
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			problem = "has a port outside 1-65535"
		}
	}
	if problem != "" {
		return fmt.Errorf("the URL %s: %s", problem, want)
	}
	return nil
}

// printSettings writes every setting with its variable, default and meaning.
func printSettings(w io.Writer) {
	for _, s := range settings(&config{}) {
		def := ""
		if s.def != "" {
			def = " (default " + s.def + ")"
		}
		fmt.Fprintf(w, "  %s  [%s]%s\n      %s\n", s.path, s.env, def, s.doc)
	}
}

// maxSecretFile bounds what readSecretFile reads: a token or a PIN is a line.
const maxSecretFile = 4 << 10

// readSecretFile reads a file holding a secret (the admin token, the token PIN),
// refusing one that other users may read or write, or that is in a directory they may
// write (not sticky), as OpenSSH refuses such a private key: the permissions are the
// operator's to fix (chmod o-rwx).
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := privateMode(path, fi); err != nil {
		return nil, err
	}
	// In a directory others may write, anyone may put a secret of his own in its
	// place (an admin token a gateway running as root would read and accept).
	if err := dirOthersMayWrite(path); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s: over %d bytes", path, maxSecretFile)
	}
	return b, nil
}

// privateMode refuses a file of secrets (fi, at path) that other users may read or
// write.
func privateMode(path string, fi os.FileInfo) error {
	if fi.Mode().Perm()&0o007 != 0 {
		return fmt.Errorf("%s may be read or written by other users (mode %v): chmod o-rwx it", path, fi.Mode().Perm())
	}
	return nil
}

// othersMayWrite refuses a file or directory (at path) that decides whom the gateway
// trusts or what it signs with, and that other users may write: the MDM's keys, the
// directory, the admin client CA, a rollover's CA and RA. Whoever may write there may
// put keys of his own in place. A path that does not exist is left to its reader.
func othersMayWrite(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s may be written by other users (mode %v): chmod o-w it", path, fi.Mode().Perm())
	}
	return dirOthersMayWrite(path)
}

// dirOthersMayWrite refuses a file (at path) in a directory other users may write,
// unless it is sticky (as /tmp is) or on a file system mounted read-only (as a
// Kubernetes ConfigMap volume is, its directory mode 0777): there anyone may replace
// the file, whatever its own mode.
func dirOthersMayWrite(path string) error {
	dir := filepath.Dir(filepath.Clean(path))
	if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 && !readOnlyFS(dir) {
		return fmt.Errorf("%s is in %s, which other users may write (mode %v): chmod o-w it", path, dir, di.Mode().Perm())
	}
	return nil
}

// readConfigFile reads the configuration file and its permissions, from one open file.
func readConfigFile(path string) ([]byte, os.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	b, err := io.ReadAll(f)
	return b, fi.Mode().Perm(), err
}

// inlineSecret names the first setting of c that holds a secret in itself rather
// than naming a file: intune.client_secret, a postgres.dsn with a password, a URL
// setting with one in its user info. Empty when there is none.
func (c *config) inlineSecret() string {
	switch {
	case c.Intune.ClientSecret != "":
		return "intune.client_secret"
	case dsnHasPassword(c.Postgres.DSN):
		return "postgres.dsn"
	}
	for _, u := range []struct{ name, value string }{{"jwks", c.JWKS}, {"otlp.traces_url", c.OTLP.TracesURL},
		{"intune.authority", c.Intune.Authority}, {"intune.graph_url", c.Intune.GraphURL}} {
		if p, err := url.Parse(u.value); err == nil {
			if _, ok := p.User.Password(); ok {
				return u.name
			}
		}
	}
	return ""
}

// dsnHasPassword reports whether a PostgreSQL connection string carries a password:
// in a URL's user info or password parameter, or as a password keyword.
func dsnHasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, inUser := u.User.Password()
		return inUser || u.Query().Has("password")
	}
	return keywordPassword.MatchString(dsn)
}

// keywordPassword finds the password keyword of a keyword/value connection string
// (spaces around = are allowed there).
var keywordPassword = regexp.MustCompile(`(^|\s)password\s*=`)

// rolloverAt is rollover.at as a time.
func (c *config) rolloverAt() (time.Time, error) {
	at, err := time.Parse(time.RFC3339, c.Rollover.At)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time such as 2027-01-31T00:00:00Z", c.Rollover.At)
	}
	return at, nil
}

// validateIntune checks the [intune] settings: all or nothing, and one credential.
func (c *config) validateIntune() error {
	in := c.Intune
	if in.Tenant == "" {
		if in.ClientID != "" || in.ClientSecret != "" || in.ClientSecretFile != "" || in.CertFile != "" || in.KeyFile != "" {
			return settingError("intune.tenant", errors.New("required with the other intune settings"))
		}
		return nil
	}
	credentials := 0
	for _, set := range []bool{in.ClientSecret != "", in.ClientSecretFile != "", in.CertFile != "" || in.KeyFile != ""} {
		if set {
			credentials++
		}
	}
	switch {
	case in.ClientID == "":
		return settingError("intune.client_id", errors.New("required with intune.tenant"))
	case credentials != 1:
		return settingError("intune.client_secret_file", errors.New("set one credential: intune.client_secret_file, intune.client_secret, or intune.cert_file and intune.key_file"))
	case (in.CertFile == "") != (in.KeyFile == ""):
		return settingError("intune.key_file", errors.New("intune.cert_file and intune.key_file go together"))
	case in.CallerInfo == "":
		return settingError("intune.caller_info", errors.New("required with intune.tenant"))
	case in.RevocationInterval <= 0:
		return settingError("intune.revocation_interval", errors.New("must be positive"))
	}
	for path, u := range map[string]string{"intune.authority": in.Authority, "intune.graph_url": in.GraphURL} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || !plainhttp.Protected(pu) {
			return settingError(path, fmt.Errorf("%q: https only (plain http for a loopback test service)", u))
		}
	}
	return nil
}
