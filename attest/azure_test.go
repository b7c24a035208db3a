package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 18 item 4: the sidecar's search order, with the Kata directory
// after /security-context-* and the environment when a directory has no
// reference info.
func TestSecurityContextOrder(t *testing.T) {
	mk := func(ref string) string {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, "security-policy-base64"), []byte(base64.StdEncoding.EncodeToString([]byte("policy of "+ref))), 0o644)
		if ref != "" {
			os.WriteFile(filepath.Join(d, "reference-info-base64"), []byte(base64.StdEncoding.EncodeToString([]byte(ref))), 0o644)
		}
		return d
	}
	explicit, kata := mk("explicit"), mk("kata")
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "security-context-aci"), 0o755)
	aci := filepath.Join(root, "security-context-aci")
	os.WriteFile(filepath.Join(aci, "reference-info-base64"), []byte(base64.StdEncoding.EncodeToString([]byte("aci"))), 0o644)
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	none := filepath.Join(t.TempDir(), "security-context-*")
	ref := func(glob, kataDir string) string {
		t.Helper()
		sc, err := FindSecurityContext(getenv, glob, kataDir)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(sc.ReferenceInfo)
	}
	env["UVM_SECURITY_CONTEXT_DIR"] = explicit
	if got := ref(filepath.Join(root, "security-context-*"), kata); got != "explicit" {
		t.Errorf("UVM_SECURITY_CONTEXT_DIR: %q", got)
	}
	delete(env, "UVM_SECURITY_CONTEXT_DIR")
	if got := ref(filepath.Join(root, "security-context-*"), kata); got != "aci" {
		t.Errorf("/security-context-*: %q", got)
	}
	if got := ref(none, kata); got != "kata" {
		t.Errorf("Kata directory: %q", got)
	}
	if got := ref(none, filepath.Join(t.TempDir(), "absent")); !strings.Contains(got, "kata-containers") {
		t.Errorf("nothing: %q", got)
	}
	// A directory without reference info gives way to the variables.
	env["UVM_REFERENCE_INFO"] = base64.StdEncoding.EncodeToString([]byte("env"))
	if got := ref(none, mk("")); got != "env" {
		t.Errorf("Kata dir without reference info, variables set: %q", got)
	}
	delete(env, "UVM_REFERENCE_INFO")
	sc, err := FindSecurityContext(getenv, none, mk(""))
	if err != nil || sc == nil || len(sc.SecurityPolicy) == 0 || len(sc.ReferenceInfo) != 0 {
		t.Errorf("Kata dir without reference info, no variables: %+v %v", sc, err)
	}
	if KataSecurityContextDir != "/opt/confidential-containers/share/kata-containers" {
		t.Error(KataSecurityContextDir)
	}
}

// The real Azure VCEK's certificate extensions give the TCB its JSON names.
func TestVCEKTCBOfRealCertificate(t *testing.T) {
	raw, err := os.ReadFile("testdata/uvm_host_amd_certificate.json")
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHostAMDCert(raw)
	if err != nil {
		t.Fatal(err)
	}
	tcb, err := VCEKTCB([]byte(h.VcekCert))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Matches(tcb) {
		t.Errorf("VCEK TCB %016x, tcbm %s", tcb, h.TCBM)
	}
	report, _ := os.ReadFile("testdata/snp_report.bin")
	if rt, _ := ReportedTCB(report); rt != tcb {
		t.Errorf("report TCB %016x, VCEK %016x", rt, tcb)
	}
}

