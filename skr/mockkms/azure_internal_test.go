package mockkms

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// RFC 5649 section 6: the two published test vectors.
func TestAESKWPVectors(t *testing.T) {
	kek, _ := hex.DecodeString("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, want string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		key, _ := hex.DecodeString(v.key)
		got, err := aesKWP(kek, key)
		if err != nil || hex.EncodeToString(got) != v.want {
			t.Errorf("wrap %s = %x, %v; want %s", v.key, got, err, v.want)
		}
	}
}

// azureTokenClaims are the claims of Azure's published SevSnpVm token
// (azure-rest-api-specs, Attestation 2025-06-01 example AttestSevSnpVm.json).
func azureTokenClaims(t testing.TB) (map[string]any, map[string]any) {
	t.Helper()
	b, err := os.ReadFile("testdata/maa_sevsnpvm_token.jwt")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(string(b)), ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	dec := func(s string) map[string]any {
		raw, err := unb64(s)
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
	return dec(parts[0]), dec(parts[1])
}

// TestPolicyOnAzureToken: the mock's policy evaluation and runtime-key
// choice work on a real token's claims, not only on its own.
func TestPolicyOnAzureToken(t *testing.T) {
	_, claims := azureTokenClaims(t)
	ok := `{"version":"1.0.0","anyOf":[{"authority":"https://tenanttests.us","allOf":[
		{"claim":"x-ms-attestation-type","equals":"sevsnpvm"},{"claim":"x-ms-compliance-status","equals":"azure-compliant-cvm"},
		{"claim":"x-ms-sevsnpvm-is-debuggable","equals":"false"},{"claim":"x-ms-sevsnpvm-vmpl","equals":"0"},
		{"claim":"x-ms-sevsnpvm-microcode-svn","equals":40},{"claim":"x-ms-runtime.vm-configuration.secure-boot","equals":true}]}]}`
	var p releasePolicy
	if err := json.Unmarshal([]byte(ok), &p); err != nil {
		t.Fatal(err)
	}
	if err := evalPolicy(&p, "https://tenanttests.us", claims); err != nil {
		t.Errorf("policy on Azure's token: %v", err)
	}
	uvm := strings.Replace(ok, "azure-compliant-cvm", "azure-compliant-uvm", 1)
	json.Unmarshal([]byte(uvm), &p)
	if err := evalPolicy(&p, "https://tenanttests.us", claims); err == nil || !strings.Contains(err.Error(), "x-ms-compliance-status") {
		t.Errorf("ACI policy on a CVM token: %v", err)
	}
	kid, pub := runtimeKey(claims)
	if kid != "HCLTransferKey" || pub == nil || pub.N.BitLen() != 2048 || pub.E != 65537 {
		t.Errorf("runtime key %q %v", kid, pub)
	}
}
