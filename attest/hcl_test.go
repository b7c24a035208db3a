package attest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"os"
	"testing"

	"github.com/google/go-sev-guest/abi"
)

func readCVMData(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/azure-cvm/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHCLReportRealSNP parses a real SEV-SNP HCL report: the binding of the
// runtime claims holds, the AK is found, and the SNP part cut out of it is
// a well-formed report.
func TestHCLReportRealSNP(t *testing.T) {
	raw := readCVMData(t, "hcl-report-snp.bin")
	r, err := ParseHCLReport(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReportType != HCLReportSNP || len(r.HWReport) != 1184 || len(r.RuntimeData) != 583 {
		t.Fatalf("type %d, hw %d bytes, claims %d bytes", r.ReportType, len(r.HWReport), len(r.RuntimeData))
	}
	if err := r.CheckBinding(); err != nil {
		t.Fatal(err)
	}
	c, err := ParseRuntimeClaims(r.RuntimeData)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := c.RSAKey(HCLAKPubKID)
	if err != nil || ak.N.BitLen() != 2048 || ak.E != 65537 {
		t.Fatalf("AK: %v", err)
	}
	vm, err := c.VM()
	if err != nil || !vm.SecureBoot || vm.VMUniqueID != "BAEFD3E1-184B-4C4C-AB88-0BDAD260505F" {
		t.Fatalf("vm-configuration %+v, %v", vm, err)
	}
	// The cut-out hardware report is a well-formed SEV-SNP report at VMPL 0
	// (the paravisor's), signed with ECDSA P-384.
	p, err := abi.ReportToProto(r.HWReport)
	if err != nil {
		t.Fatal(err)
	}
	if p.Vmpl != 0 || p.SignatureAlgo != abi.SignEcdsaP384Sha384 || !bytes.Equal(p.ReportData, r.ReportData()) {
		t.Fatalf("vmpl %d sigalgo %d", p.Vmpl, p.SignatureAlgo)
	}
	// One changed byte in the claims breaks the binding.
	bad := bytes.Clone(raw)
	bad[hclVarOffset+20] ^= 1
	br, err := ParseHCLReport(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.CheckBinding(); !errors.Is(err, ErrHCLReport) {
		t.Fatalf("tampered claims: %v", err)
	}
}

func TestHCLReportRealTDX(t *testing.T) {
	r, err := ParseHCLReport(readCVMData(t, "hcl-report-tdx.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if r.ReportType != HCLReportTDX || len(r.HWReport) != 1024 {
		t.Fatalf("type %d, hw %d bytes", r.ReportType, len(r.HWReport))
	}
	if err := r.CheckBinding(); err != nil {
		t.Fatal(err)
	}
	c, err := ParseRuntimeClaims(r.RuntimeData)
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{HCLAKPubKID, HCLEKPubKID} {
		if _, err := c.RSAKey(kid); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.UserData) != 128 {
		t.Fatalf("user-data %q", c.UserData)
	}
}

// TestRealVTPMQuote verifies a quote made by a real Azure vTPM with its AK,
// and refuses it with a changed PCR value or qualifying data.
func TestRealVTPMQuote(t *testing.T) {
	b := readCVMData(t, "quote.bin")
	next := func() []byte {
		n := binary.LittleEndian.Uint64(b)
		v := b[8 : 8+n]
		b = b[8+n:]
		return v
	}
	sig, msg := next(), next()
	count := binary.LittleEndian.Uint64(b)
	b = b[8:]
	var pcrs []PCRValue
	var all []int
	for i := 0; i < int(count); i++ {
		pcrs = append(pcrs, PCRValue{Index: i, Digest: b[32*i : 32*i+32]})
		all = append(all, i)
	}
	blk, _ := pem.Decode(readCVMData(t, "akpub.pem"))
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ak := k.(*rsa.PublicKey)
	if err := VerifyTPMQuote(ak, msg, sig, pcrs, all, []byte("challenge")); err != nil {
		t.Fatal(err)
	}
	if err := VerifyTPMQuote(ak, msg, sig, pcrs, all, []byte("other")); !errors.Is(err, ErrQuote) {
		t.Fatalf("other qualifying data: %v", err)
	}
	if err := VerifyTPMQuote(ak, msg, sig, pcrs, GuestPCRs, []byte("challenge")); !errors.Is(err, ErrQuote) {
		t.Fatalf("quote over 24 PCRs accepted as a quote over 0-7: %v", err)
	}
	pcrs[4].Digest = make([]byte, 32)
	if err := VerifyTPMQuote(ak, msg, sig, pcrs, all, []byte("challenge")); !errors.Is(err, ErrQuote) {
		t.Fatalf("changed PCR 4: %v", err)
	}
}

func TestHCLReportBad(t *testing.T) {
	good := readCVMData(t, "hcl-report-snp.bin")
	le := binary.LittleEndian
	cases := map[string]func([]byte) []byte{
		"empty":     func([]byte) []byte { return nil },
		"short":     func(b []byte) []byte { return b[:hclVarOffset-1] },
		"signature": func(b []byte) []byte { b[0] = 'X'; return b },
		"type":      func(b []byte) []byte { le.PutUint32(b[hclIGVMOffset+8:], 9); return b },
		"var size":  func(b []byte) []byte { le.PutUint32(b[hclIGVMOffset+16:], 1<<30); return b },
		"past end":  func(b []byte) []byte { le.PutUint32(b[hclIGVMOffset+16:], 4000); return b },
		"data size": func(b []byte) []byte { le.PutUint32(b[hclIGVMOffset:], 7); return b },
	}
	for name, mut := range cases {
		if _, err := ParseHCLReport(mut(bytes.Clone(good))); !errors.Is(err, ErrHCLReport) {
			t.Errorf("%s: %v, want ErrHCLReport", name, err)
		}
	}
}

// FuzzParseHCLReport: any input parses or fails with ErrHCLReport, never
// panics; what parses stays within the input.
func FuzzParseHCLReport(f *testing.F) {
	f.Add(readCVMData(f, "hcl-report-snp.bin"))
	f.Add(readCVMData(f, "hcl-report-tdx.bin"))
	f.Add([]byte("HCLA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseHCLReport(b)
		if err != nil {
			if !errors.Is(err, ErrHCLReport) {
				t.Fatalf("error not ErrHCLReport: %v", err)
			}
			return
		}
		if len(r.RuntimeData) > len(b) || len(r.ReportData()) != 64 {
			t.Fatal("slices out of bounds")
		}
		_ = r.CheckBinding()
		if c, err := ParseRuntimeClaims(r.RuntimeData); err == nil {
			_, _ = c.RSAKey(HCLAKPubKID)
			_, _ = c.VM()
		}
	})
}
