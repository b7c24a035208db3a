package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxContextFile bounds every file or response read for the security context.
const maxContextFile = 1 << 20

// HostAMDCert is the host-provided VCEK bundle: the UVM's host-amd-cert-base64
// file and the THIM certification endpoint share this JSON shape.
type HostAMDCert struct {
	VcekCert         string `json:"vcekCert"`
	TCBM             string `json:"tcbm"`
	CertificateChain string `json:"certificateChain"`
	CacheControl     string `json:"cacheControl,omitempty"`
}

// ChainPEM is the VCEK PEM followed by the ASK/ARK PEM chain.
func (h *HostAMDCert) ChainPEM() []byte {
	v := strings.TrimSpace(h.VcekCert)
	c := strings.TrimSpace(h.CertificateChain)
	return []byte(v + "\n" + c + "\n")
}

// Matches reports whether the bundle's TCBM is the given REPORTED_TCB.
func (h *HostAMDCert) Matches(reportedTCB uint64) bool {
	v, err := strconv.ParseUint(strings.TrimSpace(h.TCBM), 16, 64)
	return err == nil && v == reportedTCB
}

// ParseHostAMDCert decodes the host-amd-cert JSON.
func ParseHostAMDCert(data []byte) (*HostAMDCert, error) {
	var h HostAMDCert
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("attest: host AMD certificate JSON: %w", err)
	}
	if h.VcekCert == "" || h.CertificateChain == "" {
		return nil, errors.New("attest: host AMD certificate JSON lacks vcekCert or certificateChain")
	}
	return &h, nil
}

// SecurityContext is what the confidential-container host hands the UVM.
type SecurityContext struct {
	Source         string // directory or "environment", for messages
	HostAMDCert    *HostAMDCert
	SecurityPolicy []byte // decoded Rego policy; sha256 of it is HOST_DATA
	ReferenceInfo  []byte // decoded COSE_Sign1 UVM reference info
}

// ErrNoSecurityContext means neither a security-context directory nor the
// UVM_* environment variables exist (not running in a confidential container).
var ErrNoSecurityContext = errors.New("attest: no UVM security context (UVM_SECURITY_CONTEXT_DIR, /security-context-*, " + KataSecurityContextDir + ", UVM_* variables)")

// KataSecurityContextDir is where confidential AKS (Kata) puts the UVM
// security context; the sidecar falls back to it when neither
// UVM_SECURITY_CONTEXT_DIR nor a /security-context-* directory exists.
const KataSecurityContextDir = "/opt/confidential-containers/share/kata-containers"

// LoadSecurityContext finds the UVM security context in the sidecar's order:
// the directory named by UVM_SECURITY_CONTEXT_DIR, else the first
// /security-context-* directory (ACI), else KataSecurityContextDir
// (confidential AKS); if that directory yields no UVM reference info, the
// UVM_SECURITY_POLICY / UVM_REFERENCE_INFO / UVM_HOST_AMD_CERTIFICATE
// environment variables (base64, as the sidecar reads them) are used instead.
func LoadSecurityContext() (*SecurityContext, error) {
	return FindSecurityContext(os.Getenv, "/security-context-*", KataSecurityContextDir)
}

// FindSecurityContext is LoadSecurityContext with the environment, the
// /security-context-* pattern and the Kata directory given (for tests).
func FindSecurityContext(getenv func(string) string, glob, kataDir string) (*SecurityContext, error) {
	dir := getenv("UVM_SECURITY_CONTEXT_DIR")
	if dir == "" {
		if matches, _ := filepath.Glob(glob); len(matches) > 0 {
			sort.Strings(matches)
			dir = matches[0]
		}
	}
	if dir == "" && kataDir != "" {
		if st, err := os.Stat(kataDir); err == nil && st.IsDir() {
			dir = kataDir
		}
	}
	var sc *SecurityContext
	var dirErr error
	if dir != "" {
		sc, dirErr = LoadSecurityContextDir(dir)
		if dirErr == nil && len(sc.ReferenceInfo) > 0 {
			return sc, nil
		}
	}
	// As the sidecar: a directory without reference info gives way to the
	// environment, when that has any.
	env, err := securityContextFromEnv(getenv)
	switch {
	case err == nil:
		return env, nil
	case !errors.Is(err, ErrNoSecurityContext):
		return nil, err
	case dirErr != nil:
		return nil, dirErr
	case sc != nil:
		return sc, nil
	}
	return nil, ErrNoSecurityContext
}

