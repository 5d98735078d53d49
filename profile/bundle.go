package profile

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"unicode/utf8"
)

// EAPTLS is the EAP method type of EAP-TLS (RFC 5216): the value of Apple's
// AcceptEAPTypes and of the Windows EapHostConfig Type.
const EAPTLS = 13

// Bundle is what a device needs to put its SCEP certificate to work: the root it
// trusts (and any intermediates), the SCEP enrollment, and the networks that
// authenticate with the certificate. Export it with [Bundle.MobileConfig],
// [Bundle.SyncML] or [Bundle.JSON]; each links the parts the way its platform does
// (payload UUIDs on Apple, issuer and root thumbprints on Windows).
//
// Every payload UUID is derived from the profile id, the device id and the payload's
// role, so re-deploying the bundle to the same device replaces what it installed
// rather than adding a second copy.
type Bundle struct {
	// SCEP is the rendered SCEP profile. Its Profile.RootCA is the root the bundle
	// installs and the anchor the device trusts for the network servers; required (a
	// fingerprint alone cannot be installed).
	SCEP *Rendered
	// DeviceID is the device the bundle is for (the MDM's device id); required.
	DeviceID string
	// Intermediates are CA certificates between the root and the issuing CA, installed
	// as intermediates (Apple com.apple.security.pkcs1, Windows CA store).
	Intermediates []*x509.Certificate
	// WiFi, if set, adds a WPA2-Enterprise network joined by EAP-TLS with the SCEP
	// certificate.
	WiFi *WiFi
	// VPN, if set, adds an IKEv2 VPN that authenticates with the SCEP certificate.
	// Only the Apple and JSON exports carry it; [Bundle.SyncML] refuses a bundle with
	// a VPN rather than drop it.
	VPN *VPN
}

// WiFi is an enterprise Wi-Fi network the device joins by EAP-TLS with the SCEP
// certificate, trusting RADIUS servers whose certificate chains to the bundle's root
// and carries one of TrustedServerNames.
//
// That root also issues every enrolled device's certificate, whose names may come
// from values a user controls ({{DeviceName}}). So that no device certificate can
// pass for the RADIUS server's, [Bundle.Validate] refuses a Wi-Fi bundle whose profile
// asks for Server Authentication, anyExtendedKeyUsage (2.5.29.37.0) or Microsoft's Any
// Purpose (1.3.6.1.4.1.311.10.12.1), and the issuing CA's template must never add
// those EKUs or leave the EKU extension out (the EKUs come from the template, not the
// profile); TrustedServerNames must be names no device can obtain a certificate for.
// The bundle has no RADIUS anchor of its own: the server is trusted through the SCEP
// root.
type WiFi struct {
	// SSID is the network name: 1 to 32 bytes of UTF-8, no control characters.
	SSID string
	// Hidden says the network does not broadcast its SSID.
	Hidden bool
	// TrustedServerNames are the names the RADIUS server's certificate may carry
	// (Apple matches the common name and allows a leading "*." wildcard label;
	// Windows matches the names, separated by ";" in its profile). At least one is
	// required: without a name any certificate from the root would be trusted. None
	// may be a name, or a wildcard covering a name, that an enrolled device's
	// certificate can carry; [Bundle.Validate] refuses one that this bundle's own
	// certificate carries.
	TrustedServerNames []string
}

// VPN is an IKEv2 VPN that authenticates with the SCEP certificate.
type VPN struct {
	// Name is what the device shows for the connection; required.
	Name string
	// RemoteAddress is the VPN server's host name or IP address; required.
	RemoteAddress string
	// RemoteIdentifier is the server's IKE identity; empty means RemoteAddress. The
	// device trusts a server certificate that chains to a root it trusts (this
	// bundle's root among them) and carries this identity: as with a Wi-Fi network's
	// TrustedServerNames, it must be a name no enrolled device can obtain a
	// certificate for, and a server certificate from another CA than the SCEP one
	// (named by ServerCertificateIssuerCommonName) keeps device certificates out of
	// the question. Apple checks no EKU of the gateway's certificate, so
	// [Bundle.Validate] refuses an identity this bundle's own certificate carries.
	RemoteIdentifier string
	// LocalIdentifier is the device's IKE identity; empty means the certificate's
	// first UPN, else its first DNS name, else its first email address.
	LocalIdentifier string
	// ServerCertificateIssuerCommonName is the common name of the CA that issued the
	// VPN server's certificate; required. The device sends the server a certificate
	// request for that issuer, and a server (strongSwan by default) may send its
	// certificate only when asked. Apple's com.apple.vpn.managed schema requires the
	// key whenever CertificateType is present, and the Apple export always writes
	// CertificateType.
	ServerCertificateIssuerCommonName string
}

