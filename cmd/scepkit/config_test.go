package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInlineSecretNeedsPrivateConfig: a secret written in the configuration file
// (intune.client_secret, a postgres.dsn with a password, a URL with one) is refused
// when other users may read or write the file, as token_file and pin_file are; the
// same file is accepted with o-rwx (group access is the operator's choice), and a
// file without a secret in it may stay readable; a file other users may write is
// refused whatever it holds (they would choose the gateway's keys and trust).
func TestInlineSecretNeedsPrivateConfig(t *testing.T) {
	f := newFixture(t)
	const intune = "[intune]\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\n"
	cases := []struct {
		name, extra string
		secret      string // the setting refused in a file others may read; empty: none
	}{
		{"intune.client_secret", intune + "client_secret = \"s3cr3t\"\n", "intune.client_secret"},
		{"intune.client_secret_file", intune + "client_secret_file = \"" + f.path("token") + "\"\n", ""},
		{"dsn with a password in the URL", "[postgres]\ndsn = \"postgres://scepkit:hunter2@127.0.0.1/scepkit\"\n", "postgres.dsn"},
		{"dsn with a password parameter", "[postgres]\ndsn = \"postgres://scepkit@127.0.0.1/scepkit?password=hunter2\"\n", "postgres.dsn"},
		{"dsn with a password keyword", "[postgres]\ndsn = \"host=127.0.0.1 dbname=scepkit password = hunter2\"\n", "postgres.dsn"},
		{"dsn without a password", "[postgres]\ndsn = \"postgres://scepkit@127.0.0.1/scepkit?sslmode=disable\"\n", ""},
		{"traces URL with a password", "[otlp]\ntraces_url = \"http://u:hunter2@127.0.0.1:4318/v1/traces\"\n", "otlp.traces_url"},
		{"no secret", "", ""},
	}
	for _, tc := range cases {
		for _, mode := range []os.FileMode{0o600, 0o640, 0o644, 0o604, 0o602, 0o601} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				cfg := f.config(t, "", tc.extra)
				require.NoError(t, os.Chmod(cfg, mode))
				_, err := loadConfig(cfg, func(string) (string, bool) { return "", false })
				if mode&0o002 != 0 {
					// Writable by others: refused whatever it holds.
					require.ErrorContains(t, err, cfg+" may be written by other users")
					return
				}
				if tc.secret == "" || mode&0o007 == 0 {
					require.NoError(t, err)
					return
				}
				var se *badSetting
				require.ErrorAs(t, err, &se)
				require.Equal(t, tc.secret, se.Setting)
				require.Contains(t, err.Error(), cfg+", which other users may read or write")
				require.NotContains(t, err.Error(), "hunter2", "the secret is not repeated in the error")
				require.NotContains(t, err.Error(), "s3cr3t", "the secret is not repeated in the error")
			})
		}
	}

	// The secret given in the environment instead: the file may stay readable.
	cfg := f.config(t, "", intune)
	require.NoError(t, os.Chmod(cfg, 0o644))
	env := map[string]string{"SCEPKIT_INTUNE_CLIENT_SECRET": "s3cr3t"}
	_, err := loadConfig(cfg, envOf(env))
	require.NoError(t, err)

	// scepkit serve refuses to start on it, naming the setting and its variable.
	cfg = f.config(t, "", intune+"client_secret = \"s3cr3t\"\n")
	require.NoError(t, os.Chmod(cfg, 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "serve", "-config", cfg).CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "setting intune.client_secret (SCEPKIT_INTUNE_CLIENT_SECRET): a secret written in "+cfg)
	require.NotContains(t, string(out), "s3cr3t")
}

