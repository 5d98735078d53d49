package scep

import (
	"net/http"
	"strings"
)

// PKIClientSuffix is what many clients append to the SCEP URL they are given before
// adding the query: Intune-managed devices of every platform ask NDES for
// /certsrv/mscep/mscep.dll/pkiclient.exe, Cisco IOS appends it to its enrollment URL's
// path, and sscep's default URL ends with it.
const PKIClientSuffix = "/pkiclient.exe"

// Mount registers h (a [Server], or one wrapped in middleware) on mux at path and at
// path + [PKIClientSuffix], so that a profile giving devices URL serves both URL and
// URL/pkiclient.exe, every operation, GET and POST. path is a ServeMux path such as
// "/scep" or "/certsrv/mscep/mscep.dll", without method or host. Like
// [http.ServeMux.Handle], Mount panics when a pattern is already registered.
func Mount(mux *http.ServeMux, path string, h http.Handler) {
	mux.Handle(path, h)
	mux.Handle(strings.TrimSuffix(path, "/")+PKIClientSuffix, h)
}