// bundleErr is a FieldError of a bundle setting; the value is cut to 100 bytes, so an
// error that gets logged stays short.
func bundleErr(field, value, reason string) error {
	if len(value) > 100 {
		value = value[:100] + "..."
	}
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// Validate checks the bundle's own settings and returns one [*FieldError] per bad
// setting, joined. The rendered profile was checked by [Render].
func (b *Bundle) Validate() error {
	if b == nil || b.SCEP == nil || b.SCEP.Profile == nil {
		return bundleErr("SCEP", "nil", "a rendered profile is required")
	}
	var errs []error
	p := b.SCEP.Profile
	if p.RootCA == nil {
		errs = append(errs, bundleErr("SCEP.Profile.RootCA", "nil", "the bundle installs the root: set RootCA, not only CAFingerprint"))
	} else if !p.RootCA.IsCA {
		errs = append(errs, bundleErr("SCEP.Profile.RootCA", p.RootCA.Subject.String(), "not a CA certificate"))
	}
	if b.WiFi != nil || b.VPN != nil {
		if !authenticates(p.ExtendedKeyUsages) {
			var oids []string
			for _, e := range p.ExtendedKeyUsages {
				oids = append(oids, e.OID.String())
			}
			errs = append(errs, bundleErr("SCEP.Profile.ExtendedKeyUsages", strings.Join(oids, ","),
				"EAP-TLS and IKEv2 need Client Authentication in the certificate (a VPN alone also accepts an any-purpose EKU)"))
		}
		if p.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			errs = append(errs, bundleErr("SCEP.Profile.KeyUsage", fmt.Sprint(int(p.KeyUsage)),
				"a TLS or IKE client signs: digitalSignature is required"))
		}
	}
	if err := checkText(b.DeviceID, 256); err != "" || b.DeviceID == "" {
		errs = append(errs, bundleErr("DeviceID", b.DeviceID, "required, at most 256 bytes, no control characters"))
	}
	for i, c := range b.Intermediates {
		switch {
		case c == nil || !c.IsCA:
			errs = append(errs, bundleErr(fmt.Sprintf("Intermediates[%d]", i), "", "not a CA certificate"))
		case p.RootCA != nil && c.Equal(p.RootCA):
			errs = append(errs, bundleErr(fmt.Sprintf("Intermediates[%d]", i), c.Subject.String(), "the root certificate, installed already as the root"))
		case slices.ContainsFunc(b.Intermediates[:i], c.Equal):
			// Each certificate is one payload (its UUID) and one CSP node (its hash):
			// a second copy would repeat the UUID, and its Add would fail on Windows.
			errs = append(errs, bundleErr(fmt.Sprintf("Intermediates[%d]", i), c.Subject.String(), "listed twice"))
		}
	}
	if w := b.WiFi; w != nil {
		for i, e := range p.ExtendedKeyUsages {
			if servesTLS(e) {
				errs = append(errs, bundleErr(fmt.Sprintf("SCEP.Profile.ExtendedKeyUsages[%d]", i), e.OID.String(),
					"with a Wi-Fi network the certificate must not be able to authenticate a TLS server: "+
						"its root is the RADIUS server's trust anchor, so a device could pose as the server"))
			}
		}
		switch {
		case len(w.SSID) == 0 || len(w.SSID) > 32 || checkText(w.SSID, 32) != "":
			errs = append(errs, bundleErr("WiFi.SSID", w.SSID, "1 to 32 bytes of UTF-8 without control characters"))
		case w.SSID == "." || w.SSID == "..":
			// The Wi-Fi CSP names the profile's node by its SSID: a dot-segment, even
			// percent-escaped, is removed by URI normalisation (RFC 3986 sections 5.2.4
			// and 6.2.2.2) and the profile lands on another node.
			errs = append(errs, bundleErr("WiFi.SSID", w.SSID, "a dot-segment cannot name the Windows Wi-Fi CSP's node"))
		}
		if len(w.TrustedServerNames) == 0 {
			errs = append(errs, bundleErr("WiFi.TrustedServerNames", "", "at least one RADIUS server name is required"))
		}
		for i, n := range w.TrustedServerNames {
			if !serverName(n) {
				errs = append(errs, bundleErr(fmt.Sprintf("WiFi.TrustedServerNames[%d]", i), n,
					"a host name, optionally with a leading *. label"))
			} else if own := b.ownName(n, true); own != "" {
				errs = append(errs, bundleErr(fmt.Sprintf("WiFi.TrustedServerNames[%d]", i), n,
					fmt.Sprintf("covers %.100q, a name of this device's own certificate, which would pass as the RADIUS server's", own)))
			}
		}
	}
	if v := b.VPN; v != nil {
		if v.Name == "" || checkText(v.Name, 256) != "" {
			errs = append(errs, bundleErr("VPN.Name", v.Name, "required, at most 256 bytes, no control characters"))
		}
		if !hostOrIP(v.RemoteAddress) {
			errs = append(errs, bundleErr("VPN.RemoteAddress", v.RemoteAddress, "a host name or an IP address"))
		}
		for _, f := range []struct{ name, v string }{
			{"VPN.RemoteIdentifier", v.RemoteIdentifier}, {"VPN.LocalIdentifier", v.LocalIdentifier},
		} {
			if checkText(f.v, 256) != "" {
				errs = append(errs, bundleErr(f.name, f.v, "at most 256 bytes, no control characters"))
			}
		}
		if n := v.ServerCertificateIssuerCommonName; n == "" || checkText(n, 256) != "" {
			errs = append(errs, bundleErr("VPN.ServerCertificateIssuerCommonName", n,
				"required (Apple's IKEv2 payload needs it with CertificateType), at most 256 bytes, no control characters"))
		}
		if id := b.vpnDefaults().RemoteIdentifier; checkText(id, 256) == "" {
			if own := b.ownName(id, false); own != "" {
				errs = append(errs, bundleErr("VPN.RemoteIdentifier", id,
					fmt.Sprintf("is %.100q, a name of this device's own certificate, which would pass as the VPN gateway's "+
						"(Apple checks no EKU of an IKEv2 server certificate)", own)))
			}
		}
		if v.LocalIdentifier == "" && len(b.SCEP.UPNs)+len(b.SCEP.DNSNames)+len(b.SCEP.EmailAddresses) == 0 {
			errs = append(errs, bundleErr("VPN.LocalIdentifier", "", "required when the certificate has no UPN, DNS or email name"))
		}
	}
	return errors.Join(errs...)
}

