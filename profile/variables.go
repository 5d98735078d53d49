package profile

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// User is what a directory knows about the user a certificate is for.
// Empty fields are "unknown": a profile that uses them fails to render.
type User struct {
	// ID is the Entra object id ({{UserId}}).
	ID                string
	UserPrincipalName string
	Email             string
	// UserName is the user name without domain ({{UserName}}).
	UserName string
	// OnPremDistinguishedName is the synced on-premises DN; it contains commas, so a
	// format must use it as a whole attribute value (it never adds RDNs).
	OnPremDistinguishedName string
	OnPremSamAccountName    string
	// OnPremSecurityIdentifier is the on-premises SID ("S-1-5-21-..."); the variable
	// {{OnPremisesSecurityIdentifier}} renders it as the URI
	// "tag:microsoft.com,2022-09-14:sid:<SID>" and is allowed in URI SANs only.
	OnPremSecurityIdentifier string
}

// Device is what the MDM knows about the device a certificate is for.
type Device struct {
	// ID is the Intune device id ({{DeviceId}}).
	ID string
	// AADDeviceID is the Entra device id ({{AAD_Device_ID}}, {{AzureADDeviceId}}).
	AADDeviceID  string
	SerialNumber string
	Name         string
	FQDN         string
	IMEI         string
	MEID         string
	WiFiMAC      string
	EthernetMAC  string
	EASID        string
	// OnPremSecurityIdentifier is the SID of a hybrid-joined Windows device, synced
	// from on-premises Active Directory: in a device certificate,
	// {{OnPremisesSecurityIdentifier}} renders it (as User.OnPremSecurityIdentifier
	// in a user certificate).
	OnPremSecurityIdentifier string
}

// Values maps variable names (without braces) to values. It is how callers pass custom
// variables to [Render], and what [Variables] returns.
type Values map[string]string

// variable is one built-in variable.
type variable struct {
	name    string // canonical spelling
	user    bool   // user variable: not allowed in device certificates
	uriOnly bool
	get     func(u *User, d *Device) string
}

// inDevice holds the variables whose value in a device certificate is the device's
// own, where a user certificate has the user's.
var inDevice = map[string]func(d *Device) string{
	"OnPremisesSecurityIdentifier": func(d *Device) string { return sidURI(d.OnPremSecurityIdentifier) },
}

// sidURI is the URI {{OnPremisesSecurityIdentifier}} renders for sid ("" for none).
func sidURI(sid string) string {
	if sid == "" {
		return ""
	}
	return sidURIPrefix + sid
}

const sidURIPrefix = "tag:microsoft.com,2022-09-14:sid:"

// builtins lists every built-in variable; aliases share a getter. Lookup ignores ASCII
// case, because Intune's own documents spell some names in two cases
// ({{OnPremisesSamAccountName}} / {{onPremisesSamAccountName}}, {{SerialNumber}} /
// {{SERIALNUMBER}}).
var builtins = []variable{
	{"UserName", true, false, func(u *User, _ *Device) string { return u.UserName }},
	{"UserPrincipalName", true, false, func(u *User, _ *Device) string { return u.UserPrincipalName }},
	{"EmailAddress", true, false, func(u *User, _ *Device) string { return u.Email }},
	{"UserId", true, false, func(u *User, _ *Device) string { return u.ID }},
	{"OnPrem_Distinguished_Name", true, false, func(u *User, _ *Device) string { return u.OnPremDistinguishedName }},
	{"OnPremisesSamAccountName", true, false, func(u *User, _ *Device) string { return u.OnPremSamAccountName }},
	{"OnPremisesSecurityIdentifier", false, true, func(u *User, _ *Device) string {
		return sidURI(u.OnPremSecurityIdentifier)
	}},
	{"AAD_Device_ID", false, false, func(_ *User, d *Device) string { return d.AADDeviceID }},
	{"AzureADDeviceId", false, false, func(_ *User, d *Device) string { return d.AADDeviceID }},
	{"DeviceId", false, false, func(_ *User, d *Device) string { return d.ID }},
	{"Device_Serial", false, false, func(_ *User, d *Device) string { return d.SerialNumber }},
	{"SerialNumber", false, false, func(_ *User, d *Device) string { return d.SerialNumber }},
	{"DeviceName", false, false, func(_ *User, d *Device) string { return d.Name }},
	{"FullyQualifiedDomainName", false, false, func(_ *User, d *Device) string { return d.FQDN }},
	{"IMEI", false, false, func(_ *User, d *Device) string { return d.IMEI }},
	{"Device_IMEI", false, false, func(_ *User, d *Device) string { return d.IMEI }},
	{"IMEINumber", false, false, func(_ *User, d *Device) string { return d.IMEI }},
	{"MEID", false, false, func(_ *User, d *Device) string { return d.MEID }},
	{"WiFiMacAddress", false, false, func(_ *User, d *Device) string { return d.WiFiMAC }},
	{"EthernetMacAddress", false, false, func(_ *User, d *Device) string { return d.EthernetMAC }},
	{"EASID", false, false, func(_ *User, d *Device) string { return d.EASID }},
}

var builtinIndex = func() map[string]*variable {
	m := make(map[string]*variable, len(builtins))
	for i := range builtins {
		m[strings.ToLower(builtins[i].name)] = &builtins[i]
	}
	return m
}()

func lookupBuiltin(name string) *variable {
	// Lower-case ASCII names on the stack (the map lookup of string(b) does not
	// allocate); anything else goes through strings.ToLower.
	var buf [32]byte
	if len(name) > len(buf) {
		return builtinIndex[strings.ToLower(name)]
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= utf8.RuneSelf:
			return builtinIndex[strings.ToLower(name)]
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return builtinIndex[string(b)]
}

// BuiltinVariables returns the names of the built-in variables, sorted, in their
// canonical spelling. Lookup of a name ignores ASCII case.
func BuiltinVariables() []string {
	out := make([]string, 0, len(builtins))
	for _, v := range builtins {
		out = append(out, v.name)
	}
	sort.Strings(out)
	return out
}

// IsUserVariable reports whether name is a built-in user variable, which a device
// certificate may not use.
func IsUserVariable(name string) bool {
	v := lookupBuiltin(name)
	return v != nil && v.user
}

// Variables returns the built-in variables that have a value for u and d, keyed by
// canonical name. Variables that are empty are left out.
func Variables(u User, d Device) Values {
	out := make(Values, len(builtins))
	for _, v := range builtins {
		if s := v.get(&u, &d); s != "" {
			out[v.name] = s
		}
	}
	return out
}