// loadSecurityContext is FindSecurityContext without a Kata directory.
func loadSecurityContext(getenv func(string) string, glob string) (*SecurityContext, error) {
	return FindSecurityContext(getenv, glob, "")
}

func securityContextFromEnv(getenv func(string) string) (*SecurityContext, error) {
	pol, ref, cert := getenv("UVM_SECURITY_POLICY"), getenv("UVM_REFERENCE_INFO"), getenv("UVM_HOST_AMD_CERTIFICATE")
	if pol == "" && ref == "" && cert == "" {
		return nil, ErrNoSecurityContext
	}
	sc := &SecurityContext{Source: "environment"}
	if err := sc.fill("UVM_SECURITY_POLICY", []byte(pol), "UVM_REFERENCE_INFO", []byte(ref), "UVM_HOST_AMD_CERTIFICATE", []byte(cert)); err != nil {
		return nil, err
	}
	return sc, nil
}

// LoadSecurityContextDir reads security-policy-base64, reference-info-base64
// and host-amd-cert-base64 from dir; missing files are left empty.
func LoadSecurityContextDir(dir string) (*SecurityContext, error) {
	read := func(name string) ([]byte, error) {
		b, err := readLimited(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	pol, err := read("security-policy-base64")
	if err != nil {
		return nil, err
	}
	ref, err := read("reference-info-base64")
	if err != nil {
		return nil, err
	}
	cert, err := read("host-amd-cert-base64")
	if err != nil {
		return nil, err
	}
	sc := &SecurityContext{Source: dir}
	if err := sc.fill("security-policy-base64", pol, "reference-info-base64", ref, "host-amd-cert-base64", cert); err != nil {
		return nil, err
	}
	return sc, nil
}

func (sc *SecurityContext) fill(polName string, pol []byte, refName string, ref []byte, certName string, cert []byte) error {
	var err error
	if sc.SecurityPolicy, err = decodeB64Field(sc.Source, polName, pol); err != nil {
		return err
	}
	if sc.ReferenceInfo, err = decodeB64Field(sc.Source, refName, ref); err != nil {
		return err
	}
	raw, err := decodeB64Field(sc.Source, certName, cert)
	if err != nil {
		return err
	}
	if len(raw) > 0 {
		if sc.HostAMDCert, err = ParseHostAMDCert(raw); err != nil {
			return fmt.Errorf("%s: %s: %w", sc.Source, certName, err)
		}
	}
	return nil
}

func decodeB64Field(src, name string, v []byte) ([]byte, error) {
	s := strings.TrimSpace(string(v))
	if s == "" {
		return nil, nil
	}
	b, err := DecodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf("attest: %s: %s: %w", src, name, err)
	}
	return b, nil
}

// DecodeBase64 accepts standard or URL alphabet, padded or not.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxContextFile+1))
	if err != nil {
		return nil, fmt.Errorf("attest: %s: %w", path, err)
	}
	if len(b) > maxContextFile {
		return nil, fmt.Errorf("attest: %s: larger than %d bytes", path, maxContextFile)
	}
	return b, nil
}

// DefaultTHIMURL is the instance-metadata endpoint serving the host's VCEK bundle.
const DefaultTHIMURL = "http://169.254.169.254/metadata/THIM/amd/certification"

// THIMTimeout bounds the THIM request, also with a caller's client: the
// metadata service answers in milliseconds or not at all (no IMDS here).
const THIMTimeout = 20 * time.Second

// thimClient follows no redirect: the metadata service never sends one,
// and the Metadata header must not reach another host.
var thimClient = &http.Client{Timeout: THIMTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
	return errors.New("redirect refused")
}}

// FetchTHIM gets the VCEK bundle from the instance metadata service.
func FetchTHIM(ctx context.Context, client *http.Client, url string) (*HostAMDCert, error) {
	if client == nil {
		client = thimClient
	}
	if url == "" {
		url = DefaultTHIMURL
	}
	ctx, cancel := context.WithTimeout(ctx, THIMTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("attest: THIM: %w", err)
	}
	req.Header.Set("Metadata", "true")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("attest: THIM: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxContextFile+1))
	if err != nil {
		return nil, fmt.Errorf("attest: THIM: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("attest: THIM: %s", resp.Status)
	}
	if len(body) > maxContextFile {
		return nil, errors.New("attest: THIM: response too large")
	}
	return ParseHostAMDCert(body)
}
