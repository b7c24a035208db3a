package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

func openSim(t *testing.T, opts TPMSimOptions) *tpmSession {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	p, err := NewTPMSim(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.OpenGuest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*tpmSession)
}

// TestTPMSimEvidence: the simulated vTPM's evidence verifies the way a
// verifier checks it, and the ephemeral key decrypts only in the TPM state
// that was quoted.
func TestTPMSimEvidence(t *testing.T) {
	s := openSim(t, TPMSimOptions{})
	ev := s.Evidence()
	if !ev.Fake {
		t.Fatal("tpm-sim evidence not marked fake")
	}
	hcl, err := ParseHCLReport(ev.HCLReport)
	if err != nil {
		t.Fatal(err)
	}
	if err := hcl.CheckBinding(); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyReport(hcl.HWReport, ev.VCEKChain, VerifyOptions{AcceptFake: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyReport(hcl.HWReport, ev.VCEKChain, VerifyOptions{}); err == nil {
		t.Fatal("fake HCL report verified against AMD's real roots")
	}
	claims, err := ParseRuntimeClaims(hcl.RuntimeData)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := claims.RSAKey(HCLAKPubKID)
	if err != nil {
		t.Fatal(err)
	}
	if vm, err := claims.VM(); err != nil || !vm.SecureBoot {
		t.Fatalf("vm-configuration %+v, %v: want secure-boot", vm, err)
	}
	if err := VerifyTPMQuote(ak, ev.Quote, ev.QuoteSig, ev.PCRs, GuestPCRs, nil); err != nil {
		t.Fatal(err)
	}
	ck, err := VerifyCertifiedKey(ak, ev.EncKeyPub, ev.EncKeyCertifyInfo, ev.EncKeyCertifySig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ck.AuthPolicy, PCRPolicyDigest(ev.PCRs)) {
		t.Fatal("ephemeral key policy is not PolicyPCR over the quoted PCRs")
	}
	if !ck.Public.Equal(s.Public()) {
		t.Fatal("certified key is not the session's key")
	}

	secret := []byte("0123456789abcdef0123456789abcdef")
	//lint:ignore SA1019 RSAES is what AzureGuest uses for the token key
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, ck.Public, secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Decrypt(nil, ct, nil)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("RSAES decrypt in the TPM: %x, %v", got, err)
	}
	ct, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, ck.Public, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("OAEP-SHA256 decrypt in the TPM: %x, %v", got, err)
	}

	// Another boot state: the TPM refuses the key.
	if err := tpm2.PCRExtend(s.rw, tpmutil.Handle(7), tpm2.AlgSHA256, make([]byte, 32), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: crypto.SHA256}); err == nil || !strings.Contains(err.Error(), "PCRs changed") {
		t.Fatalf("decrypt after PCR 7 moved: %v, want a PCR refusal", err)
	}
}

// TestTPMSimTamper: verification refuses a quote over other PCRs, a
// tampered quote, PCR values that are not the quoted ones, and another AK.
func TestTPMSimTamper(t *testing.T) {
	s := openSim(t, TPMSimOptions{})
	ev := s.Evidence()
	claims, _ := ParseRuntimeClaims(ev.HCL.RuntimeData)
	ak, _ := claims.RSAKey(HCLAKPubKID)

	quote3, sig3, _, err := quoteSel(s.rw, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	pcrs3 := ev.PCRs[:3]
	if err := VerifyTPMQuote(ak, quote3, sig3, pcrs3, GuestPCRs, nil); err == nil || !strings.Contains(err.Error(), "covers") {
		t.Fatalf("quote over PCRs 0-2: %v", err)
	}
	bad := bytes.Clone(ev.Quote)
	bad[len(bad)-1] ^= 1
	if err := VerifyTPMQuote(ak, bad, ev.QuoteSig, ev.PCRs, GuestPCRs, nil); !errors.Is(err, ErrQuote) || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("tampered quote: %v", err)
	}
	pcrs := make([]PCRValue, len(ev.PCRs))
	copy(pcrs, ev.PCRs)
	pcrs[7].Digest = bytes.Repeat([]byte{7}, 32)
	if err := VerifyTPMQuote(ak, ev.Quote, ev.QuoteSig, pcrs, GuestPCRs, nil); err == nil || !strings.Contains(err.Error(), "PCR digest") {
		t.Fatalf("wrong PCR 7 value: %v", err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := VerifyTPMQuote(&other.PublicKey, ev.Quote, ev.QuoteSig, ev.PCRs, GuestPCRs, nil); err == nil {
		t.Fatal("quote verified with another AK")
	}
	if _, err := VerifyCertifiedKey(&other.PublicKey, ev.EncKeyPub, ev.EncKeyCertifyInfo, ev.EncKeyCertifySig); err == nil {
		t.Fatal("certification verified with another AK")
	}
	// The quote is not a certification and the other way round.
	if _, err := VerifyCertifiedKey(ak, ev.EncKeyPub, ev.Quote, ev.QuoteSig); err == nil || !strings.Contains(err.Error(), "not a TPM2_Certify") {
		t.Fatalf("quote as certification: %v", err)
	}
}

func quoteSel(rw interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}, idx []int) ([]byte, []byte, []PCRValue, error) {
	q, raw, err := tpm2.QuoteRaw(rw, AKHandle, "", "", nil, pcrSelection(idx), tpm2.AlgNull)
	if err != nil {
		return nil, nil, nil, err
	}
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(raw))
	if err != nil {
		return nil, nil, nil, err
	}
	return q, sig.RSA.Signature, nil, nil
}

// TestTPMSimNoHCLReport: a TPM without the HCL NV index is not an Azure
// confidential VM, said in one line.
func TestTPMSimNoHCLReport(t *testing.T) {
	s := openSim(t, TPMSimOptions{})
	if err := tpm2.NVUndefineSpace(s.rw, "", tpm2.HandleOwner, HCLReportNVIndex); err != nil {
		t.Fatal(err)
	}
	_, _, err := readHCLReport(s.rw)
	if !errors.Is(err, ErrNoHCLReport) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v, want ErrNoHCLReport on one line", err)
	}
}
