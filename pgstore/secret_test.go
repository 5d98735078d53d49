package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/pgstore"
)

// A connection string that does not parse is refused without its password in the
// error, whatever its spelling: the error reaches the gateway's log and its exit
// message. pgx's own message quotes the string, masking the password only where it
// recognizes one ("password = x", with spaces around "=" as libpq allows, went out
// whole; a quote escaped inside a quoted password left its tail). The error still
// says what is wrong with the string.
func TestConnectionStringSecretNotInErrors(t *testing.T) {
	const secret = "S3cr3tPW"
	for _, c := range []struct{ name, dsn, says string }{
		{"url, bad sslmode", "postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=bogus", "sslmode is invalid"},
		{"url, password parameter", "postgres://u@127.0.0.1:1/db?password=" + secret + "&sslmode=bogus", "sslmode is invalid"},
		{"url, space in password", "postgres://u:" + secret + " x@127.0.0.1:1/db", "spaces"},
		{"url, bad port", "postgres://u:" + secret + "@127.0.0.1:port/db", "invalid port"},
		{"keyword, bad sslmode", "host=127.0.0.1 password=" + secret + " sslmode=bogus", "sslmode is invalid"},
		{"keyword, spaces around =", "host=127.0.0.1 password = " + secret + " sslmode=bogus", "sslmode is invalid"},
		{"keyword, space before =", "host=127.0.0.1 password =" + secret + " sslmode=bogus", "sslmode is invalid"},
		{"keyword, quoted with escaped quote", `host=127.0.0.1 password='x\' ` + secret + `' sslmode=bogus`, "sslmode is invalid"},
		{"keyword, no =", "host=127.0.0.1 password " + secret, "keyword/value"},
		{"keyword, bad pool setting", "host=127.0.0.1 password=" + secret + " pool_max_conns=many", "pool_max_conns"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := pgstore.Open(ctx, c.dsn, nil)
			if err == nil {
				s.Close()
			}
			require.ErrorIs(t, err, pgstore.ErrConnString)
			require.NotContains(t, err.Error(), secret)
			require.NotContains(t, err.Error(), secret[2:], "a part of the password")
			require.Contains(t, err.Error(), c.says, "the error says what is wrong")
		})
	}
}
