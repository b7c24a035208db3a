package skr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Issue 18 item 8: an endpoint written with :443 is the same vault.
func TestEndpointDefaultPort(t *testing.T) {
	for _, ep := range []string{"myvault.vault.azure.net:443", "https://MyVault.vault.azure.net:443/", "myvault.vault.azure.net"} {
		n, err := NormalizeEndpoint(ep)
		if err != nil || n != "https://myvault.vault.azure.net" {
			t.Errorf("NormalizeEndpoint(%q) = %q, %v", ep, n, err)
		}
	}
	if n, _ := NormalizeEndpoint("127.0.0.1:8443"); n != "https://127.0.0.1:8443" {
		t.Errorf("other port dropped: %q", n)
	}
	kid := "https://myvault.vault.azure.net/keys/fs-key/0123abcd"
	for _, host := range []string{"myvault.vault.azure.net:443", "myvault.vault.azure.net", "MYVAULT.vault.azure.net:443"} {
		if err := checkReleasedKID(kid, host, "fs-key", ""); err != nil {
			t.Errorf("vault %s: %v", host, err)
		}
	}
	if err := checkReleasedKID("https://myvault.vault.azure.net:443/keys/fs-key", "myvault.vault.azure.net", "fs-key", ""); err != nil {
		t.Errorf("kid with :443: %v", err)
	}
	if err := checkReleasedKID(kid, "myvault.vault.azure.net:8443", "fs-key", ""); err == nil {
		t.Error("another port accepted")
	}
}

type flakyCred struct {
	fails int
	calls int
}

