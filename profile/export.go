package profile

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrExport is wrapped by errors from the export functions: a value that the target
// format cannot carry safely, or missing options.
var ErrExport = errors.New("profile: cannot export")

// ExportOptions are the per-device values an export adds to the rendered profile.
// Every zero value has a default, documented per field.
type ExportOptions struct {
	// Challenge is the one-time challenge password minted for this device. Empty
	// leaves it out (Apple) or is an error (Windows, where the node is required).
	Challenge string
	// ServerURL is the single URL an Apple device gets; empty means the first of
	// Profile.ServerURLs (in the device's order with SpreadURLs). Set, it is held to
	// the rules of Profile.ServerURLs (see [Profile.Validate]); the Apple exports
	// refuse anything else with [ErrExport].
	ServerURL string
	// SpreadURLs gives each device Profile.ServerURLs in an order of its own, so that
	// devices spread over the gateways rather than all starting at the first, as
	// Intune does (Windows and Android get the list shuffled, an Apple device one URL
	// picked from it). The order is derived from Challenge, which is per device and per
	// profile delivery: the same export options give the same bytes. Without a
	// Challenge, or when false, the list keeps the profile's order (a primary first,
	// fallbacks after).
	SpreadURLs bool
	// CAName is the Apple payload's Name (CA instance name); empty means Profile.Name.
	CAName string
	// PayloadIdentifier is the Apple profile's reverse-DNS identifier; empty means
	// "com.scepkit.profile.<Profile.ID>". The SCEP payload's is this plus ".scep".
	PayloadIdentifier string
	// PayloadUUID and SCEPPayloadUUID default to UUIDs derived from the identifier,
	// so the same profile always exports the same bytes. Set, each must be a UUID in
	// the textual form of RFC 4122 section 3 (8-4-4-4-12 hexadecimal digits, as
	// Apple's uuidgen writes a PayloadUUID), and the two must differ; the Apple and
	// bundle JSON exports refuse anything else with [ErrExport].
	PayloadUUID     string
	SCEPPayloadUUID string
	// Organization is the Apple PayloadOrganization; empty leaves it out.
	Organization string
	// UniqueID names the Windows SCEP node (SCEP/{UniqueID}); empty means Profile.ID.
	// Letters, digits, '-', '_' and '.' only.
	UniqueID string
	// Replace emits SyncML Replace commands instead of Add (to update an installed
	// node).
	Replace bool
}

// serverURLs returns p.ServerURLs in the order the device of opts gets them: a
// shuffle seeded by opts.Challenge with SpreadURLs, else the profile's order. It
// returns a copy.
func serverURLs(p *Profile, opts ExportOptions) []string {
	urls := slices.Clone(p.ServerURLs)
	if urls == nil {
		urls = []string{}
	}
	if !opts.SpreadURLs || opts.Challenge == "" || len(urls) < 2 {
		return urls
	}
	// Not a secret: the order only needs to differ from device to device.
	seed := sha256.Sum256([]byte("scepkit server URL order\x00" + opts.Challenge))
	mrand.New(mrand.NewChaCha8(seed)).Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	return urls
}

func exportErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrExport, fmt.Sprintf(format, a...))
}

