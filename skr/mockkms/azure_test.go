package mockkms_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

// jsonKind names a decoded JSON value's type.
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func decodePart(t *testing.T, s string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestClaimSetLikeAzure compares the mock's attestation token with Azure's
// published SevSnpVm token (testdata/maa_sevsnpvm_token.jwt, from the
// Attestation REST API examples): the same header fields, every claim of
// Azure's with the same JSON type, and nothing else but the insecure-fake
// marker. Claim values that describe the platform (a CVM there, a
// container here) are not compared.
func TestClaimSetLikeAzure(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	real, err := os.ReadFile("testdata/maa_sevsnpvm_token.jwt")
	if err != nil {
		t.Fatal(err)
	}
	rp := strings.Split(strings.TrimSpace(string(real)), ".")
	realHead, realClaims := decodePart(t, rp[0]), decodePart(t, rp[1])

	p := fakeProvider(t, "claims policy")
	rt, _ := skr.NewRuntimeData(&mustKey(t).PublicKey)
	ev, err := p.Evidence(testCtx(t), rt)
	if err != nil {
		t.Fatal(err)
	}
	tok, claims, err := skr.Attest(testCtx(t), s.Endpoint(), ev, clientOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	head := decodePart(t, strings.Split(tok, ".")[0])
	for k, v := range realHead {
		if jsonKind(head[k]) != jsonKind(v) {
			t.Errorf("header %s: %s, Azure's is %s", k, jsonKind(head[k]), jsonKind(v))
		}
	}
	for k, v := range realClaims {
		got, ok := claims[k]
		if !ok {
			t.Errorf("claim %s missing (Azure's: %v)", k, v)
			continue
		}
		if jsonKind(got) != jsonKind(v) {
			t.Errorf("claim %s is a %s, Azure's is a %s", k, jsonKind(got), jsonKind(v))
		}
	}
	for k := range claims {
		if _, ok := realClaims[k]; !ok && k != "x-chestfs-insecure-fake-snp" {
			t.Errorf("claim %s is not in Azure's token", k)
		}
	}
	if claims["x-ms-compliance-status"] != "azure-compliant-uvm" || claims["nonce"] == nil {
		t.Errorf("compliance %v, nonce %v", claims["x-ms-compliance-status"], claims["nonce"])
	}
	// The skr client reads Azure's runtime keys as it reads the mock's.
	if _, byKID := skr.RuntimeKeys(realClaims); byKID["HCLTransferKey"] == nil || byKID["HCLTransferKey"].N.BitLen() != 2048 {
		t.Errorf("runtime keys of Azure's token: %v", byKID)
	}
}

// TestAttestAPIVersions: the client tries 2020-10-01, falls back to
// 2022-08-01 on a 400, and an authority that knows neither fails with
// Azure's message.
func TestAttestAPIVersions(t *testing.T) {
	p := fakeProvider(t, "versions")
	rt, _ := skr.NewRuntimeData(&mustKey(t).PublicKey)
	for _, c := range []struct {
		served []string
		first  string
		ok     bool
	}{
		{[]string{"2020-10-01"}, "", true},
		{[]string{"2022-08-01"}, "", true},
		{[]string{"2020-10-01"}, "2022-08-01", true},
		{[]string{"2099-01-01"}, "", false},
	} {
		s := startMock(t, mockkms.Options{AcceptFakeSNP: true, MAAAPIVersions: c.served})
		ev, _ := p.Evidence(testCtx(t), rt)
		opts := clientOpts(s)
		opts.AttestAPIVersion = c.first
		_, _, err := skr.Attest(testCtx(t), s.Endpoint(), ev, opts)
		if (err == nil) != c.ok {
			t.Errorf("served %v, first %q: %v", c.served, c.first, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "api-version")) {
			t.Errorf("unknown version: %v", err)
		}
	}
	if skr.MAAAPIVersion != "2020-10-01" || skr.MAAAPIVersionAlt != "2022-08-01" {
		t.Errorf("api-versions %s, %s", skr.MAAAPIVersion, skr.MAAAPIVersionAlt)
	}
}

// TestMockRefusesWhatAzureRefuses sends import requests straight to the
// mock (the skr client refuses these itself before sending).
func TestMockRefusesWhatAzureRefuses(t *testing.T) {
	s := startMock(t, mockkms.Options{})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(t, s)}}
	policy := base64.RawURLEncoding.EncodeToString([]byte(`{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"x","equals":"y"}]}]}`))
	k := func(n int) string { return base64.RawURLEncoding.EncodeToString(make([]byte, n)) }
	cases := map[string]string{
		"oct 20 bytes":   `{"key":{"kty":"oct-HSM","k":"` + k(20) + `"},"hsm":true,"attributes":{"exportable":true},"release_policy":{"data":"` + policy + `"}}`,
		"oct 64 bytes":   `{"key":{"kty":"oct-HSM","k":"` + k(64) + `"},"hsm":true,"attributes":{"exportable":true},"release_policy":{"data":"` + policy + `"}}`,
		"no policy":      `{"key":{"kty":"oct-HSM","k":"` + k(32) + `"},"hsm":true,"attributes":{"exportable":true}}`,
		"not exportable": `{"key":{"kty":"oct-HSM","k":"` + k(32) + `"},"hsm":true,"attributes":{},"release_policy":{"data":"` + policy + `"}}`,
		"software oct":   `{"key":{"kty":"oct","k":"` + k(32) + `"},"hsm":false,"attributes":{"exportable":true},"release_policy":{"data":"` + policy + `"}}`,
		"EC":             `{"key":{"kty":"EC-HSM","crv":"P-256"},"hsm":true,"attributes":{"exportable":true},"release_policy":{"data":"` + policy + `"}}`,
	}
	for name, body := range cases {
		req, _ := http.NewRequest(http.MethodPut, s.URL()+"/keys/k?api-version=7.4", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
	}
	ok := `{"key":{"kty":"oct-HSM","k":"` + k(16) + `"},"hsm":true,"attributes":{"exportable":true},"release_policy":{"data":"` + policy + `"}}`
	req, _ := http.NewRequest(http.MethodPut, s.URL()+"/keys/k?api-version=7.4", strings.NewReader(ok))
	req.Header.Set("Authorization", "Bearer t")
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("AES-128 key refused: %v %v", resp, err)
	}
}