func (c *flakyCred) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.calls++
	if c.calls <= c.fails {
		return azcore.AccessToken{}, errors.New("ManagedIdentityCredential: no response from the metadata service")
	}
	return azcore.AccessToken{Token: "tok", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// Issue 18 item 6: the vault token is retried with backoff, within a bound,
// then one clear error.
func TestBearerRetries(t *testing.T) {
	t.Setenv(TokenEnv, "")
	c := &flakyCred{fails: 2}
	o := Options{Credential: c, Backoff: time.Millisecond}
	tok, err := o.bearer(context.Background(), "v.vault.azure.net", "")
	if err != nil || tok != "tok" || c.calls != 3 {
		t.Fatalf("after two failures: %q %v (%d calls)", tok, err, c.calls)
	}
	c = &flakyCred{fails: 100}
	o = Options{Credential: c, Backoff: time.Millisecond, ClientID: "11111111-2222-3333-4444-555555555555"}
	_, err = o.bearer(context.Background(), "v.vault.azure.net", "")
	if err == nil || c.calls != TokenAttempts || !strings.Contains(err.Error(), "giving up after 3 attempts") ||
		!strings.Contains(err.Error(), "client_id 11111111") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("always failing: %v (%d calls)", err, c.calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c = &flakyCred{fails: 100}
	o = Options{Credential: c, Backoff: time.Hour}
	if _, err := o.bearer(ctx, "v.vault.azure.net", ""); err == nil || c.calls > 1 {
		t.Fatalf("cancelled: %v (%d calls)", err, c.calls)
	}
}

// Issue 18 item 5: identity.client_id picks the user-assigned identity.
func TestClientIDCredential(t *testing.T) {
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "")
	o := Options{ClientID: "11111111-2222-3333-4444-555555555555"}
	c, err := o.credential()
	if err != nil || !strings.Contains(strings.ToLower(typeName(c)), "managedidentity") {
		t.Fatalf("credential %T %v", c, err)
	}
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token")
	t.Setenv("AZURE_TENANT_ID", "tenant")
	c, err = o.credential()
	if err != nil || !strings.Contains(strings.ToLower(typeName(c)), "workloadidentity") {
		t.Fatalf("credential with workload identity %T %v", c, err)
	}
	b := &KeyBlob{Identity: &Identity{ClientID: " abc "}, Authority: Endpoint{APIVersion: "api-version=2020-10-01"}}
	if got := (Options{}).fromBlob(b); got.ClientID != "abc" || got.AttestAPIVersion != "2020-10-01" {
		t.Errorf("fromBlob: %+v", got)
	}
	if got := (Options{ClientID: "x"}).fromBlob(b); got.ClientID != "x" {
		t.Errorf("fromBlob overrode ClientID: %q", got.ClientID)
	}
}

// Issue 18 item 3: Microsoft's importkeyconfig.json, as it is and filled in.
func TestImportConfigExample(t *testing.T) {
	raw, err := os.ReadFile("testdata/sidecar-examples/importkeyconfig.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseImportConfig(raw); err == nil || !strings.Contains(err.Error(), "placeholder <key-vault-key-identifier>") {
		t.Fatalf("example as it is: %v", err)
	}
	s := string(raw)
	for k, v := range map[string]string{"<key-vault-key-identifier>": "fs-key", "<key-type-of-key-imported-to-akv>": "RSA-HSM",
		"<authority-of-key-imported-to-akv>": "sharedeus2.eus2.attest.azure.net", "<key-vault-akv-endpoint>": "v.vault.azure.net",
		"<aad-token-with-permissions-to-akv>": "tok", "<salt-for-key-derivation-valid-only-for-RSA-HSM-keys>": "00ff",
		"<label-for-derived-key-valid-only-for-RSA-HSM-keys>": "L"} {
		s = strings.ReplaceAll(s, k, v)
	}
	if _, err := ParseImportConfig([]byte(s)); err == nil || !strings.Contains(err.Error(), "x-ms-sevsnpvm-hostdata") {
		t.Fatalf("hostdata placeholder: %v", err)
	}
	s = strings.ReplaceAll(s, "<hash-digest-of-the-security-policy>", strings.Repeat("ab", 32))
	c, err := ParseImportConfig([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if c.Key.KID != "fs-key" || c.Key.KTY != "RSA-HSM" || c.Key.AKV.BearerToken != "tok" || c.Key.KeyDerivation.Salt != "00ff" {
		t.Errorf("parsed %+v", c.Key)
	}
	pol, err := c.Policy()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(pol)
	if err != nil || len(p.AnyOf) != 1 || p.AnyOf[0].Authority != "https://sharedeus2.eus2.attest.azure.net" || len(p.AnyOf[0].AllOf) != 4 ||
		p.AnyOf[0].AllOf[1].Claim != ClaimComplianceStatus || p.AnyOf[0].AllOf[1].Equals != CompliantUVM {
		t.Errorf("policy %s (%v)", pol, err)
	}
}

func typeName(v any) string { return strings.TrimPrefix(fmt.Sprintf("%T", v), "*") }

// Issue 17: with no token and no identity configured, the error is one
// short line saying how to give a token, not the SDK's list of attempts;
// the retries are not warnings.
func TestNoTokenOneLine(t *testing.T) {
	t.Setenv(TokenEnv, "")
	sdk := errors.New("DefaultAzureCredential: failed to acquire a token.\nAttempted credentials:\n\tEnvironmentCredential: missing environment variable AZURE_TENANT_ID\n\t" +
		strings.Repeat("ManagedIdentityCredential authentication failed. ", 10))
	c := &failingCred{err: sdk}
	old := newDefaultCredential
	newDefaultCredential = func() (azcore.TokenCredential, error) { return c, nil }
	t.Cleanup(func() { newDefaultCredential = old })
	var logged strings.Builder
	o := Options{Backoff: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	_, err := o.bearer(context.Background(), "myhsm.managedhsm.azure.net", "")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	t.Logf("%d chars: %s", len(msg), msg)
	for _, want := range []string{"no Key Vault token", "$CHESTFS_AKV_TOKEN", "--resource https://managedhsm.azure.net ", "managed or workload identity"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || len(msg) > 250 || strings.Contains(msg, "DefaultAzureCredential") {
		t.Errorf("not one short line: %q", msg)
	}
	if c.calls != TokenAttempts || logged.Len() != 0 {
		t.Errorf("%d attempts, warnings %q", c.calls, logged.String())
	}
}

type failingCred struct {
	err   error
	calls int
}

func (c *failingCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.calls++
	return azcore.AccessToken{}, c.err
}
