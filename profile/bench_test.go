package profile

import "testing"

func BenchmarkRender(b *testing.B) {
	p, u, d := testProfile(), testUser(), testDevice()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(p, u, d, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	testKeys(b)
	r := mustRender(b, testProfile())
	csr := csrFor(b, r, rsaKey, nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(csr, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBundleExport: what a bundle costs an MDM per request, next to the floor of
// the SCEP payload alone (MobileConfig, SyncML) measured in the same run.
func BenchmarkBundleExport(b *testing.B) {
	apple, windows := testBundle(b, IOS), testBundle(b, Windows)
	windows.VPN = nil // the Windows export carries none
	for _, bc := range []struct {
		name   string
		export func() ([]byte, error)
	}{
		{"floor-scep-mobileconfig", func() ([]byte, error) { return MobileConfig(apple.SCEP, bundleOpts) }},
		{"bundle-mobileconfig", func() ([]byte, error) { return apple.MobileConfig(bundleOpts) }},
		{"floor-scep-syncml", func() ([]byte, error) { return SyncML(windows.SCEP, bundleOpts) }},
		{"bundle-syncml", func() ([]byte, error) { return windows.SyncML(bundleOpts) }},
		{"bundle-json", func() ([]byte, error) { return windows.JSON(bundleOpts) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.export(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
