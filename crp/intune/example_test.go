package intune_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// Wiring a registration point for Intune, next to scepkit's own challenges.
func Example_gateway() {
	env, err := crptest.New(crptest.Options{}) // any registration point; crptest for brevity
	if err != nil {
		panic(err)
	}
	client := &intune.Client{
		Tenant:       "contoso.onmicrosoft.com",
		ClientID:     "11111111-2222-3333-4444-555555555555",
		ClientSecret: "from a secret store", // or Certificate and Key
		CallerInfo:   "example-ca/1.0",
	}
	if err := client.Validate(); err != nil {
		panic(err)
	}
	// Intune checked the CSR against its profile: issue with a template that takes the
	// subject and SANs from the request.
	env.Templates["intune"] = &catemplate.Template{Name: "intune", Validity: 365 * 24 * time.Hour,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, MinKeySize: 2048,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, SubjectFromRequest: true,
		SANsFromRequest: true, Published: true}
	rp := env.RP
	rp.Templates = &catemplate.ProfileResolver{ByProfile: map[string]string{"intune": "intune"},
		Fallback: rp.Templates, Templates: env.Templates}
	rp.Validators = []crp.ChallengeValidator{&intune.Validator{Client: client, Profile: &profile.Profile{ID: "intune"}}}
	rp.Notifier = &intune.Notifier{Client: client, Others: rp.Notifier}
	rp.RequireNotification = true
	fmt.Println(rp.Validate())

	// Revocations Intune asks for, until the context ends.
	poller := &intune.Poller{Client: client, Revoker: &intune.CARevoker{CA: env.CA, Certificates: env.Certificates}}
	_ = poller // go poller.Run(ctx)
	// Output: <nil>
}

// Testing a gateway against the emulator: a scripted verdict per challenge, and what
// Intune was told.
func Example_emulator() {
	emu := intunetest.NewServer()
	defer emu.Close()
	client := emu.Client("example-ca/1.0")
	ctx := context.Background()

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	request := func(ch string) []byte {
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "device"}}, key)
		der, _ = scep.AddChallengePassword(der, ch, key, nil)
		return der
	}
	ok := emu.Challenge(intunetest.Verdict{})
	fmt.Println(client.ValidateRequest(ctx, "tx-1", request(ok)))
	refused := emu.Challenge(intunetest.Verdict{Code: intune.CodeKeyLengthMismatch})
	err := client.ValidateRequest(ctx, "tx-2", request(refused))
	phase, _ := err.(*intune.ServiceError).Code.Verdict()
	fmt.Println(phase)
	emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: 500, Times: 1})
	fmt.Println(client.ValidateRequest(ctx, "tx-3", request(ok)) != nil)
	fmt.Println(len(emu.Validations()), emu.Violations())
	// Output:
	// <nil>
	// phase3-mapping
	// true
	// 2 []
}

// The emulator judges the CSR against what the challenge was minted for: no verdict is
// scripted.
func Example_judged() {
	emu := intunetest.NewServer()
	defer emu.Close()
	client := emu.Client("example-ca/1.0")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	request := func(cn, ch string) []byte {
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		der, _ = scep.AddChallengePassword(der, ch, key, nil)
		return der
	}
	minted := intunetest.Profile{Subject: pkix.Name{CommonName: "LAPTOP-7"}, KeySize: 2048}
	ctx := context.Background()
	fmt.Println(client.ValidateRequest(ctx, "tx-1", request("LAPTOP-7", emu.Mint(minted))))
	err := client.ValidateRequest(ctx, "tx-2", request("evil-admin", emu.Mint(minted)))
	fmt.Println(err.(*intune.ServiceError).Code)
	// Output:
	// <nil>
	// SubjectNameMismatch
}

// Two tenants in one process: each gets its own registration point (and gateway
// path) with its own Entra app.
func Example_tenants() {
	for _, t := range []*intune.Tenant{
		{Client: &intune.Client{Tenant: "contoso.onmicrosoft.com", ClientID: "11111111-2222-3333-4444-555555555555",
			ClientSecret: "from a secret store", CallerInfo: "example-ca/1.0"}},
		{Client: &intune.Client{Tenant: "fabrikam.onmicrosoft.com", ClientID: "66666666-7777-8888-9999-000000000000",
			ClientSecret: "from a secret store", CallerInfo: "example-ca/1.0"}},
	} {
		env, err := crptest.New(crptest.Options{}) // a registration point per tenant; mount env.Server at the tenant's path
		if err != nil {
			panic(err)
		}
		v, err := t.Wire(env.RP)
		fmt.Println(v.Name(), err, env.RP.Validate())
	}
	// Output:
	// intune:contoso.onmicrosoft.com <nil> <nil>
	// intune:fabrikam.onmicrosoft.com <nil> <nil>
}
