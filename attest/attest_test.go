package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func realHostCert(t testing.TB) *HostAMDCert {
	h, err := ParseHostAMDCert(readTestdata(t, "uvm_host_amd_certificate.json"))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestVerifyRealAzureReport(t *testing.T) {
	report := readTestdata(t, "snp_report.bin")
	h := realHostCert(t)
	tcb, err := ReportedTCB(report)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Matches(tcb) {
		t.Fatalf("tcbm %s does not match REPORTED_TCB %016x", h.TCBM, tcb)
	}
	v, err := VerifyReport(report, h.ChainPEM(), VerifyOptions{})
	if err != nil {
		t.Fatalf("real report rejected: %v", err)
	}
	if v.Fake {
		t.Fatal("real report marked fake")
	}
	pol, err := DecodeBase64(string(readTestdata(t, "uvm_security_policy.base64")))
	if err != nil {
		t.Fatal(err)
	}
	hd := sha256.Sum256(pol)
	if !bytes.Equal(v.Report.HostData, hd[:]) {
		t.Fatalf("HOST_DATA %x != sha256(policy) %x", v.Report.HostData, hd)
	}

	// One flipped bit in the signed part must fail.
	bad := bytes.Clone(report)
	bad[offReportData] ^= 1
	if _, err := VerifyReport(bad, h.ChainPEM(), VerifyOptions{AcceptFake: true}); err == nil {
		t.Fatal("tampered report accepted")
	}
	// The real report with the fake chain must fail.
	if _, err := VerifyReport(report, nil, VerifyOptions{}); err == nil {
		t.Fatal("report without chain accepted")
	}
	if _, err := VerifyReport(report[:100], h.ChainPEM(), VerifyOptions{}); err == nil {
		t.Fatal("truncated report accepted")
	}
}

func TestFakeEvidence(t *testing.T) {
	policy := []byte("package policy\n")
	f, err := NewFake(FakeOptions{Policy: policy, Context: &SecurityContext{ReferenceInfo: []byte("ref")}})
	if err != nil {
		t.Fatal(err)
	}
	runtime := []byte(`{"keys":[]}`)
	ev, err := f.Evidence(context.Background(), runtime)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Fake || !bytes.Equal(ev.ReferenceInfo, []byte("ref")) || !bytes.Equal(ev.RuntimeData, runtime) {
		t.Fatalf("evidence fields wrong: %+v", ev)
	}
	if _, err := VerifyReport(ev.Report, ev.CertChain, VerifyOptions{}); err == nil {
		t.Fatal("fake report accepted against the real AMD roots")
	}
	v, err := VerifyReport(ev.Report, ev.CertChain, VerifyOptions{AcceptFake: true})
	if err != nil {
		t.Fatalf("fake report rejected with AcceptFake: %v", err)
	}
	if !v.Fake {
		t.Fatal("fake report not marked fake")
	}
	rd := ReportData(runtime)
	if !bytes.Equal(v.Report.ReportData, rd[:]) {
		t.Fatal("REPORT_DATA is not sha256(runtime)||0")
	}
	hd := FakeHostData(policy)
	if !bytes.Equal(v.Report.HostData, hd[:]) {
		t.Fatal("HOST_DATA is not sha256(policy)")
	}
	if v.Report.Policy&(1<<19) != 0 {
		t.Fatal("fake report claims a debuggable guest")
	}
	// Tampering with HOST_DATA breaks the signature.
	bad := bytes.Clone(ev.Report)
	bad[offHostData] ^= 1
	if _, err := VerifyReport(bad, ev.CertChain, VerifyOptions{AcceptFake: true}); err == nil {
		t.Fatal("tampered fake report accepted")
	}
}

func writeContextDir(t *testing.T) string {
	dir := t.TempDir()
	pol := readTestdata(t, "uvm_security_policy.base64")
	ref := base64.StdEncoding.EncodeToString(readTestdata(t, "body.uvm_reference_info.bin"))
	cert := base64.StdEncoding.EncodeToString(readTestdata(t, "uvm_host_amd_certificate.json"))
	for name, v := range map[string]string{"security-policy-base64": string(pol), "reference-info-base64": ref, "host-amd-cert-base64": cert} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSecurityContext(t *testing.T) {
	dir := writeContextDir(t)
	env := map[string]string{"UVM_SECURITY_CONTEXT_DIR": dir}
	sc, err := loadSecurityContext(func(k string) string { return env[k] }, filepath.Join(t.TempDir(), "none-*"))
	if err != nil {
		t.Fatal(err)
	}
	if sc.HostAMDCert == nil || sc.HostAMDCert.TCBM != "7308000000000003" {
		t.Fatalf("host cert: %+v", sc.HostAMDCert)
	}
	if !bytes.Equal(sc.ReferenceInfo, readTestdata(t, "body.uvm_reference_info.bin")) {
		t.Fatal("reference info differs")
	}
	if !strings.HasPrefix(string(sc.SecurityPolicy), "package policy") {
		t.Fatal("policy not decoded")
	}
	// Glob fallback.
	parent := t.TempDir()
	if err := os.Rename(dir, filepath.Join(parent, "security-context-abc")); err != nil {
		t.Fatal(err)
	}
	sc2, err := loadSecurityContext(func(string) string { return "" }, filepath.Join(parent, "security-context-*"))
	if err != nil || sc2.HostAMDCert == nil {
		t.Fatalf("glob fallback: %v", err)
	}
	// Environment variables.
	env = map[string]string{"UVM_SECURITY_POLICY": base64.StdEncoding.EncodeToString([]byte("p"))}
	sc3, err := loadSecurityContext(func(k string) string { return env[k] }, filepath.Join(parent, "nothing-*"))
	if err != nil || string(sc3.SecurityPolicy) != "p" {
		t.Fatalf("env: %v %+v", err, sc3)
	}
	if _, err := loadSecurityContext(func(string) string { return "" }, filepath.Join(parent, "nothing-*")); !errors.Is(err, ErrNoSecurityContext) {
		t.Fatalf("empty: %v", err)
	}
	env = map[string]string{"UVM_HOST_AMD_CERTIFICATE": "!!!"}
	if _, err := loadSecurityContext(func(k string) string { return env[k] }, filepath.Join(parent, "nothing-*")); err == nil {
		t.Fatal("bad base64 accepted")
	}
}

// The SNP provider with a stubbed device: the real report's TCB matches the
// UVM bundle; a different TCB goes to THIM.
func TestSNPProviderChainSelection(t *testing.T) {
	report := readTestdata(t, "snp_report.bin")
	sc := &SecurityContext{HostAMDCert: realHostCert(t), ReferenceInfo: []byte("ref")}
	var gotRD [64]byte
	p := NewSNP(SNPOptions{Context: sc, Quote: func(rd [64]byte) ([]byte, error) {
		gotRD = rd
		return append(bytes.Clone(report), make([]byte, 100)...), nil
	}})
	ev, err := p.Evidence(context.Background(), []byte("rt"))
	if err != nil {
		t.Fatal(err)
	}
	if gotRD != ReportData([]byte("rt")) {
		t.Fatal("REPORT_DATA passed to the device is wrong")
	}
	if len(ev.Report) != len(report) || !bytes.Contains(ev.CertChain, []byte("BEGIN CERTIFICATE")) || string(ev.ReferenceInfo) != "ref" {
		t.Fatal("evidence incomplete")
	}

	other := bytes.Clone(report)
	binary.LittleEndian.PutUint64(other[offReportedTCB:], 0x1234)
	var sawHeader bool
	thim := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawHeader = r.Header.Get("Metadata") == "true"
		w.Write([]byte(`{"vcekCert":"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----","tcbm":"0000000000001234","certificateChain":"x"}`))
	}))
	defer thim.Close()
	p = NewSNP(SNPOptions{Context: sc, THIMURL: thim.URL, Quote: func([64]byte) ([]byte, error) { return other, nil }})
	ev, err = p.Evidence(context.Background(), []byte("rt"))
	if err != nil {
		t.Fatal(err)
	}
	if !sawHeader || !bytes.Contains(ev.CertChain, []byte("AA==")) {
		t.Fatal("THIM bundle not used")
	}
	binary.LittleEndian.PutUint64(other[offReportedTCB:], 0x9999)
	if _, err := p.Evidence(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "0000000000009999") {
		t.Fatalf("TCB mismatch not reported: %v", err)
	}
	p = NewSNP(SNPOptions{Context: sc, Quote: func([64]byte) ([]byte, error) { return report[:10], nil }})
	if _, err := p.Evidence(context.Background(), nil); err == nil {
		t.Fatal("short report accepted")
	}
}

