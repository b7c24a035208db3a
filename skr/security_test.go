package skr_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

// claimsOf flattens the conditions of a policy's first branch.
func claimsOf(t *testing.T, data []byte) (string, map[string]any) {
	t.Helper()
	var p skr.Policy
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.AnyOf) != 1 {
		t.Fatalf("policy has %d anyOf branches, want 1: %s", len(p.AnyOf), data)
	}
	m := map[string]any{}
	for _, r := range p.AnyOf[0].AllOf {
		m[r.Claim] = r.Equals
	}
	return p.AnyOf[0].Authority, m
}

// TestDefaultPolicyClaims: HOST_DATA alone can be chosen by a hostile
// host; the default policy also needs the endorsed UVM, VMPL 0 and no debug.
func TestDefaultPolicyClaims(t *testing.T) {
	hd := strings.Repeat("AB", 32)
	p, err := skr.PolicyForHostData("myattest.weu.attest.azure.net", hd)
	if err != nil {
		t.Fatal(err)
	}
	auth, c := claimsOf(t, p)
	if auth != "https://myattest.weu.attest.azure.net" {
		t.Errorf("authority %q", auth)
	}
	want := map[string]any{
		"x-ms-attestation-type":       "sevsnpvm",
		"x-ms-sevsnpvm-hostdata":      strings.ToLower(hd),
		"x-ms-compliance-status":      "azure-compliant-uvm",
		"x-ms-sevsnpvm-vmpl":          "0",
		"x-ms-sevsnpvm-is-debuggable": "false",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	if len(c) != len(want) {
		t.Errorf("policy has claims %v, want exactly %v", c, want)
	}
}

// TestImportPolicyChoice: no policy and no HOST_DATA is refused for a real
// vault, accepted (fake HOST_DATA) for a loopback mock.
func TestImportPolicyChoice(t *testing.T) {
	for _, vault := range []string{"myvault.vault.azure.net", "https://myhsm.managedhsm.azure.net", "10.0.0.5:8443", "mock.example.com"} {
		if _, err := skr.ImportPolicy(vault, vault, nil, ""); !errors.Is(err, skr.ErrNoPolicy) {
			t.Errorf("%s: err %v, want ErrNoPolicy", vault, err)
		}
	}
	for _, vault := range []string{"127.0.0.1:8443", "https://localhost:1234", "[::1]:9"} {
		p, err := skr.ImportPolicy(vault, vault, nil, "")
		if err != nil {
			t.Fatalf("%s: %v", vault, err)
		}
		_, c := claimsOf(t, p)
		if c["x-ms-compliance-status"] != "azure-compliant-uvm" || c["x-ms-sevsnpvm-hostdata"] == nil {
			t.Errorf("%s: loopback default policy lacks the default claims: %s", vault, p)
		}
	}
	hd := strings.Repeat("0f", 32)
	p, err := skr.ImportPolicy("myvault.vault.azure.net", "a.attest.azure.net", nil, hd)
	if err != nil {
		t.Fatal(err)
	}
	if _, c := claimsOf(t, p); c["x-ms-sevsnpvm-hostdata"] != hd {
		t.Errorf("hostdata policy: %s", p)
	}
	own := []byte(`{"version":"1.0.0","anyOf":[{"authority":"https://a","allOf":[{"claim":"x","equals":"y"}]}]}`)
	if p, err := skr.ImportPolicy("myvault.vault.azure.net", "a", own, ""); err != nil || string(p) != string(own) {
		t.Errorf("explicit policy: %s, %v", p, err)
	}
	if _, err := skr.ImportPolicy("myvault.vault.azure.net", "a", own, hd); err == nil {
		t.Error("policy and hostdata together accepted")
	}
	if _, err := skr.ImportPolicy("myvault.vault.azure.net", "a", []byte(`{"version":"1.0.0"}`), ""); err == nil {
		t.Error("a policy without rules accepted")
	}
}

// countingClient counts requests and answers 200 {} without a network.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// TestTokenOnlyToKeyVaultHosts: the bearer token is not sent to a host that
// is not a Key Vault, Managed HSM or loopback; TokenHosts widens the list.
func TestTokenOnlyToKeyVaultHosts(t *testing.T) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	ctx := context.Background()
	for _, vault := range []string{"evil.example.com", "vault.azure.net.evil.com", "myvault.vault.azure.net.example", "10.1.2.3"} {
		tr := &countingTransport{}
		opts := skr.Options{HTTPClient: &http.Client{Transport: tr}, Token: "SECRET-BEARER", Attempts: 1}
		_, err := skr.ReleaseKey(ctx, vault, "k", "", "attestation-token", priv, opts)
		if !errors.Is(err, skr.ErrTokenHost) {
			t.Errorf("release to %s: err %v, want ErrTokenHost", vault, err)
		}
		_, err = skr.ImportKey(ctx, vault, "k", make([]byte, 32), []byte(`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a","equals":"b"}]}]}`), opts)
		if !errors.Is(err, skr.ErrTokenHost) {
			t.Errorf("import to %s: err %v, want ErrTokenHost", vault, err)
		}
		if tr.n.Load() != 0 {
			t.Errorf("%s: %d requests sent", vault, tr.n.Load())
		}
	}
	// Allowed hosts get the request (the answer is bogus; only sending matters).
	for _, c := range []struct {
		vault string
		extra []string
	}{
		{"myvault.vault.azure.net", nil}, {"MYHSM.managedhsm.azure.net", nil}, {"v.vault.azure.cn", nil},
		{"v.vault.usgovcloudapi.net", nil}, {"h.managedhsm.usgovcloudapi.net", nil}, {"127.0.0.1:8443", nil},
		{"kms.internal.example", []string{"kms.internal.example"}}, {"a.kms.example", []string{"*.kms.example"}},
	} {
		tr := &countingTransport{}
		opts := skr.Options{HTTPClient: &http.Client{Transport: tr}, Token: "t", Attempts: 1, TokenHosts: c.extra}
		_, err := skr.ReleaseKey(ctx, c.vault, "k", "", "attestation-token", priv, opts)
		if errors.Is(err, skr.ErrTokenHost) || tr.n.Load() != 1 {
			t.Errorf("%s: err %v, %d requests; want the request sent", c.vault, err, tr.n.Load())
		}
	}
}

