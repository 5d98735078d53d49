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
