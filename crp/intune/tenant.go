package intune

import (
	"fmt"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
)

// Tenant is one Intune tenant of a gateway that serves several from one process (a
// managed-service provider's). Intune's challenges are opaque: nothing in one tells
// which tenant minted it, so the tenant is chosen by where the device sends it. Each
// tenant's SCEP profiles give devices their own gateway path, served by their own
// crp.RegistrationPoint (the CA, the RA and the stores may be shared), which Wire
// sets up with the tenant's Validator and Notifier. Each tenant has its own Client:
// its own Entra credentials, token cache and discovery cache; notifications and
// revocations go to the tenant whose Validator judged the request.
type Tenant struct {
	// Client signs in to the tenant and calls its services. Required.
	Client *Client
	// Profile, IssuingCA, CAConfiguration and CertificateAuthority are the
	// Validator's and Notifier's fields of the same names.
	Profile                                          *profile.Profile
	IssuingCA, CAConfiguration, CertificateAuthority string
}

// Wire makes rp judge Intune challenges for this tenant: it adds the tenant's
// Validator to rp.Validators, makes rp.Notifier the tenant's Notifier (with the
// previous Notifier as its Others) and sets RequireNotification. rp must serve this
// tenant's path only: Wire refuses a registration point that already judges Intune
// challenges for a tenant, since a Validator accepts every challenge that is not
// one of scepkit's own and the first one would take the second tenant's.
func (t *Tenant) Wire(rp *crp.RegistrationPoint) (*Validator, error) {
	if t.Client == nil {
		return nil, fmt.Errorf("%w: the Tenant needs a Client", ErrConfig)
	}
	if err := t.Client.Validate(); err != nil {
		return nil, err
	}
	for _, v := range rp.Validators {
		if iv, ok := v.(*Validator); ok {
			return nil, fmt.Errorf("%w: this registration point already judges Intune challenges for %s: give tenant %s its own gateway path and registration point",
				ErrConfig, iv.Client.Tenant, t.Client.Tenant)
		}
	}
	v := &Validator{Client: t.Client, Profile: t.Profile}
	rp.Validators = append(rp.Validators, v)
	rp.Notifier = &Notifier{Client: t.Client, IssuingCA: t.IssuingCA, CAConfiguration: t.CAConfiguration,
		CertificateAuthority: t.CertificateAuthority, Others: rp.Notifier}
	rp.RequireNotification = true
	return v, nil
}