// certServer plays THIM (serving a VCEK for another TCB), AMD's KDS and
// Azure's certificate cache for the fake chain, failing the first failN
// requests with 503.
func certServer(t *testing.T, failN int64) (*httptest.Server, *atomic.Int64) {
	s, err := fakeChain()
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/thim", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(HostAMDCert{VcekCert: pemOf(s.Vcek.Raw), TCBM: "0000000000000001", CertificateChain: pemOf(s.Ask.Raw) + pemOf(s.Ark.Raw)})
	})
	mux.HandleFunc("/vcek/v1/Milan/cert_chain", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, pemOf(s.Ask.Raw)+pemOf(s.Ark.Raw))
	})
	mux.HandleFunc("/vcek/v1/Milan/{chip}", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		want := fmt.Sprint(tcbPart(uint64(s.TCB), 7), tcbPart(uint64(s.TCB), 6), tcbPart(uint64(s.TCB), 1), tcbPart(uint64(s.TCB), 0))
		if got := fmt.Sprint(q.Get("ucodeSPL"), " ", q.Get("snpSPL"), " ", q.Get("teeSPL"), " ", q.Get("blSPL")); strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(want, " ", "") {
			http.Error(w, "wrong SPLs "+got, http.StatusNotFound)
			return
		}
		w.Write(s.Vcek.Raw)
	})
	mux.HandleFunc("/SevSnpVM/certificates/{chip}/{tcb}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("tcb") != fmt.Sprintf("%x", uint64(s.TCB)) || r.URL.Query().Get("api-version") != "2020-10-15-preview" {
			http.Error(w, "wrong tcb or api-version", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, pemOf(s.Vcek.Raw)+pemOf(s.Ask.Raw)+pemOf(s.Ark.Raw))
	})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= failN {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// Issue 18 item 5: when THIM serves a VCEK for another TCB, the certcache
// (AMD KDS or Azure's cache) gives the right one; fetches are retried.
func TestCertCacheFallback(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	fake, err := NewFake(FakeOptions{Context: &SecurityContext{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	runtime := []byte(`{"keys":[]}`)
	quote := func([64]byte) ([]byte, error) {
		ev, err := fake.Evidence(context.Background(), runtime)
		if err != nil {
			return nil, err
		}
		return ev.Report, nil
	}
	for _, c := range []struct {
		name  string
		cache *CertCache
		fail  int64
		ok    bool
	}{
		{"no certcache", nil, 0, false},
		{"AMD", &CertCache{EndpointType: "AMD", TEEType: "Milan"}, 0, true},
		{"AMD after two 503s", &CertCache{EndpointType: "AMD"}, 2, true},
		{"AzCache", &CertCache{EndpointType: "AzCache", TEEType: "SevSnpVM", APIVersion: "api-version=2020-10-15-preview", ClientID: "clientId=ConfidentialACI"}, 0, true},
		{"LocalTHIM, same wrong TCB", &CertCache{EndpointType: "LocalTHIM"}, 0, false},
	} {
		srv, _ := certServer(t, c.fail)
		host := strings.TrimPrefix(srv.URL, "https://")
		if c.cache != nil {
			switch c.cache.EndpointType {
			case "AMD":
				c.cache.Endpoint = host + "/vcek/v1"
			case "AzCache":
				c.cache.Endpoint = host
			}
		}
		p := NewSNP(SNPOptions{Context: &SecurityContext{}, Quote: quote, HTTPClient: srv.Client(), THIMURL: srv.URL + "/thim",
			CertCache: c.cache, RetryBase: time.Millisecond, Logger: quiet})
		ev, err := p.Evidence(context.Background(), runtime)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "REPORTED_TCB") {
				t.Errorf("%s: error %q", c.name, err)
			}
			continue
		}
		if _, err := VerifyReport(ev.Report, ev.CertChain, VerifyOptions{AcceptFake: true}); err != nil {
			t.Errorf("%s: chain does not verify the report: %v", c.name, err)
		}
	}
	if err := (&CertCache{EndpointType: "Intel", Endpoint: "x"}).Validate(); err == nil {
		t.Error("unknown endpoint_type accepted")
	}
	if err := (&CertCache{EndpointType: "AMD", Endpoint: "https://kdsintf.amd.com/vcek/v1"}).Validate(); err == nil {
		t.Error("endpoint with a scheme accepted")
	}
}