// TestListenAddressRefusedAsConfig: a listen or admin.listen that is no host:port
// (the port left out, or beyond 65535) is a mistake in the configuration, which no
// restart mends: it is refused at validation, naming the setting, with exitConfig.
// net.Listen's error for it exited with exitFailure, as a busy port does, and the
// unit's Restart=on-failure restarted it for ever.
func TestListenAddressRefusedAsConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"SCEPKIT_JWKS": "jwks.json", "SCEPKIT_DIRECTORY": "directory.json"}
	cases := []struct {
		name, key, value string
		refused          bool
	}{
		{"no port", "SCEPKIT_LISTEN", "127.0.0.1", true},
		{"port out of range", "SCEPKIT_LISTEN", "127.0.0.1:99999", true},
		{"negative port", "SCEPKIT_LISTEN", "127.0.0.1:-1", true},
		{"unknown service", "SCEPKIT_LISTEN", "127.0.0.1:no-such-service", true},
		{"unclosed bracket", "SCEPKIT_LISTEN", "[::1:8080", true},
		{"admin: no port", "SCEPKIT_ADMIN_LISTEN", "127.0.0.1", true},
		{"admin: port out of range", "SCEPKIT_ADMIN_LISTEN", "127.0.0.1:70000", true},
		{"host and port", "SCEPKIT_LISTEN", "127.0.0.1:8080", false},
		{"any free port", "SCEPKIT_LISTEN", "127.0.0.1:0", false},
		{"IPv6", "SCEPKIT_LISTEN", "[::1]:8080", false},
		{"admin: host and port", "SCEPKIT_ADMIN_LISTEN", "127.0.0.1:8443", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{tc.key: tc.value}
			if tc.key == "SCEPKIT_ADMIN_LISTEN" {
				env["SCEPKIT_ADMIN_TLS_CERT"], env["SCEPKIT_ADMIN_TLS_KEY"] = "admin.crt", "admin.key"
				env["SCEPKIT_ADMIN_TOKEN_FILE"] = "admin.token"
			}
			_, err := loadConfig("", envOf(env, base))
			if !tc.refused {
				require.NoError(t, err)
				return
			}
			var se *badSetting
			require.ErrorAs(t, err, &se)
			want := "listen"
			if tc.key == "SCEPKIT_ADMIN_LISTEN" {
				want = "admin.listen"
			}
			require.Equal(t, want, se.Setting)
			require.Equal(t, exitConfig, exitStatus(err), "%v", err)
		})
	}
}

// TestConfigInDirectoryOthersMayWrite: a configuration file in a directory other
// users may write (and not sticky, as /tmp is) is refused, whatever its own mode:
// anyone may replace it there, and choose the gateway's keys, its CA and the MDM keys
// it trusts. The jwks and directory files were held to that rule, the configuration
// file, which names them, was not.
func TestConfigInDirectoryOthersMayWrite(t *testing.T) {
	f := newFixture(t)
	b, err := os.ReadFile(f.config(t, "", ""))
	require.NoError(t, err)
	none := func(string) (string, bool) { return "", false }
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		refused bool
	}{
		{"others may write", 0o777, true},
		{"group and others may write", 0o773, true},
		{"sticky, as /tmp", 0o777 | os.ModeSticky, false},
		{"others may read", 0o755, false},
		{"private", 0o700, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etc")
			require.NoError(t, os.Mkdir(dir, 0o700))
			cfg := filepath.Join(dir, "scepkit.toml")
			require.NoError(t, os.WriteFile(cfg, b, 0o600))
			require.NoError(t, os.Chmod(dir, tc.mode))
			_, err := loadConfig(cfg, none)
			if !tc.refused {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, cfg+" is in "+dir+", which other users may write")
			require.Equal(t, exitConfig, exitStatus(err))
		})
	}
}

// TestSecretFileInDirectoryOthersMayWrite: a secret file (admin.token_file,
// pkcs11.pin_file, intune.client_secret_file, intune.key_file) in a directory other
// users may write, not sticky, is refused whatever its own mode: anyone may put a
// token of his own there, which a gateway running as root reads, and call the admin
// API with it.
func TestSecretFileInDirectoryOthersMayWrite(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef0123456789abcdef\n"
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		refused bool
	}{
		{"others may write", 0o777, true},
		{"others may write and search only", 0o733, true},
		{"sticky, as /tmp", 0o777 | os.ModeSticky, false},
		{"private", 0o700, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "secrets")
			require.NoError(t, os.Mkdir(dir, 0o700))
			path := filepath.Join(dir, "admin.token")
			require.NoError(t, os.WriteFile(path, []byte(token), 0o600))
			require.NoError(t, os.Chmod(dir, tc.mode))
			c := &config{}
			c.Admin.TokenFile = path
			_, err := adminToken(c)
			if !tc.refused {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "setting admin.token_file (SCEPKIT_ADMIN_TOKEN_FILE): "+path+" is in "+dir+", which other users may write")
			require.Equal(t, exitConfig, exitStatus(err))
		})
	}
}

