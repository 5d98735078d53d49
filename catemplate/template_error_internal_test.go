package catemplate

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTemplateErrorWithoutErr: a resolver's verdict with only a Detail (the Resolver
// docs invite *TemplateError verdicts) prints instead of panicking.
func TestTemplateErrorWithoutErr(t *testing.T) {
	for _, tc := range []struct {
		e    *TemplateError
		want string
	}{
		{&TemplateError{Template: "x", Detail: "this OU has no template"}, `catemplate: template "x": this OU has no template`},
		{&TemplateError{}, "catemplate: refused"},
		{&TemplateError{Err: ErrKeyType, Detail: "ecdsa P-224"}, "catemplate: " + trimPrefix(ErrKeyType.Error()) + ": ecdsa P-224"},
	} {
		require.Equal(t, tc.want, tc.e.Error())
	}
}
