package attest

import (
	"bytes"
	"testing"
	"time"

	sevtest "github.com/google/go-sev-guest/testing"
)

// TestFakeChainMatchesGoSevGuest checks that the fake chain built without
// go-sev-guest's testing package is the one that package builds: the same
// to-be-signed certificates (names, validity, keys, extensions) for the same
// keys and creation time, so fake evidence and fake roots from chestfs builds
// before and after the move still verify against each other.
func TestFakeChainMatchesGoSevGuest(t *testing.T) {
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	want, err := sevtest.DefaultTestOnlyCertChain(FakeProductName, created)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fakeCertChain(FakeProductName, created)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"ARK", got.Ark.RawTBSCertificate, want.Ark.RawTBSCertificate},
		{"ASK", got.Ask.RawTBSCertificate, want.Ask.RawTBSCertificate},
		{"VCEK", got.Vcek.RawTBSCertificate, want.Vcek.RawTBSCertificate},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: to-be-signed certificate differs from go-sev-guest's test chain", c.name)
		}
	}
	if !got.Keys.Vcek.Equal(want.Keys.Vcek) || !got.Keys.Ark.Equal(want.Keys.Ark) || !got.Keys.Ask.Equal(want.Keys.Ask) {
		t.Error("fake keys differ from go-sev-guest's test keys")
	}
	if got.TCB != want.TCB {
		t.Errorf("TCB %x, want %x", got.TCB, want.TCB)
	}
	// Our signatures verify under their certificates (the salt differs).
	if err := got.Vcek.CheckSignatureFrom(want.Ask); err != nil {
		t.Errorf("our VCEK does not verify under go-sev-guest's ASK: %v", err)
	}
	if err := want.Vcek.CheckSignatureFrom(got.Ask); err != nil {
		t.Errorf("go-sev-guest's VCEK does not verify under our ASK: %v", err)
	}
}
