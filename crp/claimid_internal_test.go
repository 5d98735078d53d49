package crp

import "testing"

// TestCanonicalChallenge: a challenge spelt canonically is its own canonical
// spelling (so claims made under the digest of its text keep their ids), in each
// base64 alphabet and padding, and so is one that is not base64; a respelling of a
// padded base64 challenge is the canonical one; an unpadded one keeps its bits.
func TestCanonicalChallenge(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPw==", "TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPw=="},
		{"TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPw", "TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPw"},
		{"-_8A-_8A", "-_8A-_8A"},
		{"+/8A+/8A", "+/8A+/8A"},
		{"opaque:ok", "opaque:ok"},
		{"not base64!", "not base64!"},
		{"", ""},
		{"TURNAG9u\nZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPw==", "TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPw=="},
		{" TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPx==\r\n", "TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPw=="},
		{"TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPx", "TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPx"},
		{"TURNAG9u ZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPx", "TURNAG9uZSBjaGFsbGVuZ2UsIDM0IGJ5dGVzIGxvbmchPx"},
		{"123450", "123450"},
		{"123451", "123451"},
	} {
		if got := canonicalChallenge(c.in); got != c.want {
			t.Errorf("canonicalChallenge(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