// ownName returns the first name of the bundle's own certificate that the server name
// n matches, or "". A server certificate is matched by these names, and the bundle's
// root signs this certificate too: a device whose names a user chose ({{DeviceName}})
// could otherwise hold a certificate that passes as the server's. Names compare
// without regard to case or a trailing dot.
//
// With eap (n is a RADIUS server name) the names are the subject's common names and
// the DNS SANs, those an EAP client matches a server by, and a leading "*." in n
// covers every name under the rest, however many labels deep, as Windows reads it
// (Apple takes one label). Without (n is an IKE identity), email and UPN SANs count
// too: an IKEv2 identity may be an email address, and strongSwan reads a UPN as one.
// Either way, a leading "*." in one of the names (written so by the profile: a
// variable makes none, see Render) covers n as a wildcard n covers the names.
func (b *Bundle) ownName(n string, eap bool) string {
	norm := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
	n = norm(n)
	rest, isWildcard := strings.CutPrefix(n, "*.")
	r := b.SCEP
	var names []string
	for _, a := range r.Attributes {
		if a.Type.Equal(oidCN) {
			names = append(names, a.Value)
		}
	}
	names = append(names, r.DNSNames...)
	if !eap {
		names = append(names, r.EmailAddresses...)
		names = append(names, r.UPNs...)
	}
	for _, own := range names {
		o := norm(own)
		ownRest, ownWildcard := strings.CutPrefix(o, "*.")
		if o == n || eap && isWildcard && strings.HasSuffix(o, "."+rest) ||
			ownWildcard && !isWildcard && strings.HasSuffix(n, "."+ownRest) {
			return own
		}
	}
	return ""
}

