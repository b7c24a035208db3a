package mockkms_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

var quiet = slog.New(slog.DiscardHandler)

func startMock(t *testing.T, opts mockkms.Options) *mockkms.Server {
	t.Helper()
	opts.Logger = quiet
	s, err := mockkms.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func clientOpts(s *mockkms.Server) skr.Options {
	return skr.Options{CAPEM: s.CAPEM(), Token: "test-token", Backoff: 10 * time.Millisecond, Logger: quiet}
}

func fakeProvider(t *testing.T, uvmPolicy string) *attest.Fake {
	t.Helper()
	p, err := attest.NewFake(attest.FakeOptions{Policy: []byte(uvmPolicy), Context: &attest.SecurityContext{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func policyFor(t *testing.T, s *mockkms.Server, uvmPolicy string) []byte {
	t.Helper()
	hd := attest.FakeHostData([]byte(uvmPolicy))
	p, err := skr.PolicyForHostData(s.Endpoint(), hex.EncodeToString(hd[:]))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func importOct(t *testing.T, s *mockkms.Server, name string, policy []byte) []byte {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	kid, err := skr.ImportKey(testCtx(t), s.URL(), name, key, policy, clientOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(kid, s.URL()+"/keys/"+name+"/") {
		t.Fatalf("kid %q", kid)
	}
	return key
}

func blob(t *testing.T, s *mockkms.Server, name, kty string) *skr.KeyBlob {
	t.Helper()
	b, err := skr.ParseKeyBlob(s.KeyBlobJSON(name, kty))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReleaseEndToEnd(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	const uvm = "package policy\napi_svn := \"0.10.0\"\n"
	key := importOct(t, s, "fs-key", policyFor(t, s, uvm))
	prov := fakeProvider(t, uvm)
	for _, enc := range []string{"", skr.EncCKMRSAAESKeyWrap, skr.EncRSAAESKeyWrap256, skr.EncRSAAESKeyWrap384} {
		opts := clientOpts(s)
		opts.Enc = enc
		got, err := skr.Release(testCtx(t), blob(t, s, "fs-key", "oct-HSM"), prov, opts)
		if err != nil {
			t.Fatalf("enc %q: %v", enc, err)
		}
		if !bytes.Equal(got, key) {
			t.Fatalf("enc %q: released key differs", enc)
		}
	}
}

func TestReleaseRSAHSMDerivation(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	const uvm = "rsa policy"
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := skr.ImportRSAKey(testCtx(t), s.URL(), "rsa-key", priv, policyFor(t, s, uvm), clientOpts(s)); err != nil {
		t.Fatal(err)
	}
	b := blob(t, s, "rsa-key", "RSA-HSM")
	// No salt: derived with an empty salt, as the sidecar does (issue 18 item 7).
	noSalt, err := skr.Release(testCtx(t), b, fakeProvider(t, uvm), clientOpts(s))
	wantNoSalt, _ := hkdf.Key(crypto.SHA256.New, priv.D.Bytes(), nil, skr.DefaultDerivationLabel, 32)
	if err != nil || !bytes.Equal(noSalt, wantNoSalt) {
		t.Fatalf("missing salt: %v", err)
	}
	b.KeyDerivation = &skr.KeyDerivation{Salt: "00112233445566778899aabbccddeeff", Label: "chestfs"}
	got, err := skr.Release(testCtx(t), b, fakeProvider(t, uvm), clientOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	salt, _ := hex.DecodeString(b.KeyDerivation.Salt)
	want, _ := hkdf.Key(crypto.SHA256.New, priv.D.Bytes(), salt, "chestfs", 32)
	if !bytes.Equal(got, want) {
		t.Fatal("derived key differs from HKDF-SHA256(D, salt, label)")
	}
	// The blob saying oct for an RSA key is refused.
	if _, err := skr.Release(testCtx(t), blob(t, s, "rsa-key", "oct-HSM"), fakeProvider(t, uvm), clientOpts(s)); err == nil {
		t.Fatal("kty mismatch accepted")
	}
}

func TestReleaseRefusals(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true, BearerToken: "test-token"})
	importOct(t, s, "fs-key", policyFor(t, s, "good policy"))
	ctx := testCtx(t)

	_, err := skr.Release(ctx, blob(t, s, "fs-key", ""), fakeProvider(t, "other policy"), clientOpts(s))
	t.Log(err)
	if !errors.Is(err, skr.ErrForbidden) || !strings.Contains(err.Error(), "x-ms-sevsnpvm-hostdata") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("policy mismatch: %v", err)
	}
	_, err = skr.Release(ctx, blob(t, s, "no-such-key", ""), fakeProvider(t, "good policy"), clientOpts(s))
	t.Log(err)
	if !errors.Is(err, skr.ErrNotFound) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = skr.Release(ctx, blob(t, s, "fs-key/0000", ""), fakeProvider(t, "good policy"), clientOpts(s))
	if !errors.Is(err, skr.ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
	opts := clientOpts(s)
	opts.Token = "wrong"
	_, err = skr.Release(ctx, blob(t, s, "fs-key", ""), fakeProvider(t, "good policy"), opts)
	t.Log(err)
	if !errors.Is(err, skr.ErrUnauthorized) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad bearer: %v", err)
	}
	// The token may come from the environment.
	opts.Token = ""
	t.Setenv(skr.TokenEnv, "test-token")
	if _, err := skr.Release(ctx, blob(t, s, "fs-key", ""), fakeProvider(t, "good policy"), opts); err != nil {
		t.Fatalf("token from %s: %v", skr.TokenEnv, err)
	}
	// Without the mock's CA the client refuses the TLS connection.
	opts = clientOpts(s)
	opts.CAPEM = nil
	_, err = skr.Release(ctx, blob(t, s, "fs-key", ""), fakeProvider(t, "good policy"), opts)
	t.Log(err)
	if !errors.Is(err, skr.ErrTLS) {
		t.Fatalf("untrusted server: %v", err)
	}
}

func TestFakeRejectedUnlessAccepted(t *testing.T) {
	s := startMock(t, mockkms.Options{})
	importOct(t, s, "fs-key", policyFor(t, s, "p"))
	_, err := skr.Release(testCtx(t), blob(t, s, "fs-key", ""), fakeProvider(t, "p"), clientOpts(s))
	if err == nil || !strings.Contains(err.Error(), "rejected the evidence") {
		t.Fatalf("fake evidence: %v", err)
	}
}

func TestRetries(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true, FailFirst: 2})
	opts := clientOpts(s)
	key := make([]byte, 32)
	if _, err := skr.ImportKey(testCtx(t), s.URL(), "k", key, policyFor(t, s, "p"), opts); err != nil {
		t.Fatalf("import after two 503s: %v", err)
	}
	s2 := startMock(t, mockkms.Options{AcceptFakeSNP: true, FailFirst: 100})
	opts = clientOpts(s2)
	opts.Attempts = 3
	_, err := skr.ImportKey(testCtx(t), s2.URL(), "k", key, policyFor(t, s2, "p"), opts)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("persistent 503: %v", err)
	}
}

func TestAttestationTokenChecks(t *testing.T) {
	a := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	b := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	ctx := testCtx(t)
	ev, err := fakeProvider(t, "p").Evidence(ctx, []byte(`{"keys":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	tokA, claims, err := skr.Attest(ctx, a.Endpoint(), ev, clientOpts(a))
	if err != nil {
		t.Fatal(err)
	}
	hd := attest.FakeHostData([]byte("p"))
	if claims["x-ms-sevsnpvm-hostdata"] != hex.EncodeToString(hd[:]) || claims["x-ms-attestation-type"] != "sevsnpvm" {
		t.Fatalf("claims: %v", claims)
	}
	// A token from another authority, checked against a: unknown key.
	tokB, _, err := skr.Attest(ctx, b.Endpoint(), ev, clientOpts(b))
	if err != nil {
		t.Fatal(err)
	}
	optsAB := clientOpts(a)
	optsAB.CAPEM = append(a.CAPEM(), b.CAPEM()...)
	if _, err := skr.VerifyToken(ctx, a.Endpoint(), tokB, optsAB); !errors.Is(err, skr.ErrBadToken) || !strings.Contains(err.Error(), "does not publish") {
		t.Fatalf("foreign token: %v", err)
	}
	// a's kid, but signed by another key.
	parts := strings.Split(tokA, ".")
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, other, crypto.SHA256, d[:])
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	if _, err := skr.VerifyToken(ctx, a.Endpoint(), forged, clientOpts(a)); !errors.Is(err, skr.ErrBadToken) {
		t.Fatalf("forged signature: %v", err)
	}
	// Expired: the client's clock is past exp.
	late := clientOpts(a)
	late.Now = func() time.Time { return time.Now().Add(9 * time.Hour) }
	if _, err := skr.VerifyToken(ctx, a.Endpoint(), tokA, late); !errors.Is(err, skr.ErrBadToken) || !strings.Contains(err.Error(), "exp") {
		t.Fatalf("expired token: %v", err)
	}
	// Issuer must be the authority asked: same server reached by another name.
	alias := strings.Replace(a.Endpoint(), "127.0.0.1", "localhost", 1)
	if _, err := skr.VerifyToken(ctx, alias, tokA, clientOpts(a)); !errors.Is(err, skr.ErrBadToken) || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("issuer mismatch: %v", err)
	}
	for _, bad := range []string{"", "abc", "a.b", "a.b.c", parts[0] + "." + parts[1] + "."} {
		if _, err := skr.VerifyToken(ctx, a.Endpoint(), bad, clientOpts(a)); !errors.Is(err, skr.ErrBadToken) {
			t.Fatalf("malformed %q: %v", bad, err)
		}
	}
	// Key Vault refuses a token it cannot verify.
	importOct(t, a, "fs-key", policyFor(t, a, "p"))
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, err = skr.ReleaseKey(ctx, a.Endpoint(), "fs-key", "", forged, priv, clientOpts(a))
	if err == nil || !strings.Contains(err.Error(), "attestation token is invalid") {
		t.Fatalf("release with forged token: %v", err)
	}
	// A valid token whose runtime data has no key: nothing to wrap to.
	_, err = skr.ReleaseKey(ctx, a.Endpoint(), "fs-key", "", tokA, priv, clientOpts(a))
	if err == nil || !strings.Contains(err.Error(), "x-ms-runtime") {
		t.Fatalf("release without runtime key: %v", err)
	}
}

// The mock verifies real Azure evidence with AMD's roots, and then insists
// on REPORT_DATA binding (the reference report binds unknown runtime data).
func TestMockVerifiesRealReport(t *testing.T) {
	report, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", "snp_report.bin"))
	if err != nil {
		t.Skip("attest testdata not found:", err)
	}
	certJSON, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", "uvm_host_amd_certificate.json"))
	if err != nil {
		t.Skip("attest testdata not found:", err)
	}
	h, err := attest.ParseHostAMDCert(certJSON)
	if err != nil {
		t.Fatal(err)
	}
	s := startMock(t, mockkms.Options{})
	ev := &attest.Evidence{Report: report, CertChain: h.ChainPEM(), RuntimeData: []byte(`{}`)}
	_, _, err = skr.Attest(testCtx(t), s.Endpoint(), ev, clientOpts(s))
	if err == nil || !strings.Contains(err.Error(), "REPORT_DATA") {
		t.Fatalf("want a REPORT_DATA refusal after signature verification, got %v", err)
	}
	bad := bytes.Clone(report)
	bad[0x90] ^= 1
	ev.Report = bad
	_, _, err = skr.Attest(testCtx(t), s.Endpoint(), ev, clientOpts(s))
	if err == nil || !strings.Contains(err.Error(), "not verified") {
		t.Fatalf("tampered report: %v", err)
	}
}

func TestStateFile(t *testing.T) {
	state := filepath.Join(t.TempDir(), "kms.json")
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true, StateFile: state})
	key := importOct(t, s, "fs-key", policyFor(t, s, "p"))
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v", fi.Mode().Perm())
	}
	s.Close()
	// A new server with the same state file knows the key; the policy names
	// the old authority, so reuse its address.
	s2, err := mockkms.New(mockkms.Options{AcceptFakeSNP: true, StateFile: state, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(s.Endpoint()); err != nil {
		t.Skip("port not reusable:", err)
	}
	t.Cleanup(func() { s2.Close() })
	got, err := skr.Release(testCtx(t), blob(t, s2, "fs-key", ""), fakeProvider(t, "p"), clientOpts(s2))
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("after restart: %v", err)
	}
}

func TestImportRefusals(t *testing.T) {
	s := startMock(t, mockkms.Options{})
	ctx := testCtx(t)
	for _, pol := range []string{`{}`, `{"version":"1.0.0"}`, `{"version":"1.0.0","anyOf":[{"allOf":[{"claim":"a","equals":"b"}]}]}`,
		`{"version":"1.0.0","anyOf":[{"authority":"x","allOf":[{"claim":"a"}]}]}`} {
		if _, err := skr.ImportKey(ctx, s.URL(), "k", []byte("k"), []byte(pol), clientOpts(s)); err == nil {
			t.Errorf("policy %s accepted", pol)
		}
	}
	if _, err := skr.ImportKey(ctx, s.URL(), "k", []byte("k"), []byte(`not json`), clientOpts(s)); err == nil {
		t.Error("non-JSON policy accepted")
	}
	var jwk map[string]any
	json.Unmarshal([]byte(`{"kty":"EC"}`), &jwk)
	if _, err := skr.ImportJWK(ctx, s.URL(), "k", jwk, policyFor(t, s, "p"), clientOpts(s)); err == nil {
		t.Error("EC key accepted")
	}
}