// TestKataSecurityContextRelease: a confidential AKS (Kata) layout, the
// security context only in the Kata directory. With the UVM reference info
// there, the release succeeds under Microsoft's standard policy (which
// requires x-ms-compliance-status); without it, it is refused naming that claim.
func TestKataSecurityContextRelease(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	pol, _ := os.ReadFile("../../attest/testdata/uvm_security_policy.base64")
	ref, _ := os.ReadFile("../../attest/testdata/body.uvm_reference_info.bin")
	cert, _ := os.ReadFile("../../attest/testdata/uvm_host_amd_certificate.json")
	kata := func(withRef bool) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "security-policy-base64"), pol, 0o644)
		os.WriteFile(filepath.Join(dir, "host-amd-cert-base64"), []byte(base64.StdEncoding.EncodeToString(cert)), 0o644)
		if withRef {
			os.WriteFile(filepath.Join(dir, "reference-info-base64"), []byte(base64.StdEncoding.EncodeToString(ref)), 0o644)
		}
		return dir
	}
	noEnv := func(string) string { return "" }
	sc, err := attest.FindSecurityContext(noEnv, filepath.Join(t.TempDir(), "security-context-*"), kata(true))
	if err != nil || len(sc.ReferenceInfo) == 0 || sc.HostAMDCert == nil {
		t.Fatalf("Kata context: %+v %v", sc, err)
	}
	prov, err := attest.NewFake(attest.FakeOptions{Context: sc, NoReferenceInfo: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hd := prov.HostData()
	if want, _ := attest.HostData(mustRead(t, "../../attest/testdata/snp_report.bin")); hd != want {
		t.Fatalf("HOST_DATA %x, the real report's %x", hd, want)
	}
	policy, _ := skr.PolicyForHostData(s.Endpoint(), fmt.Sprintf("%x", hd))
	key := importOct(t, s, "kata-key", policy)
	got, err := skr.Release(testCtx(t), blob(t, s, "kata-key", "oct-HSM"), prov, clientOpts(s))
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("release with the Kata reference info: %v", err)
	}

	sc2, err := attest.FindSecurityContext(noEnv, filepath.Join(t.TempDir(), "security-context-*"), kata(false))
	if err != nil || len(sc2.ReferenceInfo) != 0 {
		t.Fatalf("Kata context without reference info: %+v %v", sc2, err)
	}
	bare, _ := attest.NewFake(attest.FakeOptions{Context: sc2, NoReferenceInfo: true, Logger: quiet})
	_, err = skr.Release(testCtx(t), blob(t, s, "kata-key", "oct-HSM"), bare, clientOpts(s))
	if !errors.Is(err, skr.ErrForbidden) || !strings.Contains(err.Error(), "x-ms-compliance-status") {
		t.Fatalf("release without reference info: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func tlsConfig(t *testing.T, s *mockkms.Server) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM()) {
		t.Fatal("mock CA")
	}
	return &tls.Config{RootCAs: pool}
}