// anyPurposeMicrosoft is Microsoft's Any Purpose EKU. The Windows WLAN profile does
// not select a certificate by it (see [Bundle.WLANProfile]), and a Wi-Fi bundle
// refuses it; only a VPN-only bundle takes it for Client Authentication.
var anyPurposeMicrosoft = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 10, 12, 1}

// servesTLS reports whether a certificate with EKU e may authenticate a TLS server:
// Server Authentication, anyExtendedKeyUsage (RFC 5280 section 4.2.1.12) or
// Microsoft's Any Purpose. Apple's EAP trust policy (SecPolicyCreateEAP) accepts a
// RADIUS server certificate that has Server Authentication or anyExtendedKeyUsage,
// or no extendedKeyUsage extension at all.
func servesTLS(e EKU) bool {
	return e.OID.Equal(EKUServerAuth.OID) || e.OID.Equal(EKUAnyPurpose.OID) || e.OID.Equal(anyPurposeMicrosoft)
}

// authenticates reports whether ekus let the certificate authenticate a TLS or IKE
// client: Client Authentication, anyExtendedKeyUsage (RFC 5280 section 4.2.1.12) or
// Microsoft's Any Purpose. With a Wi-Fi network [Bundle.Validate] refuses the last
// two, so a Wi-Fi certificate always has Client Authentication, the EKU the Windows
// WLAN profile selects by.
func authenticates(ekus []EKU) bool {
	for _, e := range ekus {
		if e.OID.Equal(EKUClientAuth.OID) || e.OID.Equal(EKUAnyPurpose.OID) || e.OID.Equal(anyPurposeMicrosoft) {
			return true
		}
	}
	return false
}

// checkText returns a reason when s is not valid UTF-8, has a control character or
// is longer than max bytes.
func checkText(s string, max int) string {
	if len(s) > max {
		return "too long"
	}
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, r := range s {
		if isControl(r) || r == 0xfffe || r == 0xffff {
			return "control character"
		}
	}
	return ""
}

// serverName reports whether s is a host name, optionally with a leading "*." label.
func serverName(s string) bool { return s != "" && validDNSName(s) }

func hostOrIP(s string) bool {
	return net.ParseIP(s) != nil || s != "" && !strings.HasPrefix(s, "*.") && validDNSName(s)
}

// bundleUUID derives the UUID of one payload of the bundle from the profile
// identifier, the device and the payload's role. Lengths prefix each part so no
// choice of identifiers can make two different triples collide.
func bundleUUID(ident, device, role string) string {
	return nameUUID(fmt.Sprintf("bundle:%d:%s:%d:%s:%s", len(ident), ident, len(device), device, role))
}

// bundleIDs are the identifiers and UUIDs of a bundle's payloads.
type bundleIDs struct {
	ident                          string
	profile, root, scep, wifi, vpn string
	intermediates                  []string
}

