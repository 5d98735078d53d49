package scep

import (
	"fmt"
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
// URL/pkiclient.exe, every operation, GET and POST. path is a literal ServeMux path
// such as "/scep" or "/certsrv/mscep/mscep.dll": it begins with "/" and names no
// method, host or wildcard. Mount serves exactly those two paths: a path ending in
// "/" (a subtree pattern to [http.ServeMux], which would answer SCEP at every path
// below it) is registered as an exact match ("/scep/" serves "/scep/" and
// "/scep/pkiclient.exe", not "/scep/x"). Mount panics on a path that is not literal,
// and, like [http.ServeMux.Handle], when a pattern is already registered.
func Mount(mux *http.ServeMux, path string, h http.Handler) {
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "{} \t") {
		panic(fmt.Sprintf("scep: Mount: path %q: want a literal path such as \"/scep\", without method, host or wildcards", path))
	}
	exact := path
	if strings.HasSuffix(path, "/") {
		exact += "{$}" // only the path itself, not the subtree below it
	}
	mux.Handle(exact, h)
	mux.Handle(strings.TrimSuffix(path, "/")+PKIClientSuffix, h)
}