// JSONProfile is the JSON export of a rendered profile. Field names are stable: new
// fields may be added, existing ones are never renamed or retyped. Version is 1.
type JSONProfile struct {
	Version                 int             `json:"version"`
	ProfileID               string          `json:"profileId"`
	ProfileName             string          `json:"profileName"`
	CertificateType         string          `json:"certificateType"` // "user" or "device"
	Platform                string          `json:"platform"`        // "windows", "ios", "macos", "android"
	Subject                 string          `json:"subject"`         // DN string, values quoted where needed
	SubjectAttributes       []JSONAttribute `json:"subjectAttributes"`
	SubjectAltNames         JSONAltNames    `json:"subjectAltNames"`
	KeyType                 string          `json:"keyType"` // "rsa", "ecdsa-p256", "ecdsa-p384"
	KeySize                 int             `json:"keySize"`
	KeyUsage                []string        `json:"keyUsage"`           // "digitalSignature", "keyEncipherment"
	KeyStorageProvider      string          `json:"keyStorageProvider"` // KeyStorageProvider.String()
	Hash                    string          `json:"hash"`               // "sha2" or "sha1"
	ExtendedKeyUsages       []JSONEKU       `json:"extendedKeyUsages"`
	Validity                JSONValidity    `json:"validity"`
	RenewalThresholdPercent int             `json:"renewalThresholdPercent"`
	ServerURLs              []string        `json:"serverUrls"`
	CAThumbprint            string          `json:"caThumbprint"` // SHA-1, lower-case hex, as NDES profiles carry it (JSONCertificate.SHA1 is upper-case)
	// CAFingerprintSHA256 is the SHA-256 of the root CA certificate, lower-case hex,
	// for clients that pin by SHA-256 (scep.Client.CAFingerprint); empty when the
	// profile knows only a SHA-1 CAFingerprint.
	CAFingerprintSHA256 string `json:"caFingerprintSha256,omitempty"`
	Challenge           string `json:"challenge,omitempty"`
	RetryCount          int    `json:"retryCount"`
	RetryDelaySeconds   int    `json:"retryDelaySeconds"`
}

// caSHA256 is the SHA-256 of p's root CA certificate in hex, or "" without one.
func caSHA256(p *Profile) string {
	if p.RootCA == nil {
		return ""
	}
	sum := sha256.Sum256(p.RootCA.Raw)
	return hex.EncodeToString(sum[:])
}

// JSONAttribute is one subject attribute: RDN index, OID, keyword (if known), value.
type JSONAttribute struct {
	RDN   int    `json:"rdn"`
	OID   string `json:"oid"`
	Name  string `json:"name,omitempty"`
	Value string `json:"value"`
}

// JSONAltNames lists the SANs by kind; empty kinds are omitted.
type JSONAltNames struct {
	DNS   []string `json:"dns,omitempty"`
	Email []string `json:"email,omitempty"`
	UPN   []string `json:"upn,omitempty"`
	URI   []string `json:"uri,omitempty"`
}

// JSONEKU is an extended key usage.
type JSONEKU struct {
	Name string `json:"name,omitempty"`
	OID  string `json:"oid"`
}

// JSONValidity is the profile's validity period.
type JSONValidity struct {
	Value int    `json:"value"`
	Unit  string `json:"unit"` // "days", "months", "years"
}

// JSON returns the rendered profile as a [JSONProfile].
func (r *Rendered) JSON(opts ExportOptions) *JSONProfile {
	p := r.Profile
	j := &JSONProfile{
		Version:                 1,
		ProfileID:               p.ID,
		ProfileName:             p.Name,
		CertificateType:         p.CertificateType.String(),
		Platform:                p.Platform.String(),
		Subject:                 r.SubjectString(),
		SubjectAttributes:       []JSONAttribute{},
		KeyType:                 r.KeyType.String(),
		KeySize:                 r.KeySize,
		KeyUsage:                kuNames(r.KeyUsage),
		KeyStorageProvider:      p.KeyStorageProvider.String(),
		Hash:                    r.Hash.String(),
		Validity:                JSONValidity{Value: r.Validity.Value, Unit: r.Validity.Unit.String()},
		RenewalThresholdPercent: p.RenewalThresholdPercent,
		ServerURLs:              serverURLs(p, opts),
		CAThumbprint:            hex.EncodeToString(p.CAThumbprint()),
		CAFingerprintSHA256:     caSHA256(p),
		Challenge:               opts.Challenge,
		RetryCount:              retryCount(p),
		RetryDelaySeconds:       int(retryDelay(p) / time.Second),
	}
	for _, a := range r.Attributes {
		ja := JSONAttribute{RDN: a.RDN, OID: a.Type.String(), Value: a.Value}
		if t := attrByOID(a.Type); t != nil {
			ja.Name = t.keyword
		}
		j.SubjectAttributes = append(j.SubjectAttributes, ja)
	}
	j.SubjectAltNames.DNS = r.DNSNames
	j.SubjectAltNames.Email = r.EmailAddresses
	j.SubjectAltNames.UPN = r.UPNs
	for _, u := range r.URIs {
		j.SubjectAltNames.URI = append(j.SubjectAltNames.URI, u.String())
	}
	for _, e := range p.ExtendedKeyUsages {
		j.ExtendedKeyUsages = append(j.ExtendedKeyUsages, JSONEKU{Name: e.Name, OID: e.OID.String()})
	}
	return j
}