// TestPublicURLChecked: public_url is written into every issued certificate (its CRL
// distribution point and caIssuers URL) and into the profiles: one that is no URL a
// relying party can reach is refused at validation, naming public_url, before a first
// start makes a CA. Without a host or with a port beyond 65535 it was accepted and
// written into certificates; with user info (a password in every certificate), a
// query or a fragment it was refused only once the CA was made, as a fault of
// "profiles".
func TestPublicURLChecked(t *testing.T) {
	t.Parallel()
	base := map[string]string{"SCEPKIT_JWKS": "jwks.json", "SCEPKIT_DIRECTORY": "directory.json"}
	checkSetting(t, "SCEPKIT_PUBLIC_URL", "public_url", base, []settingCase{
		{"http://", true},
		{"https:///scepkit", true},
		{"http://:8080", true},
		{"http://gw.example.com:99999", true},
		{"http://gw.example.com:http", true},
		{"http://u:hunter2@gw.example.com", true},
		{"http://gw.example.com/?a=b", true},
		{"http://gw.example.com/#top", true},
		{"http://gw example.com", true},
		{"http://gw.example.com", false},
		{"https://gw.example.com:8443/", false},
		{"http://[2001:db8::1]:8080", false},
		{"https://proxy.example.com/scepkit", false},
		{"HTTP://gw.example.com", true},
		{"Https://gw.example.com", true},
	}, func(t *testing.T, err error) {
		require.NotContains(t, err.Error(), "hunter2", "the password is not repeated in the error")
	})
}

// settingCase is a value of one setting, and whether loadConfig refuses it.
type settingCase struct {
	value   string
	refused bool
}

// checkSetting loads a configuration from base with the environment variable set to
// each case's value, and checks that a value refused names setting and exits with
// exitConfig, and that another loads; extra, when not nil, checks each refusal
// further.
func checkSetting(t *testing.T, variable, setting string, base map[string]string, cases []settingCase, extra func(t *testing.T, err error)) {
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig("", envOf(map[string]string{variable: tc.value}, base))
			if !tc.refused {
				require.NoError(t, err)
				return
			}
			var se *badSetting
			require.ErrorAs(t, err, &se)
			require.Equal(t, setting, se.Setting)
			require.Equal(t, exitConfig, exitStatus(err))
			if extra != nil {
				extra(t, err)
			}
		})
	}
}

// envOf is an environment for loadConfig made of maps: a variable is looked up in each
// in turn, the first that has it wins.
func envOf(maps ...map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		for _, m := range maps {
			if v, ok := m[k]; ok {
				return v, true
			}
		}
		return "", false
	}
}

// TestProfileIDsChecked: profiles is a set of profile ids, each named by challenges
// and carried into the built-in profiles: an id listed twice, or one that
// profile.ValidateID refuses (the exports name a CSP node and a PayloadIdentifier
// after it), is refused at validation, naming profiles, with exitConfig. A second
// copy of an id replaced the first without a word, and a bad id stopped the gateway
// only once its CA was made.
func TestProfileIDsChecked(t *testing.T) {
	t.Parallel()
	base := map[string]string{"SCEPKIT_JWKS": "jwks.json", "SCEPKIT_DIRECTORY": "directory.json"}
	checkSetting(t, "SCEPKIT_PROFILES", "profiles", base, []settingCase{
		{"win,ios,mac", false},
		{"win, ios", false}, // the environment's list is trimmed
		{"5f6c1b1e-0000-4000-8000-000000000001", false},
		{"win,win", true},
		{"win,ios,win", true},
		{"corp vpn", true},
		{"a/b", true},
		{"..", true},
		{"vpn.", true},
	}, nil)
}
