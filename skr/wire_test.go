package skr_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

// recorded is one request as it reached the stand-in.
type recorded struct {
	method, path, query, auth string
	body                      []byte
}

// b64 decodes base64url with or without padding, as Azure's peers send it.
func b64(t *testing.T, what, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		t.Fatalf("%s is not base64url: %v", what, err)
	}
	return b
}

// TestWireFormats runs a whole release against the mock behind a recorder
// and checks each request against the documented Azure formats field by
// field, and that a 503 is retried.
func TestWireFormats(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	mock, err := mockkms.New(mockkms.Options{AcceptFakeSNP: true, FailFirst: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reqs []recorded
	h := mock.Handler()
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	defer ts.Close()
	opts := skr.Options{HTTPClient: ts.Client(), CAPEM: mock.CAPEM(), Token: "bearer-for-test", Backoff: 10 * time.Millisecond, Logger: quiet}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	fake, err := attest.NewFake(attest.FakeOptions{Policy: []byte("policy"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hd := fake.HostData()
	policy, err := skr.PolicyForHostData(ts.URL, hex.EncodeToString(hd[:]))
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0x42}, 32)
	if _, err := skr.ImportKey(ctx, ts.URL, "wire-key", want, policy, opts); err != nil {
		t.Fatal(err)
	}
	blob := &skr.KeyBlob{KID: "wire-key", KTY: "oct-HSM", Authority: skr.Endpoint{Endpoint: ts.URL}, AKV: skr.Endpoint{Endpoint: ts.URL}}
	got, err := skr.Release(ctx, blob, fake, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("released key differs")
	}

	var attests, releases []recorded
	for _, r := range reqs {
		switch {
		case r.method == "POST" && r.path == "/attest/SevSnpVm":
			attests = append(attests, r)
		case r.method == "POST" && r.path == "/keys/wire-key/release":
			releases = append(releases, r)
		}
	}
	// FailFirst answered the first request (the import) with 503: it was retried.
	if len(reqs) < 2 || reqs[0].path != reqs[1].path {
		t.Errorf("the 503 was not retried: %+v", reqs[:min(2, len(reqs))])
	}
	if len(attests) != 1 || len(releases) != 1 {
		t.Fatalf("%d attest and %d release requests", len(attests), len(releases))
	}

	// Azure Attestation: POST /attest/SevSnpVm?api-version=..., report and runtimeData as documented.
	a := attests[0]
	if !strings.Contains(a.query, "api-version="+skr.MAAAPIVersion) {
		t.Errorf("attest query %q", a.query)
	}
	var body struct {
		Report      string `json:"report"`
		RuntimeData struct {
			Data     string `json:"data"`
			DataType string `json:"dataType"`
		} `json:"runtimeData"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("attest body: %v", err)
	}
	if body.RuntimeData.DataType != "JSON" {
		t.Errorf("dataType %q, want JSON", body.RuntimeData.DataType)
	}
	var runtime struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b64(t, "runtimeData.data", body.RuntimeData.Data), &runtime); err != nil || len(runtime.Keys) != 1 {
		t.Fatalf("runtime data: %v %v", err, runtime)
	}
	for _, f := range []string{"e", "n", "kid", "kty", "key_ops"} {
		if _, ok := runtime.Keys[0][f]; !ok {
			t.Errorf("runtime key lacks %q", f)
		}
	}
	var report struct {
		SnpReport, VcekCertChain, Endorsements string
	}
	if err := json.Unmarshal(b64(t, "report", body.Report), &report); err != nil {
		t.Fatalf("report: %v", err)
	}
	if n := len(b64(t, "SnpReport", report.SnpReport)); n != 1184 {
		t.Errorf("SnpReport is %d bytes, want 1184", n)
	}
	if chain := b64(t, "VcekCertChain", report.VcekCertChain); bytes.Count(chain, []byte("BEGIN CERTIFICATE")) != 3 {
		t.Errorf("VcekCertChain is not VCEK+ASK+ARK PEM")
	}
	if report.Endorsements != "" {
		var e struct{ Uvm []string }
		if err := json.Unmarshal(b64(t, "Endorsements", report.Endorsements), &e); err != nil {
			t.Errorf("Endorsements: %v", err)
		}
	}

	// Key Vault: POST /keys/{name}/release?api-version=7.4 with a bearer token and {"target": token}.
	r := releases[0]
	if !strings.Contains(r.query, "api-version=7.4") || r.auth != "Bearer bearer-for-test" {
		t.Errorf("release query %q, Authorization %q", r.query, r.auth)
	}
	var rb map[string]any
	if err := json.Unmarshal(r.body, &rb); err != nil {
		t.Fatal(err)
	}
	target, _ := rb["target"].(string)
	if strings.Count(target, ".") != 2 {
		t.Errorf("release target is not a JWT: %q", target)
	}
}