// ExportJSON returns the [JSONProfile] of r, indented, with a trailing newline.
func ExportJSON(r *Rendered, opts ExportOptions) ([]byte, error) {
	if r == nil || r.Profile == nil {
		return nil, exportErr("no rendered profile")
	}
	b, err := json.MarshalIndent(r.JSON(opts), "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func kuNames(ku x509.KeyUsage) []string {
	out := []string{}
	if ku&x509.KeyUsageDigitalSignature != 0 {
		out = append(out, "digitalSignature")
	}
	if ku&x509.KeyUsageKeyEncipherment != 0 {
		out = append(out, "keyEncipherment")
	}
	return out
}

func retryCount(p *Profile) int {
	if p.RetryCount == 0 {
		return 3
	}
	return p.RetryCount
}

// retryDelay is the profile's delay or the platform default: 5 min on Windows (the
// CSP default), 10 s elsewhere (the Apple default).
func retryDelay(p *Profile) time.Duration {
	switch {
	case p.RetryDelay != 0:
		return p.RetryDelay
	case p.Platform == Windows:
		return 5 * time.Minute
	}
	return 10 * time.Second
}

// xmlSafe reports whether s can be written as XML 1.0 character data.
func xmlSafe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return false
		}
	}
	return true
}

// nameUUID derives a stable RFC 4122 version-5-style UUID from a name.
func nameUUID(name string) string {
	h := sha1.Sum([]byte("scepkit:" + name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return strings.ToUpper(x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32])
}

// plist is a tiny writer of Apple XML property lists.
type plist struct {
	b     bytes.Buffer
	depth int
	err   error
}

func (w *plist) indent() {
	for i := 0; i < w.depth; i++ {
		w.b.WriteByte('\t')
	}
}

func (w *plist) line(s string) {
	w.indent()
	w.b.WriteString(s)
	w.b.WriteByte('\n')
}

func (w *plist) text(tag, s string) {
	if !xmlSafe(s) {
		w.err = exportErr("value %q cannot be written to a plist", s)
		return
	}
	w.indent()
	w.b.WriteString("<" + tag + ">")
	xml.EscapeText(&w.b, []byte(s))
	w.b.WriteString("</" + tag + ">\n")
}

func (w *plist) key(k string)    { w.text("key", k) }
func (w *plist) str(k, v string) { w.key(k); w.text("string", v) }
func (w *plist) integer(k string, v int) {
	w.key(k)
	w.line("<integer>" + strconv.Itoa(v) + "</integer>")
}
func (w *plist) data(k string, v []byte) {
	w.key(k)
	w.line("<data>" + base64.StdEncoding.EncodeToString(v) + "</data>")
}
func (w *plist) open(tag string)          { w.line("<" + tag + ">"); w.depth++ }
func (w *plist) close(tag string)         { w.depth--; w.line("</" + tag + ">") }
func (w *plist) boolean(k string, v bool) { w.key(k); w.line("<" + strconv.FormatBool(v) + "/>") }
func (w *plist) strOrArray(k string, v []string) {
	if len(v) == 0 {
		return
	}
	if len(v) == 1 {
		w.str(k, v[0])
		return
	}
	w.key(k)
	w.open("array")
	for _, s := range v {
		w.text("string", s)
	}
	w.close("array")
}

// MobileConfig returns an unsigned Apple configuration profile (.mobileconfig, XML
// plist) with one com.apple.security.scep payload for r. Keys and types follow Apple's
// schema: URL, Name, Subject (array of RDNs, each an array of [name, value] pairs;
// names C, L, ST, O, OU, CN or a dotted OID), Challenge, Keysize (integer), Key Type
// ("RSA"), Key Usage (bitmask: 1 signing, 4 encryption), Retries, RetryDelay (seconds),
// CAFingerprint (data, SHA-1), SubjectAltName (dictionary: rfc822Name, dNSName,
// uniformResourceIdentifier, ntPrincipalName; a string for one name, an array for more).
//
// Only iOS and macOS profiles export, and only RSA keys (the payload knows no other).
func MobileConfig(r *Rendered, opts ExportOptions) ([]byte, error) {
	a, err := appleSettings(r, opts)
	if err != nil {
		return nil, err
	}
	uuid := opts.PayloadUUID
	if uuid == "" {
		uuid = nameUUID(a.ident)
	}
	scepUUID := opts.SCEPPayloadUUID
	if scepUUID == "" {
		scepUUID = nameUUID(a.ident + ".scep")
	}
	w := &plist{}
	w.begin()
	w.scepPayload(r, a, scepUUID)
	return w.end(r.Profile, a.ident, uuid, opts.Organization)
}

// checkPayloadUUIDs refuses PayloadUUID and SCEPPayloadUUID overrides that are not
// UUIDs, or that name the same UUID (two payloads of one profile would share it).
func checkPayloadUUIDs(opts ExportOptions) error {
	for _, f := range []struct{ name, v string }{{"PayloadUUID", opts.PayloadUUID}, {"SCEPPayloadUUID", opts.SCEPPayloadUUID}} {
		if f.v != "" && !isUUID(f.v) {
			return exportErr("%s %.40q: not a UUID (8-4-4-4-12 hexadecimal digits)", f.name, f.v)
		}
	}
	if opts.PayloadUUID != "" && strings.EqualFold(opts.PayloadUUID, opts.SCEPPayloadUUID) {
		return exportErr("PayloadUUID and SCEPPayloadUUID are the same UUID")
	}
	return nil
}

// isUUID reports whether s is a UUID in the textual form of RFC 4122 section 3:
// hexadecimal digits (either case) grouped 8-4-4-4-12 by hyphens.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// appleSCEP is what the Apple SCEP payload needs beyond the rendered profile.
type appleSCEP struct {
	url, name, challenge string
	// ident is the configuration profile's PayloadIdentifier.
	ident string
}

// appleSettings checks that r can become an Apple SCEP payload and fills the
// defaults of opts.
func appleSettings(r *Rendered, opts ExportOptions) (appleSCEP, error) {
	if r == nil || r.Profile == nil {
		return appleSCEP{}, exportErr("no rendered profile")
	}
	p := r.Profile
	if !p.Platform.apple() {
		return appleSCEP{}, exportErr("platform %s has no Apple payload", p.Platform)
	}
	if r.KeyType != RSA {
		return appleSCEP{}, exportErr("the Apple SCEP payload supports RSA keys only")
	}
	if err := checkPayloadUUIDs(opts); err != nil {
		return appleSCEP{}, err
	}
	a := appleSCEP{url: opts.ServerURL, name: opts.CAName, challenge: opts.Challenge, ident: opts.PayloadIdentifier}
	if a.url != "" {
		if reason := serverURLProblem(a.url, p.Platform); reason != "" {
			return appleSCEP{}, exportErr("ServerURL %.100q: %s", a.url, reason)
		}
	} else {
		if len(p.ServerURLs) == 0 {
			return appleSCEP{}, exportErr("no SCEP server URL")
		}
		a.url = serverURLs(p, opts)[0]
	}
	if a.name == "" {
		a.name = p.Name
	}
	if a.ident == "" {
		a.ident = "com.scepkit.profile." + p.ID
	}
	return a, nil
}

// begin writes the plist header and opens the profile's PayloadContent array.
func (w *plist) begin() {
	w.b.WriteString(xml.Header)
	w.b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	w.b.WriteString(`<plist version="1.0">` + "\n")
	w.open("dict")
	w.key("PayloadContent")
	w.open("array")
}

// end closes the PayloadContent array and writes the profile's own keys.
func (w *plist) end(p *Profile, ident, uuid, org string) ([]byte, error) {
	w.close("array")
	w.str("PayloadDisplayName", p.Name)
	w.str("PayloadIdentifier", ident)
	if org != "" {
		w.str("PayloadOrganization", org)
	}
	w.boolean("PayloadRemovalDisallowed", false)
	if p.CertificateType == UserCertificate && p.Platform == MacOS {
		w.str("PayloadScope", "User")
	} else if p.Platform == MacOS {
		w.str("PayloadScope", "System")
	}
	w.str("PayloadType", "Configuration")
	w.str("PayloadUUID", uuid)
	w.integer("PayloadVersion", 1)
	w.close("dict")
	w.b.WriteString("</plist>\n")
	if w.err != nil {
		return nil, w.err
	}
	return w.b.Bytes(), nil
}

// payloadKeys writes the keys every payload carries, in the order of the others
// (sorted), and closes the payload's dictionary.
func (w *plist) payloadKeys(description, display, ident, typ, uuid string) {
	w.str("PayloadDescription", description)
	w.str("PayloadDisplayName", display)
	w.str("PayloadIdentifier", ident)
	w.str("PayloadType", typ)
	w.str("PayloadUUID", uuid)
	w.integer("PayloadVersion", 1)
	w.close("dict")
}

// scepPayload writes the com.apple.security.scep payload of r.
func (w *plist) scepPayload(r *Rendered, a appleSCEP, uuid string) {
	p := r.Profile
	appleKU := 0
	if r.KeyUsage&x509.KeyUsageDigitalSignature != 0 {
		appleKU |= 1
	}
	if r.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
		appleKU |= 4
	}
	w.open("dict")
	w.key("PayloadContent")
	w.open("dict")
	w.str("URL", a.url)
	w.str("Name", a.name)
	if len(r.Attributes) > 0 {
		w.key("Subject")
		w.open("array")
		for i := 0; i < len(r.Attributes); {
			j := i
			for j < len(r.Attributes) && r.Attributes[j].RDN == r.Attributes[i].RDN {
				j++
			}
			w.open("array")
			for _, at := range r.Attributes[i:j] {
				n := at.Type.String()
				if t := attrByOID(at.Type); t != nil && t.apple != "" {
					n = t.apple
				}
				w.open("array")
				w.text("string", n)
				w.text("string", at.Value)
				w.close("array")
			}
			w.close("array")
			i = j
		}
		w.close("array")
	}
	if a.challenge != "" {
		w.str("Challenge", a.challenge)
	}
	w.integer("Keysize", r.KeySize)
	w.str("Key Type", "RSA")
	w.integer("Key Usage", appleKU)
	w.integer("Retries", retryCount(p))
	w.integer("RetryDelay", int(retryDelay(p)/time.Second))
	w.data("CAFingerprint", p.CAThumbprint())
	if r.HasAltNames() {
		w.key("SubjectAltName")
		w.open("dict")
		w.strOrArray("dNSName", r.DNSNames)
		w.strOrArray("ntPrincipalName", r.UPNs)
		w.strOrArray("rfc822Name", r.EmailAddresses)
		var uris []string
		for _, u := range r.URIs {
			uris = append(uris, u.String())
		}
		w.strOrArray("uniformResourceIdentifier", uris)
		w.close("dict")
	}
	w.close("dict")
	w.payloadKeys("SCEP enrollment", p.Name, a.ident+".scep", "com.apple.security.scep", uuid)
}

