package mockkms_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

// TestDefaultPolicyNeedsUVMEndorsement: under the default policy, fake
// evidence without UVM reference info gets no compliance status from the
// mock (as from Azure Attestation) and the release is refused; the same
// guest with the endorsement gets the key.
func TestDefaultPolicyNeedsUVMEndorsement(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	const uvm = "package policy\n"
	key := importOct(t, s, "endorsed", policyFor(t, s, uvm))

	bare, err := attest.NewFake(attest.FakeOptions{Policy: []byte(uvm), Context: &attest.SecurityContext{}, NoReferenceInfo: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	_, err = skr.Release(testCtx(t), blob(t, s, "endorsed", "oct-HSM"), bare, clientOpts(s))
	if !errors.Is(err, skr.ErrForbidden) {
		t.Fatalf("release without UVM reference info: err %v, want ErrForbidden", err)
	}
	if !strings.Contains(err.Error(), skr.ClaimComplianceStatus) {
		t.Errorf("refusal does not name the missing claim: %v", err)
	}

	got, err := skr.Release(testCtx(t), blob(t, s, "endorsed", "oct-HSM"), fakeProvider(t, uvm), clientOpts(s))
	if err != nil {
		t.Fatalf("release with the (default) fake UVM reference info: %v", err)
	}
	if string(got) != string(key) {
		t.Fatal("released key differs")
	}
}

// TestComplianceClaimOnlyWithEndorsement looks at the token itself.
func TestComplianceClaimOnlyWithEndorsement(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	for _, withRef := range []bool{false, true} {
		p, err := attest.NewFake(attest.FakeOptions{Context: &attest.SecurityContext{}, NoReferenceInfo: !withRef, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := p.Evidence(testCtx(t), []byte(`{"keys":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		if withRef != (len(ev.ReferenceInfo) > 0) {
			t.Fatalf("NoReferenceInfo=%v but evidence has %d bytes of reference info", !withRef, len(ev.ReferenceInfo))
		}
		_, claims, err := skr.Attest(testCtx(t), s.Endpoint(), ev, clientOpts(s))
		if err != nil {
			t.Fatal(err)
		}
		status, has := claims[skr.ClaimComplianceStatus]
		if has != withRef || (withRef && status != skr.CompliantUVM) {
			t.Errorf("reference info %v: %s = %v (present %v)", withRef, skr.ClaimComplianceStatus, status, has)
		}
		if v, _ := claims[skr.ClaimVMPL].(json.Number); v.String() != "0" {
			t.Errorf("vmpl claim %v, want 0", claims[skr.ClaimVMPL])
		}
	}
}

// TestListenLoopbackOnly: the mock refuses every non-loopback listen
// address unless Insecure, and before it binds anything.
func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:0", "example.invalid:0"} {
		s, err := mockkms.New(mockkms.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(addr); !errors.Is(err, mockkms.ErrInsecure) {
			t.Errorf("Start(%q): err %v, want ErrInsecure", addr, err)
			s.Close()
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		s, err := mockkms.New(mockkms.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Start(addr)
		if errors.Is(err, mockkms.ErrInsecure) {
			t.Errorf("Start(%q) refused: %v", addr, err)
		}
		s.Close()
	}
	s, err := mockkms.New(mockkms.Options{Logger: quiet, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start("0.0.0.0:0"); err != nil {
		t.Fatalf("Start(0.0.0.0:0) with Insecure: %v", err)
	}
}