func FuzzParseHostAMDCert(f *testing.F) {
	f.Add(readTestdata(f, "uvm_host_amd_certificate.json"))
	f.Add([]byte(`{"vcekCert":"a","certificateChain":"b","tcbm":"zz"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHostAMDCert(data)
		if err == nil {
			h.Matches(1)
			SplitPEMCerts(h.ChainPEM())
		}
	})
}

func FuzzVerifyReport(f *testing.F) {
	report := readTestdata(f, "snp_report.bin")
	h := realHostCert(f)
	f.Add(report, h.ChainPEM())
	f.Fuzz(func(t *testing.T, report, chain []byte) {
		VerifyReport(report, chain, VerifyOptions{})
	})
}

func TestSNPWithoutDevice(t *testing.T) {
	p := NewSNP(SNPOptions{Context: &SecurityContext{}})
	_, err := p.Evidence(context.Background(), []byte("x"))
	if err == nil {
		t.Skip("this machine has a SEV-SNP guest device")
	}
	if !strings.Contains(err.Error(), "SEV-SNP") {
		t.Fatalf("unclear error without a device: %v", err)
	}
}

func TestNewByName(t *testing.T) {
	if _, err := New("tpm"); err == nil {
		t.Fatal("unknown provider accepted")
	}
	p, err := New("sevsnp")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*SNP); !ok {
		t.Fatalf("sevsnp gave %T", p)
	}
}