// SyncML elements for the Windows export.
type syncML struct {
	XMLName  xml.Name `xml:"SyncML"`
	XMLNS    string   `xml:"xmlns,attr"`
	SyncBody struct {
		Commands []syncCmd `xml:",any"`
		Final    struct{}  `xml:"Final"`
	} `xml:"SyncBody"`
}

// syncCmd is one SyncML command: Add, Replace or Exec with an Item, or Atomic with
// commands inside.
type syncCmd struct {
	XMLName xml.Name
	CmdID   int       `xml:"CmdID"`
	Item    *syncItem `xml:"Item,omitempty"`
	Cmds    []syncCmd `xml:",any"`
}

// syncBuilder numbers commands and remembers the first value XML cannot carry.
type syncBuilder struct {
	cmdID    int
	badValue string
}

func (b *syncBuilder) cmd(verb, uri, format string, data *string) syncCmd {
	if data != nil && !xmlSafe(*data) && b.badValue == "" {
		b.badValue = *data
	}
	b.cmdID++
	c := syncCmd{XMLName: xml.Name{Local: verb}, CmdID: b.cmdID, Item: &syncItem{}}
	c.Item.Target.LocURI = uri
	if format != "" {
		c.Item.Meta = &syncMeta{}
		c.Item.Meta.Format.XMLNS = "syncml:metinf"
		c.Item.Meta.Format.Value = format
	}
	c.Item.Data = data
	return c
}

