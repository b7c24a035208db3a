package skr

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chestfs/chestfs/internal/loopback"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// Sentinel errors callers can test with errors.Is.
var (
	ErrUnauthorized = errors.New("bearer token refused (401)") // missing, expired or for the wrong resource
	ErrForbidden    = errors.New("release refused (403)")      // release policy not satisfied (or no permission)
	ErrNotFound     = errors.New("no such key (404)")          // wrong kid or version
	ErrBadToken     = errors.New("invalid token")              // attestation token failed verification
	ErrBadResponse  = errors.New("invalid response")           // release response failed verification
	ErrTLS          = errors.New("TLS failure")                // certificate not trusted / handshake failed
	ErrDNS          = errors.New("DNS lookup failed")          // host name does not resolve
	// ErrTokenHost: the Key Vault bearer token would go to a host that is
	// not a Key Vault or Managed HSM of an Azure cloud nor loopback.
	ErrTokenHost = errors.New("not a Key Vault host")
	// ErrInsecure: a test-only mode (fake evidence) aimed at a non-loopback service.
	ErrInsecure = errors.New("test-only mode refused for a non-loopback endpoint")
	// ErrRedirect: a server answered with a redirect; none is followed.
	ErrRedirect = errors.New("redirect refused")
)

// DefaultTimeout bounds each HTTP request (one try, body included).
const DefaultTimeout = 60 * time.Second

// Options configure the attestation and release clients. The zero value
// talks to Azure with the system roots and azidentity credentials.
type Options struct {
	// HTTPClient replaces the client built from CAPEM.
	HTTPClient *http.Client
	// CAPEM is an extra trusted CA (PEM) for TLS and for the release
	// response's x5c chain, e.g. mockkms's CA.
	CAPEM []byte
	// Token is the Key Vault bearer token. If empty: $CHESTFS_AKV_TOKEN, then
	// the key blob's akv.bearer_token, then Credential, then azidentity's
	// DefaultAzureCredential (managed identity, workload identity, ...).
	Token      string
	Credential azcore.TokenCredential
	// ClientID selects a user-assigned managed identity (the sidecar's
	// azure_info.identity.client_id) when no Credential is given.
	ClientID string
	// AttestAPIVersion is the Azure Attestation api-version tried first
	// (default MAAAPIVersion); on a 400 the other known version is tried.
	AttestAPIVersion string
	// Attempts bounds tries per request on 5xx, 429 and network errors (default 4).
	Attempts int
	// Backoff is the first retry delay, doubled each time up to 8 s (default 500 ms).
	Backoff time.Duration
	// Enc asks Key Vault for a wrapping algorithm (e.g. RSA_AES_KEY_WRAP_256);
	// empty leaves the vault's default (CKM_RSA_AES_KEY_WRAP).
	Enc string
	// Now is the clock for token and certificate checks (default time.Now).
	Now func() time.Time
	// Timeout bounds each try of each request, body included (default
	// DefaultTimeout), also with a caller's HTTPClient.
	Timeout time.Duration
	// TokenHosts are extra hosts the Key Vault bearer token may be sent to:
	// "host" exactly or "*.suffix". Without them it goes only to Key Vault
	// and Managed HSM hosts of the Azure clouds (KeyVaultHostSuffixes) and
	// to loopback (mock-kms).
	TokenHosts []string
	// Insecure lets evidence from the fake attestation provider go to a
	// non-loopback authority (a mock-kms on another host). Without it, that
	// is refused with ErrInsecure: fake evidence proves nothing.
	Insecure bool
	Logger   *slog.Logger
}

// KeyVaultHostSuffixes are the Key Vault and Managed HSM endpoints of the
// public, China and US Government clouds.
var KeyVaultHostSuffixes = []string{
	".vault.azure.net", ".managedhsm.azure.net",
	".vault.azure.cn", ".managedhsm.azure.cn",
	".vault.usgovcloudapi.net", ".managedhsm.usgovcloudapi.net",
}

// IsLoopbackURL reports whether endpoint ("host[:port]" or an https URL, as
// in key blobs) names a loopback host: a local mock-kms.
func IsLoopbackURL(endpoint string) bool {
	base, err := NormalizeEndpoint(endpoint)
	if err != nil {
		return false
	}
	u, err := url.Parse(base)
	return err == nil && loopback.Host(u.Hostname())
}

// tokenHostAllowed says whether the Key Vault bearer token may go to host.
func (o *Options) tokenHostAllowed(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if loopback.Host(h) {
		return true
	}
	for _, s := range KeyVaultHostSuffixes {
		if strings.HasSuffix(h, s) && len(h) > len(s) {
			return true
		}
	}
	for _, a := range o.TokenHosts {
		a = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(a)), ".")
		if suffix, ok := strings.CutPrefix(a, "*"); ok && suffix != "" && strings.HasPrefix(suffix, ".") {
			if strings.HasSuffix(h, suffix) && len(h) > len(suffix) {
				return true
			}
		} else if a != "" && a == h {
			return true
		}
	}
	return false
}

func (o *Options) checkTokenHost(host string) error {
	if o.tokenHostAllowed(host) {
		return nil
	}
	return fmt.Errorf("skr: key vault %s: %w: the bearer token goes only to *.vault.azure.net, *.managedhsm.azure.net "+
		"(and the China and US Government clouds' equivalents) or loopback; name other hosts in TokenHosts", host, ErrTokenHost)
}