func (b *Bundle) ids(opts ExportOptions) bundleIDs {
	ident := opts.PayloadIdentifier
	if ident == "" {
		ident = "com.scepkit.bundle." + b.SCEP.Profile.ID
	}
	id := bundleIDs{
		ident:   ident,
		profile: bundleUUID(ident, b.DeviceID, "profile"),
		root:    bundleUUID(ident, b.DeviceID, "root"),
		scep:    bundleUUID(ident, b.DeviceID, "scep"),
		wifi:    bundleUUID(ident, b.DeviceID, "wifi"),
		vpn:     bundleUUID(ident, b.DeviceID, "vpn"),
	}
	if opts.PayloadUUID != "" {
		id.profile = opts.PayloadUUID
	}
	if opts.SCEPPayloadUUID != "" {
		id.scep = opts.SCEPPayloadUUID
	}
	for _, c := range b.Intermediates {
		s := sha1.Sum(c.Raw)
		id.intermediates = append(id.intermediates, bundleUUID(ident, b.DeviceID, "ca:"+hex.EncodeToString(s[:])))
	}
	return id
}

// vpnDefaults returns v with its defaults filled from the bundle.
func (b *Bundle) vpnDefaults() VPN {
	v := *b.VPN
	if v.RemoteIdentifier == "" {
		v.RemoteIdentifier = v.RemoteAddress
	}
	if v.LocalIdentifier == "" {
		r := b.SCEP
		for _, l := range [][]string{r.UPNs, r.DNSNames, r.EmailAddresses} {
			if len(l) > 0 {
				v.LocalIdentifier = l[0]
				break
			}
		}
	}
	return v
}

// MobileConfig returns the bundle as one unsigned Apple configuration profile: a
// com.apple.security.root payload for the root, a com.apple.security.pkcs1 payload
// per intermediate, the com.apple.security.scep payload (as [MobileConfig] writes
// it), then:
//
//   - com.apple.wifi.managed: SSID_STR, HIDDEN_NETWORK, AutoJoin, EncryptionType
//     "WPA2", PayloadCertificateUUID naming the SCEP payload (the client identity),
//     and EAPClientConfiguration with AcceptEAPTypes [13], PayloadCertificateAnchorUUID
//     naming the root payload (the RADIUS server's certificate must chain to it),
//     TLSTrustedServerNames;
//   - com.apple.vpn.managed: VPNType "IKEv2", UserDefinedName, and an IKEv2
//     dictionary with AuthenticationMethod "Certificate", CertificateType "RSA",
//     PayloadCertificateUUID naming the SCEP payload, RemoteAddress,
//     RemoteIdentifier, LocalIdentifier, ServerCertificateIssuerCommonName,
//     ExtendedAuthEnabled 0.
//
// The profile's PayloadIdentifier defaults to "com.scepkit.bundle.<Profile.ID>"; each
// payload's is that plus ".root", ".ca.N", ".scep", ".wifi" or ".vpn".
func (b *Bundle) MobileConfig(opts ExportOptions) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if opts.PayloadIdentifier == "" {
		opts.PayloadIdentifier = "com.scepkit.bundle." + b.SCEP.Profile.ID
	}
	a, err := appleSettings(b.SCEP, opts)
	if err != nil {
		return nil, err
	}
	id := b.ids(opts)
	p := b.SCEP.Profile
	w := &plist{}
	w.begin()

	w.open("dict")
	w.str("PayloadCertificateFileName", "root.cer")
	w.data("PayloadContent", p.RootCA.Raw)
	w.payloadKeys("Trusted root certificate", rootName(p.RootCA), id.ident+".root", "com.apple.security.root", id.root)
	for i, c := range b.Intermediates {
		w.open("dict")
		w.str("PayloadCertificateFileName", fmt.Sprintf("ca-%d.cer", i+1))
		w.data("PayloadContent", c.Raw)
		w.payloadKeys("Intermediate CA certificate", rootName(c), fmt.Sprintf("%s.ca.%d", id.ident, i+1),
			"com.apple.security.pkcs1", id.intermediates[i])
	}

	w.scepPayload(b.SCEP, a, id.scep)

	if wf := b.WiFi; wf != nil {
		w.open("dict")
		w.boolean("AutoJoin", true)
		w.key("EAPClientConfiguration")
		w.open("dict")
		w.key("AcceptEAPTypes")
		w.open("array")
		w.line(fmt.Sprintf("<integer>%d</integer>", EAPTLS))
		w.close("array")
		w.key("PayloadCertificateAnchorUUID")
		w.open("array")
		w.text("string", id.root)
		w.close("array")
		w.key("TLSTrustedServerNames")
		w.open("array")
		for _, n := range wf.TrustedServerNames {
			w.text("string", n)
		}
		w.close("array")
		w.close("dict")
		w.str("EncryptionType", "WPA2")
		w.boolean("HIDDEN_NETWORK", wf.Hidden)
		w.str("PayloadCertificateUUID", id.scep)
		w.str("SSID_STR", wf.SSID)
		w.payloadKeys("Wi-Fi (EAP-TLS)", wf.SSID, id.ident+".wifi", "com.apple.wifi.managed", id.wifi)
	}

	if b.VPN != nil {
		v := b.vpnDefaults()
		w.open("dict")
		w.key("IKEv2")
		w.open("dict")
		w.str("AuthenticationMethod", "Certificate")
		w.str("CertificateType", "RSA")
		w.integer("ExtendedAuthEnabled", 0)
		w.str("LocalIdentifier", v.LocalIdentifier)
		w.str("PayloadCertificateUUID", id.scep)
		w.str("RemoteAddress", v.RemoteAddress)
		w.str("RemoteIdentifier", v.RemoteIdentifier)
		w.str("ServerCertificateIssuerCommonName", v.ServerCertificateIssuerCommonName)
		w.close("dict")
		w.str("UserDefinedName", v.Name)
		w.str("VPNType", "IKEv2")
		w.payloadKeys("VPN (IKEv2, certificate)", v.Name, id.ident+".vpn", "com.apple.vpn.managed", id.vpn)
	}
	return w.end(p, id.ident, id.profile, opts.Organization)
}

