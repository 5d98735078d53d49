package intune

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Sign-in: the OAuth 2.0 client-credentials grant at Entra's v2.0 token endpoint,
// through golang.org/x/oauth2/clientcredentials (form encoding, error parsing, a
// bounded read of the answer). Tokens are cached per scope until RefreshBefore
// their expiry; one sign-in per scope runs at a time, and waiting for it honours
// the caller's context.

// RefreshBefore is how long before its expiry a cached token is replaced.
const RefreshBefore = 5 * time.Minute

// AssertionLifetime is the validity of a certificate credential's client assertion.
const AssertionLifetime = 10 * time.Minute

type tokenCache struct {
	sem    chan struct{} // one sign-in at a time
	token  string
	expiry time.Time
}

func (c *Client) cacheFor(scope string) *tokenCache {
	if v, ok := c.tokens.Load(scope); ok {
		return v.(*tokenCache)
	}
	v, _ := c.tokens.LoadOrStore(scope, &tokenCache{sem: make(chan struct{}, 1)})
	return v.(*tokenCache)
}

func (c *Client) forgetToken(scope string) {
	tc := c.cacheFor(scope)
	select {
	case tc.sem <- struct{}{}:
		tc.token, tc.expiry = "", time.Time{}
		<-tc.sem
	default: // a sign-in is running: it replaces the token anyway
	}
}

// token returns a bearer token for scope. Its errors match ErrSignIn and
// crp.ErrUnavailable.
func (c *Client) token(ctx context.Context, scope string) (string, error) {
	tc := c.cacheFor(scope)
	select {
	case tc.sem <- struct{}{}:
	case <-ctx.Done():
		return "", unavailable(ErrSignIn, fmt.Errorf("intune: waiting for sign-in: %w", ctx.Err()))
	}
	defer func() { <-tc.sem }()
	now := c.now()
	if tc.token != "" && now.Before(tc.expiry) {
		return tc.token, nil
	}
	tok, err := c.signIn(ctx, scope)
	if err != nil {
		c.log().WarnContext(ctx, "intune: sign-in failed", "scope", scope, "err", err)
		return "", unavailable(ErrSignIn, err)
	}
	refresh := tok.Expiry.Add(-RefreshBefore)
	if life := tok.Expiry.Sub(now); life < 2*RefreshBefore { // a short-lived token: keep it half its life
		refresh = now.Add(life / 2)
	}
	if tok.Expiry.IsZero() {
		refresh = now.Add(RefreshBefore)
	}
	tc.token, tc.expiry = tok.AccessToken, refresh
	c.log().InfoContext(ctx, "intune: signed in", "scope", scope, "expires", tok.Expiry)
	return tc.token, nil
}

func (c *Client) signIn(ctx context.Context, scope string) (*oauth2.Token, error) {
	c.init()
	hc := *c.http
	if hc.Timeout == 0 || hc.Timeout > c.timeout() {
		hc.Timeout = c.timeout()
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &hc)
	cfg := &clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: c.TokenURL(),
		Scopes: []string{scope}, AuthStyle: oauth2.AuthStyleInParams}
	if c.ClientSecret == "" {
		a, err := c.assertion()
		if err != nil {
			return nil, err
		}
		cfg.EndpointParams = url.Values{
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {a},
		}
	}
	tok, err := cfg.Token(ctx)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) { // the body is Entra's error document: no secret in it
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			err = fmt.Errorf("intune: sign-in for %s refused (HTTP %d): %s %s", scope, status, re.ErrorCode,
				snippet([]byte(re.ErrorDescription)))
			if status >= 400 && status < 500 && status != 429 {
				return nil, &refusal{err} // a refusal does not change when asked again
			}
			return nil, err
		}
		return nil, fmt.Errorf("intune: sign-in for %s: %w", scope, redactURL(err))
	}
	if tok.AccessToken == "" {
		return nil, fmt.Errorf("intune: sign-in for %s: no access token in the answer", scope)
	}
	return tok, nil
}

// assertion builds the client assertion of a certificate credential, in the form
// Microsoft Entra documents for RS256 (its "certificate credentials" page): a JWT
// whose header is alg RS256, typ JWT and x5t, the base64url SHA-1 thumbprint of the
// certificate, with iss = sub = the client id and aud = the token endpoint. The
// SHA-256 thumbprint (x5t#S256) is documented only with PS256, so it is not sent.
func (c *Client) assertion() (string, error) {
	if err := checkCredential(c.Certificate, c.Key); err != nil {
		return "", err
	}
	s1 := sha1.Sum(c.Certificate.Raw)
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "x5t": b64(s1[:])})
	now := c.now()
	claims, _ := json.Marshal(map[string]any{"aud": c.TokenURL(), "iss": c.ClientID, "sub": c.ClientID,
		"jti": newRequestID(), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(AssertionLifetime).Unix()})
	signing := b64(hdr) + "." + b64(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := c.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("intune: signing the client assertion: %w", err)
	}
	return signing + "." + b64(sig), nil
}

// refusal marks a sign-in error that retrying will not cure.
type refusal struct{ error }

func (r *refusal) Unwrap() error { return r.error }

// checkCredential refuses a certificate credential Microsoft Entra would refuse:
// Entra verifies client assertions signed with RSA keys only (an ES256 assertion is
// refused with AADSTS5002738, as the Azure SDK and MSAL maintainers report), and the
// certificate must be the key's.
func checkCredential(cert *x509.Certificate, k crypto.Signer) error {
	pub, ok := k.Public().(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("intune: a certificate credential needs an RSA key (Microsoft Entra accepts RSA-signed client assertions only), not %T", k.Public())
	}
	if cp, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !cp.Equal(pub) {
		return errors.New("intune: the credential's certificate does not hold the public key of its Key")
	}
	return nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
