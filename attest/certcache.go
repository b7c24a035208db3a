package attest

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// CertCache is the confidential sidecar's azure_info.certcache: where to
// get the VCEK chain when the one the host hands over (security context or
// THIM) is for another TCB than the report's, e.g. after a firmware update
// the host has not caught up with.
type CertCache struct {
	// EndpointType is "AMD" (AMD's KDS), "AzCache" (Azure's certificate
	// cache) or "LocalTHIM" (the instance metadata service).
	EndpointType string `json:"endpoint_type"`
	// Endpoint is host/path without scheme, e.g. "kdsintf.amd.com/vcek/v1",
	// "global.acccache.azure.net", "169.254.169.254/metadata/THIM/amd/certification".
	Endpoint string `json:"endpoint"`
	// TEEType is the product path element: "Milan"/"Genoa" for AMD,
	// "SevSnpVM" for AzCache.
	TEEType string `json:"tee_type,omitempty"`
	// APIVersion and ClientID are AzCache query parameters, written as the
	// sidecar writes them ("api-version=2020-10-15-preview", "clientId=ConfidentialACI").
	APIVersion string `json:"api_version,omitempty"`
	ClientID   string `json:"client_id,omitempty"`
}

// Certificate cache endpoint types.
const (
	CertCacheAMD       = "AMD"
	CertCacheAzure     = "AzCache"
	CertCacheLocalTHIM = "LocalTHIM"
)

// Validate checks that c names a known endpoint type and an endpoint.
func (c *CertCache) Validate() error {
	switch c.EndpointType {
	case CertCacheAMD, CertCacheAzure, CertCacheLocalTHIM:
	default:
		return fmt.Errorf("attest: certcache: endpoint_type %q (want AMD, AzCache or LocalTHIM)", c.EndpointType)
	}
	if strings.TrimSpace(c.Endpoint) == "" && c.EndpointType != CertCacheLocalTHIM {
		return fmt.Errorf("attest: certcache: %s needs an endpoint", c.EndpointType)
	}
	if strings.Contains(c.Endpoint, "://") {
		return fmt.Errorf("attest: certcache: endpoint %q: give host/path without a scheme, as the sidecar does", c.Endpoint)
	}
	return nil
}

// Report layout offsets used for certificate requests.
const (
	offChipID  = 0x1A0
	chipIDSize = 64
)

// tcbPart returns byte i of a TCB_VERSION (0 boot loader, 1 TEE, 6 SNP firmware, 7 microcode).
func tcbPart(tcb uint64, i int) byte { return byte(tcb >> (8 * i)) }

// certURLs are the request URLs for c and a report (chip ID, REPORTED_TCB).
func (c *CertCache) certURLs(chipID []byte, tcb uint64) (vcek, chain string) {
	ep := strings.TrimSuffix(strings.TrimSpace(c.Endpoint), "/")
	switch c.EndpointType {
	case CertCacheAMD:
		tee := c.TEEType
		if tee == "" {
			tee = "Milan"
		}
		vcek = fmt.Sprintf("https://%s/%s/%s?ucodeSPL=%d&snpSPL=%d&teeSPL=%d&blSPL=%d", ep, tee, hex.EncodeToString(chipID),
			tcbPart(tcb, 7), tcbPart(tcb, 6), tcbPart(tcb, 1), tcbPart(tcb, 0))
		return vcek, fmt.Sprintf("https://%s/%s/cert_chain", ep, tee)
	case CertCacheAzure:
		tee := c.TEEType
		if tee == "" {
			tee = "SevSnpVM"
		}
		q := c.APIVersion
		if q == "" {
			q = "api-version=2020-10-15-preview"
		}
		if c.ClientID != "" {
			q += "&" + c.ClientID
		}
		return fmt.Sprintf("https://%s/%s/certificates/%s/%s?%s", ep, tee, hex.EncodeToString(chipID), strconv.FormatUint(tcb, 16), q), ""
	}
	if ep == "" {
		return DefaultTHIMURL, ""
	}
	return "http://" + ep, ""
}

// retryOptions bound certificate fetches: attempts tries, the delay
// doubling from base (the sidecar tries 3 times too).
type retryOptions struct {
	attempts int
	base     time.Duration
}

func (r retryOptions) withDefaults() retryOptions {
	if r.attempts <= 0 {
		r.attempts = 3
	}
	if r.base <= 0 {
		r.base = 2 * time.Second
	}
	return r
}