// rootName is a certificate's display name: its common name, else its subject.
func rootName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

// thumbprint is the SHA-1 of a certificate: upper-case hex (plain) or lower-case
// pairs separated by spaces (spaced), the form Microsoft's EAP examples use.
func thumbprint(c *x509.Certificate, spaced bool) string {
	s := sha1.Sum(c.Raw)
	if !spaced {
		return strings.ToUpper(hex.EncodeToString(s[:]))
	}
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = hex.EncodeToString([]byte{x})
	}
	return strings.Join(parts, " ")
}

// SyncML returns the bundle as the body of one Windows SyncML message (a SyncML
// element holding a SyncBody, without SyncHdr: the MDM's OMA-DM session adds the
// header, with its SessionID, MsgID, Target and Source, when it sends the commands):
//
//   - an Add of ./Device/Vendor/MSFT/RootCATrustedCertificates/Root/{SHA-1}/EncodedCertificate
//     (format b64) for the root (the CSP has no ./User root store), and of .../CA/{SHA-1}/
//     EncodedCertificate per intermediate;
//   - the Atomic that [SyncML] writes for the SCEP certificate;
//   - with WiFi, an Add of <scope>/Vendor/MSFT/WiFi/Profile/<SSID>/WlanXml (format chr;
//     the SSID percent-escaped in the URI, as the Wi-Fi CSP asks) holding a WLAN
//     profile (see [Bundle.WLANProfile]).
//
// Every node is named by what it holds (the certificate's hash, the SSID, the
// UniqueID), so a re-deployed bundle addresses the nodes it installed; with
// opts.Replace every command is a Replace (the Wi-Fi CSP accepts Replace only for an
// existing profile, Add only for a new one). A bundle with a VPN is refused with
// [ErrExport]: the Windows VPN (VPNv2 CSP) is not covered, and a device should not
// silently miss what the MDM meant to deploy.
//
// The device runs the enrollment (Exec of .../Install/Enroll) asynchronously, so in
// this one message the Wi-Fi profile arrives before the certificate it selects exists.
// Microsoft's Wi-Fi CSP asks the server to configure and enroll the client certificate
// before it deploys a Wi-Fi profile that uses it: [Bundle.SyncMLSteps] splits the
// same commands into the two messages that order needs.
func (b *Bundle) SyncML(opts ExportOptions) ([]byte, error) {
	msgs, err := b.syncMessages(opts, false)
	if err != nil {
		return nil, err
	}
	return msgs[0], nil
}

