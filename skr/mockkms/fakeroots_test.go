package mockkms

import (
	"bytes"
	"testing"
	"time"

	sevtest "github.com/google/go-sev-guest/testing"
)

// TestFakeRootsMatchGoSevGuest: the embedded ARK and ASK are those of
// go-sev-guest's test-only chain (same to-be-signed certificates, so the same
// names, validity and keys), and the ASK signs that chain's VCEK.
func TestFakeRootsMatchGoSevGuest(t *testing.T) {
	want, err := sevtest.DefaultTestOnlyCertChain("Milan-B1", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseFakeAMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Ark.RawTBSCertificate, want.Ark.RawTBSCertificate) || !bytes.Equal(got.Ask.RawTBSCertificate, want.Ask.RawTBSCertificate) {
		t.Fatal("embedded fake ARK/ASK differ from go-sev-guest's test chain")
	}
	if err := want.Vcek.CheckSignatureFrom(got.Ask); err != nil {
		t.Fatalf("go-sev-guest's test VCEK does not verify under the embedded ASK: %v", err)
	}
	if err := got.Ask.CheckSignatureFrom(got.Ark); err != nil {
		t.Fatalf("embedded ASK not signed by the embedded ARK: %v", err)
	}
}