// TestNoRedirects: a 307 from the vault is not followed, with the built-in
// client and with a caller's client; the bearer token never reaches the target.
func TestNoRedirects(t *testing.T) {
	var leaked atomic.Int64
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
	}))
	defer target.Close()
	redirector := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, client := range map[string]*http.Client{"caller's client": redirector.Client(), "built-in client": nil} {
		opts := skr.Options{HTTPClient: client, Token: "SECRET-BEARER", Attempts: 2, Backoff: time.Millisecond}
		if client == nil {
			opts.CAPEM = certPEM(redirector)
		}
		_, err := skr.ReleaseKey(context.Background(), redirector.URL, "k", "", "attestation-token", priv, opts)
		if !errors.Is(err, skr.ErrRedirect) {
			t.Errorf("%s: err %v, want ErrRedirect", name, err)
		}
	}
	if leaked.Load() != 0 {
		t.Fatalf("the redirect was followed %d times", leaked.Load())
	}
}

// deadlineTransport records whether each request carries a deadline.
type deadlineTransport struct{ deadline atomic.Int64 }

func (d *deadlineTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if dl, ok := r.Context().Deadline(); ok {
		d.deadline.Store(int64(time.Until(dl)))
	} else {
		d.deadline.Store(-1)
	}
	return &http.Response{StatusCode: 404, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// TestEveryRequestHasATimeout: a caller's client without a timeout still
// gets a bounded request (Options.Timeout, default DefaultTimeout).
func TestEveryRequestHasATimeout(t *testing.T) {
	for _, c := range []struct {
		set, want time.Duration
	}{{0, skr.DefaultTimeout}, {5 * time.Second, 5 * time.Second}} {
		tr := &deadlineTransport{}
		opts := skr.Options{HTTPClient: &http.Client{Transport: tr}, Token: "t", Attempts: 1, Timeout: c.set}
		priv, _ := rsa.GenerateKey(rand.Reader, 2048)
		skr.ReleaseKey(context.Background(), "127.0.0.1:1", "k", "", "tok", priv, opts)
		got := time.Duration(tr.deadline.Load())
		if got <= 0 || got > c.want {
			t.Errorf("Timeout %v: request deadline in %v, want within %v", c.set, got, c.want)
		}
	}
}

// TestFakeEvidenceOnlyToLoopback: fake evidence is not sent to a
// non-loopback authority unless Options.Insecure.
func TestFakeEvidenceOnlyToLoopback(t *testing.T) {
	fake, err := attest.NewFake(attest.FakeOptions{Context: &attest.SecurityContext{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := fake.Evidence(context.Background(), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &countingTransport{}
	opts := skr.Options{HTTPClient: &http.Client{Transport: tr}, Attempts: 1}
	_, _, err = skr.Attest(context.Background(), "myattest.weu.attest.azure.net", ev, opts)
	if !errors.Is(err, skr.ErrInsecure) || tr.n.Load() != 0 {
		t.Fatalf("fake evidence to Azure: err %v, %d requests; want ErrInsecure and none", err, tr.n.Load())
	}
	opts.Insecure = true
	skr.Attest(context.Background(), "mock.example.com", ev, opts)
	if tr.n.Load() == 0 {
		t.Fatal("Insecure: the evidence was not sent")
	}
	// Loopback needs no Insecure: the mock-kms demo.
	s, err := mockkms.New(mockkms.Options{AcceptFakeSNP: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := skr.Attest(context.Background(), s.Endpoint(), ev, skr.Options{CAPEM: s.CAPEM()}); err != nil {
		t.Fatalf("fake evidence to a loopback mock: %v", err)
	}
}

func TestIsLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"127.0.0.1:8443": true, "https://127.0.0.1": true, "localhost:1": true, "[::1]:2": true,
		"myvault.vault.azure.net": false, "http://127.0.0.1": false, "": false, "10.0.0.1": false,
	} {
		if got := skr.IsLoopbackURL(u); got != want {
			t.Errorf("IsLoopbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}

// certPEM is an httptest TLS server's certificate, to trust as a CA.
func certPEM(s *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}