// SyncMLSteps returns the commands of [Bundle.SyncML] as two SyncML messages, in the
// order Microsoft's Wi-Fi CSP asks for: enroll installs the root and intermediates and
// enrolls the SCEP certificate; network adds the Wi-Fi profile, and is nil when the
// bundle has no WiFi. The MDM sends network only once the enrollment has finished:
// when a Get of <scope>/Vendor/MSFT/ClientCertificateInstall/SCEP/{UniqueID}/Status
// reports it finished successfully (1, in the ClientCertificateInstall CSP), or the certificate
// is otherwise known to be installed. Each message numbers its commands from 1.
func (b *Bundle) SyncMLSteps(opts ExportOptions) (enroll, network []byte, err error) {
	msgs, err := b.syncMessages(opts, true)
	if err != nil {
		return nil, nil, err
	}
	enroll = msgs[0]
	if len(msgs) > 1 {
		network = msgs[1]
	}
	return enroll, network, nil
}

// syncMessages builds the SyncML of the bundle: one message, or with split the
// enrollment and the Wi-Fi profile in two (one when the bundle has no Wi-Fi).
func (b *Bundle) syncMessages(opts ExportOptions, split bool) ([][]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if b.VPN != nil {
		return nil, exportErr("the Windows export has no VPN (VPNv2 CSP): leave Bundle.VPN nil")
	}
	sb := &syncBuilder{}
	var cmds []syncCmd
	verb := "Add"
	if opts.Replace {
		verb = "Replace"
	}
	add := func(uri, format, data string) { cmds = append(cmds, sb.cmd(verb, uri, format, &data)) }
	const trust = "./Device/Vendor/MSFT/RootCATrustedCertificates/"
	root := b.SCEP.Profile.RootCA
	add(trust+"Root/"+thumbprint(root, false)+"/EncodedCertificate", "b64", base64.StdEncoding.EncodeToString(root.Raw))
	for _, c := range b.Intermediates {
		add(trust+"CA/"+thumbprint(c, false)+"/EncodedCertificate", "b64", base64.StdEncoding.EncodeToString(c.Raw))
	}
	atomic, err := sb.scepCommands(b.SCEP, opts)
	if err != nil {
		return nil, err
	}
	cmds = append(cmds, atomic)
	var msgs [][]byte
	if b.WiFi != nil {
		wlan, err := b.WLANProfile()
		if err != nil {
			return nil, err
		}
		if split {
			doc, err := sb.document(cmds...)
			if err != nil {
				return nil, err
			}
			msgs, sb, cmds = append(msgs, doc), &syncBuilder{}, nil
		}
		add(scopeOf(b.SCEP.Profile)+"/Vendor/MSFT/WiFi/Profile/"+escapeSegment(b.WiFi.SSID)+"/WlanXml", "chr", string(wlan))
	}
	doc, err := sb.document(cmds...)
	if err != nil {
		return nil, err
	}
	return append(msgs, doc), nil
}