// retryableStatus: the statuses the sidecar retries (408, 429, 5xx).
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// fetchRetry GETs url, retrying network errors and retryable statuses.
func fetchRetry(ctx context.Context, client *http.Client, url string, header http.Header, r retryOptions) ([]byte, error) {
	r = r.withDefaults()
	delay := r.base
	var last error
	for i := 0; i < r.attempts; i++ {
		if i > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			case <-t.C:
			}
			delay *= 2
		}
		body, status, err := fetchOnce(ctx, client, url, header)
		switch {
		case err != nil:
			last = err
		case status == http.StatusOK:
			return body, nil
		case retryableStatus(status):
			last = fmt.Errorf("HTTP %d", status)
		default:
			return nil, fmt.Errorf("GET %s: HTTP %d", url, status)
		}
	}
	return nil, fmt.Errorf("GET %s: giving up after %d attempts: %w", url, r.attempts, last)
}

func fetchOnce(ctx context.Context, client *http.Client, url string, header http.Header) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, THIMTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxContextFile+1))
	if err != nil {
		return nil, 0, err
	}
	if len(body) > maxContextFile {
		return nil, 0, errors.New("response too large")
	}
	return body, resp.StatusCode, nil
}

// VCEKTCB returns the TCB_VERSION a VCEK certificate (the first PEM block
// of chain, or DER) was issued for, from AMD's certificate extensions.
func VCEKTCB(chain []byte) (uint64, error) {
	der := chain
	if b, _ := pem.Decode(chain); b != nil {
		der = b.Bytes
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return 0, fmt.Errorf("attest: VCEK certificate: %w", err)
	}
	ext, err := kds.VcekCertificateExtensions(c)
	if err != nil {
		return 0, fmt.Errorf("attest: VCEK certificate extensions: %w", err)
	}
	return uint64(ext.TCBVersion), nil
}

// FetchChain gets the VCEK chain (PEM VCEK, ASK, ARK) for report from the
// cache and checks that the VCEK is for the report's REPORTED_TCB.
func (c *CertCache) FetchChain(ctx context.Context, client *http.Client, report []byte) ([]byte, error) {
	return c.fetchChain(ctx, client, report, retryOptions{})
}

func (c *CertCache) fetchChain(ctx context.Context, client *http.Client, report []byte, r retryOptions) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(report) < abi.ReportSize {
		return nil, fmt.Errorf("attest: SNP report is %d bytes, want %d", len(report), abi.ReportSize)
	}
	if client == nil {
		client = thimClient
	}
	tcb := binary.LittleEndian.Uint64(report[offReportedTCB:])
	vcekURL, chainURL := c.certURLs(report[offChipID:offChipID+chipIDSize], tcb)
	what := "certcache " + c.EndpointType
	if c.EndpointType == CertCacheLocalTHIM {
		body, err := fetchRetry(ctx, client, vcekURL, http.Header{"Metadata": {"true"}}, r)
		if err != nil {
			return nil, fmt.Errorf("attest: %s: %w", what, err)
		}
		h, err := ParseHostAMDCert(body)
		if err != nil {
			return nil, fmt.Errorf("attest: %s: %w", what, err)
		}
		if !h.Matches(tcb) {
			return nil, fmt.Errorf("attest: %s: VCEK is for TCB %s, the report's REPORTED_TCB is %016x", what, h.TCBM, tcb)
		}
		return h.ChainPEM(), nil
	}
	body, err := fetchRetry(ctx, client, vcekURL, nil, r)
	if err != nil {
		return nil, fmt.Errorf("attest: %s: %w", what, err)
	}
	chain := body
	if c.EndpointType == CertCacheAMD {
		// AMD's KDS serves the VCEK as DER and ASK+ARK as PEM separately.
		chain = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: body})
		rest, err := fetchRetry(ctx, client, chainURL, nil, r)
		if err != nil {
			return nil, fmt.Errorf("attest: %s: cert_chain: %w", what, err)
		}
		chain = append(chain, rest...)
	}
	got, err := VCEKTCB(chain)
	if err != nil {
		return nil, fmt.Errorf("attest: %s: %w", what, err)
	}
	if got != tcb {
		return nil, fmt.Errorf("attest: %s: VCEK is for TCB %016x, the report's REPORTED_TCB is %016x", what, got, tcb)
	}
	return chain, nil
}
