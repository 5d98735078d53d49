// Package plainhttp decides where scepkit may fetch over plain http: what it fetches
// there (the MDM's keys, a webhook's verdict) carries no signature of its own, so only
// https, or http to a loopback host, keeps a man in the middle from changing it.
package plainhttp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
)

// Protected reports whether what is fetched from u cannot be changed on the way:
// https, or http to a loopback host (localhost or a loopback address).
func Protected(u *url.URL) bool {
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		ip := net.ParseIP(h)
		return h == "localhost" || ip != nil && ip.IsLoopback()
	}
	return false
}

// CheckRedirect is an http.Client CheckRedirect that refuses a redirect to a URL that
// is not Protected, then calls next (nil: at most 10 redirects, as net/http does).
func CheckRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(r *http.Request, via []*http.Request) error {
		if !Protected(r.URL) {
			return fmt.Errorf("redirected to plain http (%s)", r.URL.Redacted())
		}
		if next != nil {
			return next(r, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}