// escapeSegment percent-escapes every byte of s that is not unreserved in a URI
// (RFC 3986 section 2.3), so s stays one segment of a LocURI whatever it holds
// (Validate refuses the dot-segments "." and "..", which no escape keeps).
func escapeSegment(s string) string {
	var sb strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// JSONBundle is the JSON export of a [Bundle], for MDMs that render their own formats.
// References between parts are by the same UUIDs the Apple export uses. Field names
// are stable as in [JSONProfile]; Version is 1.
//
// SHA-1 thumbprints are hexadecimal in two cases within one document, each as its
// field has always been written: Root.SHA1 and Intermediates[].SHA1 upper-case, as
// the Windows RootCATrustedCertificates CSP nodes are named, and
// SCEP.Profile.CAThumbprint lower-case, as NDES profiles carry it. Compare them
// without regard to case.
type JSONBundle struct {
	Version       int               `json:"version"`
	Identifier    string            `json:"identifier"`
	UUID          string            `json:"uuid"`
	DeviceID      string            `json:"deviceId"`
	Root          JSONCertificate   `json:"root"`
	Intermediates []JSONCertificate `json:"intermediates"`
	SCEP          JSONSCEP          `json:"scep"`
	WiFi          *JSONWiFi         `json:"wifi,omitempty"`
	VPN           *JSONVPN          `json:"vpn,omitempty"`
}

// JSONCertificate is a CA certificate of the bundle.
type JSONCertificate struct {
	UUID        string `json:"uuid"`
	SHA1        string `json:"sha1"`        // upper-case hex (JSONProfile.CAThumbprint is lower-case)
	Certificate string `json:"certificate"` // base64 DER
}

// JSONSCEP is the bundle's SCEP enrollment: the [JSONProfile] and its payload UUID.
type JSONSCEP struct {
	UUID    string       `json:"uuid"`
	Profile *JSONProfile `json:"profile"`
}

// JSONWiFi is the bundle's Wi-Fi network.
type JSONWiFi struct {
	UUID               string   `json:"uuid"`
	SSID               string   `json:"ssid"`
	Hidden             bool     `json:"hidden"`
	Security           string   `json:"security"` // "WPA2-Enterprise"
	EAPTypes           []int    `json:"eapTypes"` // [13]
	TrustedServerNames []string `json:"trustedServerNames"`
	// AnchorUUIDs name the root the RADIUS server's certificate must chain to.
	AnchorUUIDs []string `json:"anchorUuids"`
	// CertificateUUID names the SCEP enrollment whose certificate authenticates.
	CertificateUUID string `json:"certificateUuid"`
}

// JSONVPN is the bundle's VPN.
type JSONVPN struct {
	UUID                              string `json:"uuid"`
	Name                              string `json:"name"`
	Type                              string `json:"type"`                 // "IKEv2"
	AuthenticationMethod              string `json:"authenticationMethod"` // "Certificate"
	RemoteAddress                     string `json:"remoteAddress"`
	RemoteIdentifier                  string `json:"remoteIdentifier"`
	LocalIdentifier                   string `json:"localIdentifier"`
	ServerCertificateIssuerCommonName string `json:"serverCertificateIssuerCommonName,omitempty"`
	CertificateUUID                   string `json:"certificateUuid"`
}

// JSON returns the bundle as a [JSONBundle], indented, with a trailing newline.
func (b *Bundle) JSON(opts ExportOptions) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if err := checkPayloadUUIDs(opts); err != nil {
		return nil, err
	}
	id := b.ids(opts)
	cert := func(uuid string, c *x509.Certificate) JSONCertificate {
		return JSONCertificate{UUID: uuid, SHA1: thumbprint(c, false), Certificate: base64.StdEncoding.EncodeToString(c.Raw)}
	}
	j := &JSONBundle{
		Version: 1, Identifier: id.ident, UUID: id.profile, DeviceID: b.DeviceID,
		Root:          cert(id.root, b.SCEP.Profile.RootCA),
		Intermediates: []JSONCertificate{},
		SCEP:          JSONSCEP{UUID: id.scep, Profile: b.SCEP.JSON(opts)},
	}
	for i, c := range b.Intermediates {
		j.Intermediates = append(j.Intermediates, cert(id.intermediates[i], c))
	}
	if w := b.WiFi; w != nil {
		j.WiFi = &JSONWiFi{UUID: id.wifi, SSID: w.SSID, Hidden: w.Hidden, Security: "WPA2-Enterprise",
			EAPTypes: []int{EAPTLS}, TrustedServerNames: append([]string{}, w.TrustedServerNames...),
			AnchorUUIDs: []string{id.root}, CertificateUUID: id.scep}
	}
	if b.VPN != nil {
		v := b.vpnDefaults()
		j.VPN = &JSONVPN{UUID: id.vpn, Name: v.Name, Type: "IKEv2", AuthenticationMethod: "Certificate",
			RemoteAddress: v.RemoteAddress, RemoteIdentifier: v.RemoteIdentifier, LocalIdentifier: v.LocalIdentifier,
			ServerCertificateIssuerCommonName: v.ServerCertificateIssuerCommonName, CertificateUUID: id.scep}
	}
	out, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