func (o *Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// noRedirect refuses every redirect: a redirect could carry the bearer
// token or the attestation token to another host.
func noRedirect(req *http.Request, _ []*http.Request) error {
	return fmt.Errorf("%w to %s", ErrRedirect, req.URL.Host)
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Options) log() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// roots is the system pool plus CAPEM.
func (o *Options) roots() (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if len(o.CAPEM) > 0 && !pool.AppendCertsFromPEM(o.CAPEM) {
		return nil, errors.New("skr: CA PEM holds no certificate")
	}
	return pool, nil
}

func (o *Options) client() (*http.Client, error) {
	if o.HTTPClient != nil {
		return o.HTTPClient, nil
	}
	pool, err := o.roots()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: o.timeout(), CheckRedirect: noRedirect}, nil
}

// withClient returns a copy of o whose HTTPClient is built once, so the
// requests of one operation share connections; done releases them.
func (o Options) withClient() (Options, func(), error) {
	if o.HTTPClient != nil {
		return o, func() {}, nil
	}
	c, err := o.client()
	if err != nil {
		return o, nil, err
	}
	o.HTTPClient = c
	return o, c.CloseIdleConnections, nil
}

// maxResponse bounds every response body read.
const maxResponse = 4 << 20

// httpError is a non-2xx answer, with Azure's error message when present.
type httpError struct {
	Status  int
	Code    string
	Message string
}

func (e *httpError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func parseHTTPError(status int, body []byte) *httpError {
	e := &httpError{Status: status}
	var az struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &az) == nil && (az.Error.Code != "" || az.Error.Message != "") {
		e.Code, e.Message = az.Error.Code, az.Error.Message
	} else {
		e.Message = string(body)
	}
	e.Message = oneLine(e.Message, 300)
	return e
}

// oneLine squeezes server text into a bounded single line for error messages.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// netError names DNS and TLS failures; what is e.g. "key vault 127.0.0.1:8443".
func netError(what string, err error) error {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recErr tls.RecordHeaderError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Errorf("skr: %s: %w: %v", what, ErrDNS, dnsErr)
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalid):
		return fmt.Errorf("skr: %s: %w: server certificate not trusted (pass the CA with --ca?): %v", what, ErrTLS, err)
	case errors.As(err, &recErr):
		return fmt.Errorf("skr: %s: %w: server does not speak TLS", what, ErrTLS)
	case errors.Is(err, ErrRedirect):
		return fmt.Errorf("skr: %s: %w", what, ErrRedirect)
	}
	return fmt.Errorf("skr: %s: %w", what, err)
}

func retryable(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) || errors.As(err, &recErr) ||
		errors.Is(err, ErrRedirect) {
		return false
	}
	// A try that ran out of Options.Timeout is retried; do stops when the
	// caller's own context is done.
	return !errors.Is(err, context.Canceled)
}

// try sends one request and reads the answer within Options.Timeout.
func (o *Options) try(ctx context.Context, c *http.Client, method, url string, header http.Header, body []byte) (*http.Response, []byte, error) {
	tctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err == nil && len(data) > maxResponse {
		err = fmt.Errorf("response larger than %d bytes", maxResponse)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading response: %w", err)
	}
	return resp, data, nil
}

// do sends the request, retrying network errors, 429 and 5xx with bounded
// exponential backoff. It returns the final status and body; a non-nil error
// means no HTTP answer at all.
func (o *Options) do(ctx context.Context, what, method, url string, header http.Header, body []byte) (int, []byte, error) {
	c, err := o.client()
	if err != nil {
		return 0, nil, err
	}
	// A caller's client follows no redirect either.
	nc := *c
	nc.CheckRedirect = noRedirect
	c = &nc
	attempts := o.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	delay := o.Backoff
	if delay <= 0 {
		delay = 500 * time.Millisecond
	}
	var lastErr error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, nil, fmt.Errorf("skr: %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			case <-t.C:
			}
			delay = min(2*delay, 8*time.Second)
		}
		resp, data, err := o.try(ctx, c, method, url, header, body)
		if err != nil {
			if !retryable(err) || ctx.Err() != nil {
				return 0, nil, netError(what, err)
			}
			lastErr = netError(what, err)
			o.log().Warn("request failed, retrying", "what", what, "attempt", i+1, "err", err)
			continue
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			lastErr = fmt.Errorf("skr: %s: %w", what, parseHTTPError(resp.StatusCode, data))
			if i == attempts-1 {
				return resp.StatusCode, data, nil
			}
			if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				// Honoured in full (an earlier retry would only be refused
				// again, adding to the service's load), never below the backoff.
				delay = max(delay, ra)
				if dl, ok := ctx.Deadline(); ok && time.Now().Add(ra).After(dl) {
					return 0, nil, fmt.Errorf("skr: %s: %w; the service asks to retry after %v, past the deadline",
						what, parseHTTPError(resp.StatusCode, data), ra)
				}
			}
			o.log().Warn("server busy or failing, retrying", "what", what, "status", resp.StatusCode, "attempt", i+1, "delay", delay)
			continue
		}
		return resp.StatusCode, data, nil
	}
	return 0, nil, fmt.Errorf("skr: %s: giving up after %d attempts: %w", what, attempts, lastErr)
}

// maxRetryAfter caps the pause a Retry-After may ask for; a longer one ends
// the request (the caller's deadline, or this, whichever is first).
const maxRetryAfter = 60 * time.Second

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		d = time.Duration(min(s, int(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), maxRetryAfter), true
}
