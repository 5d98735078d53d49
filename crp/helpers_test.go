package crp_test

import (
	"context"
	"crypto/x509"

	"crypto"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/profile"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func sha1b64(b []byte) string {
	sum := sha1.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// challengeWithExp re-signs a challenge with another exp, keeping its header, as a
// compromised signer could.
func challengeWithExp(t testing.TB, key crypto.Signer, ch string, exp time.Time) string {
	t.Helper()
	plain := strings.NewReplacer("+", "-", "/", "_").Replace(ch)
	parts := strings.Split(plain, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	claims["exp"] = exp.Unix()
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	var h map[string]any
	require.NoError(t, json.Unmarshal(hdr, &h))
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims(claims))
	tok.Header = h
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return strings.NewReplacer("-", "+", "_", "/").Replace(s)
}

func bigOne() *big.Int { return big.NewInt(1) }

func catemplateApply(t *catemplate.Template, csr *x509.CertificateRequest, r *profile.Rendered, env *crptest.Env) (*x509.Certificate, error) {
	return catemplate.ApplyVerified(t, csr, r, env.CA.Certificate, time.Now(), nil)
}

func checkProfile(env *crptest.Env, csr *x509.CertificateRequest) error {
	r, err := env.Rendered(context.Background(), "alice@example.com", "alice-laptop")
	if err != nil {
		return err
	}
	return profile.Check(csr, r)
}