func (b *syncBuilder) atomic() syncCmd {
	b.cmdID++
	return syncCmd{XMLName: xml.Name{Local: "Atomic"}, CmdID: b.cmdID}
}

// document marshals cmds as the SyncBody of one SyncML message, without SyncHdr.
func (b *syncBuilder) document(cmds ...syncCmd) ([]byte, error) {
	if b.badValue != "" {
		return nil, exportErr("value %q cannot be written to XML", b.badValue)
	}
	var doc syncML
	doc.XMLNS = "SYNCML:SYNCML1.2"
	doc.SyncBody.Commands = cmds
	out, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

type syncItem struct {
	Target struct {
		LocURI string `xml:"LocURI"`
	} `xml:"Target"`
	Meta *syncMeta `xml:"Meta,omitempty"`
	Data *string   `xml:"Data,omitempty"`
}

type syncMeta struct {
	Format struct {
		XMLNS string `xml:"xmlns,attr"`
		Value string `xml:",chardata"`
	} `xml:"Format"`
}

// Windows SAN name types (certenroll AlternativeNameType: XCN_CERT_ALT_NAME_*).
const (
	winSANEmail = 2
	winSANDNS   = 3
	winSANURI   = 7
	winSANUPN   = 11
)

// SyncML returns the Windows ClientCertificateInstall CSP commands that install r: one
// Atomic holding Add (or Replace) commands for the SCEP/{UniqueID} node and its
// Install/ nodes, ending with Exec on Install/Enroll, in a SyncML element's SyncBody
// (no SyncHdr: the MDM's OMA-DM session adds it when it sends them). User certificates go under
// ./User/Vendor/MSFT, device certificates under ./Device/Vendor/MSFT.
//
// Node values: ServerURL (URLs joined by ";"), Challenge (base64 of opts.Challenge),
// EKUMapping (OIDs joined by "+"), KeyUsage (0x80 digitalSignature | 0x20
// keyEncipherment, decimal), SubjectName (DN, values quoted where needed),
// SubjectAlternativeNames ("<type>+<name>" joined by ";", types 2 email, 3 DNS, 7 URI,
// 11 UPN: the values of certenroll's AlternativeNameType, XCN_CERT_ALT_NAME_RFC822_NAME,
// _DNS_NAME, _URL and _USER_PRINCIPLE_NAME, which Microsoft's own CSP example uses as
// "11+tom@MyDomain.Contoso.com;3+MyDomain.Contoso.com"), KeyLength, HashAlgorithm ("SHA-2" or "SHA-1"), CAThumbprint (40 upper-case
// hex digits), ValidPeriod and ValidPeriodUnits, RetryCount, RetryDelay (minutes),
// KeyProtection (1 TPM, 2 TPM if present, 3 software, 4 Windows Hello; left out for the
// default provider), TemplateName (if set).
func SyncML(r *Rendered, opts ExportOptions) ([]byte, error) {
	b := &syncBuilder{}
	atomic, err := b.scepCommands(r, opts)
	if err != nil {
		return nil, err
	}
	return b.document(atomic)
}

// scepCommands returns the Atomic command that installs r through the
// ClientCertificateInstall CSP.
func (b *syncBuilder) scepCommands(r *Rendered, opts ExportOptions) (syncCmd, error) {
	if r == nil || r.Profile == nil {
		return syncCmd{}, exportErr("no rendered profile")
	}
	p := r.Profile
	if p.Platform != Windows {
		return syncCmd{}, exportErr("platform %s has no ClientCertificateInstall CSP", p.Platform)
	}
	if r.KeyType != RSA {
		return syncCmd{}, exportErr("the ClientCertificateInstall CSP supports RSA keys only")
	}
	if opts.Challenge == "" {
		return syncCmd{}, exportErr("the Windows Challenge node is required")
	}
	id := opts.UniqueID
	if id == "" {
		id = p.ID
	}
	if reason := idProblem(id); reason != "" {
		return syncCmd{}, exportErr("UniqueID %q: %s", id, reason)
	}
	base := scopeOf(p) + "/Vendor/MSFT/ClientCertificateInstall/SCEP/" + id

	atomic := b.atomic()
	verb := "Add"
	if opts.Replace {
		verb = "Replace"
	}
	add := func(verb, uri, format string, data *string) {
		atomic.Cmds = append(atomic.Cmds, b.cmd(verb, uri, format, data))
	}
	chr := func(node, v string) { add(verb, base+"/Install/"+node, "chr", &v) }
	num := func(node string, v int) { s := strconv.Itoa(v); add(verb, base+"/Install/"+node, "int", &s) }

	if !opts.Replace {
		add("Add", base, "node", nil)
	}
	chr("ServerURL", strings.Join(serverURLs(p, opts), ";"))
	chr("Challenge", base64.StdEncoding.EncodeToString([]byte(opts.Challenge)))
	var ekus []string
	for _, e := range p.ExtendedKeyUsages {
		ekus = append(ekus, e.OID.String())
	}
	chr("EKUMapping", strings.Join(ekus, "+"))
	winKU := 0
	if r.KeyUsage&x509.KeyUsageDigitalSignature != 0 {
		winKU |= 0x80
	}
	if r.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
		winKU |= 0x20
	}
	num("KeyUsage", winKU)
	chr("SubjectName", r.SubjectString())
	if r.HasAltNames() {
		var sans []string
		for _, v := range r.EmailAddresses {
			sans = append(sans, strconv.Itoa(winSANEmail)+"+"+v)
		}
		for _, v := range r.DNSNames {
			sans = append(sans, strconv.Itoa(winSANDNS)+"+"+v)
		}
		for _, v := range r.URIs {
			sans = append(sans, strconv.Itoa(winSANURI)+"+"+v.String())
		}
		for _, v := range r.UPNs {
			sans = append(sans, strconv.Itoa(winSANUPN)+"+"+v)
		}
		for _, s := range sans {
			if strings.Contains(s, ";") {
				return syncCmd{}, exportErr("SAN %q contains ;", s)
			}
		}
		chr("SubjectAlternativeNames", strings.Join(sans, ";"))
	}
	num("KeyLength", r.KeySize)
	hash := "SHA-2"
	if r.Hash == SHA1 {
		hash = "SHA-1"
	}
	chr("HashAlgorithm", hash)
	chr("CAThumbprint", strings.ToUpper(hex.EncodeToString(p.CAThumbprint())))
	units := map[ValidityUnit]string{Days: "Days", Months: "Months", Years: "Years"}
	chr("ValidPeriod", units[r.Validity.Unit])
	num("ValidPeriodUnits", r.Validity.Value)
	num("RetryCount", retryCount(p))
	num("RetryDelay", int(retryDelay(p)/time.Minute))
	switch p.KeyStorageProvider {
	case KSPTPMRequired:
		num("KeyProtection", 1)
	case KSPTPMIfPresent:
		num("KeyProtection", 2)
	case KSPSoftware:
		num("KeyProtection", 3)
	case KSPWindowsHello:
		num("KeyProtection", 4)
		// Without it the device fails the enrollment (ClientCertificateInstall CSP).
		chr("ContainerName", p.helloContainer())
	}
	if p.TemplateName != "" {
		chr("TemplateName", p.TemplateName)
	}
	add("Exec", base+"/Install/Enroll", "", nil)
	return atomic, nil
}

// scopeOf is where a profile's nodes live: ./User for user certificates, ./Device for
// device certificates.
func scopeOf(p *Profile) string {
	if p.CertificateType == DeviceCertificate {
		return "./Device"
	}
	return "./User"
}
