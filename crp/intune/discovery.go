package intune

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Discovery: GET {Graph}/v1.0/servicePrincipals/appId={Intune's app id}/endpoints
// answers {"value":[{"providerName": ..., "uri": ...}, ...]}; the map from provider
// name (case-insensitive) to URI is cached, and dropped when a call to a service fails
// at the HTTP level (the service may have moved), as Microsoft's library does. The
// cache is also refreshed after DiscoveryMaxAge (scepkit's choice).

// DiscoveryMaxAge is how long discovered addresses are used before asking Graph again.
const DiscoveryMaxAge = 24 * time.Hour

type discoveryCache struct {
	sem     chan struct{} // one discovery at a time; made by Client.init
	byName  map[string]string
	fetched time.Time
}

func (d *discoveryCache) lock(ctx context.Context) error {
	select {
	case d.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *discoveryCache) unlock() { <-d.sem }

// endpointList is Graph's answer (both the Microsoft Graph form, providerName, and
// the older Azure AD Graph form, serviceName, are read).
type endpointList struct {
	Value *[]struct {
		ProviderName string `json:"providerName"`
		ServiceName  string `json:"serviceName"`
		URI          string `json:"uri"`
	} `json:"value"`
}

// Endpoint returns the URL of an Intune service by provider name (ValidationService,
// RevocationService), from Endpoints or through discovery. Its errors match
// crp.ErrUnavailable and ErrDiscovery, or ErrSignIn when the sign-in for Graph
// failed.
func (c *Client) Endpoint(ctx context.Context, provider string) (string, error) {
	if c.Endpoints != nil {
		for name, u := range c.Endpoints {
			if strings.EqualFold(name, provider) {
				return u, nil
			}
		}
		return "", unavailable(ErrDiscovery, fmt.Errorf("intune: Endpoints names no %s", provider))
	}
	c.init()
	d := &c.discovery
	if err := d.lock(ctx); err != nil {
		return "", unavailable(ErrDiscovery, fmt.Errorf("intune: waiting for discovery: %w", err))
	}
	defer d.unlock()
	if d.byName == nil || c.now().Sub(d.fetched) > DiscoveryMaxAge {
		m, err := c.discover(ctx)
		if err != nil {
			return "", err
		}
		d.byName, d.fetched = m, c.now()
	}
	u, ok := d.byName[strings.ToLower(provider)]
	if !ok {
		d.byName = nil // ask again next time: the tenant may not have been provisioned yet
		return "", unavailable(ErrDiscovery, fmt.Errorf("intune: Graph lists no endpoint for %s", provider))
	}
	return u, nil
}

func (c *Client) forgetEndpoints() {
	if c.Endpoints != nil {
		return
	}
	d := &c.discovery
	select {
	case d.sem <- struct{}{}:
		d.byName = nil
		<-d.sem
	default: // a discovery is running: it replaces the map
	}
}

func (c *Client) discover(ctx context.Context) (map[string]string, error) {
	u := withSlash(orDefault(c.GraphURL, DefaultGraphURL)) + orDefault(c.GraphVersion, DefaultGraphVersion) +
		"/servicePrincipals/appId=" + url.PathEscape(orDefault(c.AppID, IntuneAppID)) + "/endpoints"
	var list endpointList
	err := c.do(ctx, exchange{method: http.MethodGet, url: u, scope: c.graphScope(), retry: true, op: "discovery"}, &list)
	if err != nil {
		if errors.Is(err, ErrSignIn) {
			return nil, err
		}
		return nil, unavailable(ErrDiscovery, err)
	}
	if list.Value == nil {
		return nil, unavailable(ErrDiscovery, errors.New("intune: discovery: the answer has no value array"))
	}
	m := make(map[string]string, len(*list.Value))
	for _, e := range *list.Value {
		name := e.ProviderName
		if name == "" {
			name = e.ServiceName
		}
		if name == "" || e.URI == "" {
			continue
		}
		if p, err := url.Parse(e.URI); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			continue
		}
		m[strings.ToLower(name)] = strings.TrimRight(e.URI, "/")
	}
	return m, nil
}
