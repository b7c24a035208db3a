// Package mockkms is a local stand-in for Azure Attestation and Azure Key
// Vault that speaks their wire protocol for SEV-SNP secure key release, so
// the real skr client runs unchanged against it (laptop demos, CI).
//
// One HTTPS server (its own CA; CAPEM) serves both roles:
//
//	POST /attest/SevSnpVm              verify an SNP report, issue an RS256 token
//	POST /attest/AzureGuest            verify vTPM evidence (HCL report, quote), issue an encrypted token
//	GET  /certs                        the token signing keys (JWKS)
//	GET  /.well-known/openid-configuration
//	PUT  /keys/{name}                  import a key with a release policy
//	POST /keys/{name}[/{version}]/release
//
// Keys live in memory, optionally persisted to a 0600 state file.
package mockkms

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure the mock.
type Options struct {
	// Hostnames are extra DNS names for the server certificate (127.0.0.1,
	// ::1 and localhost are always included).
	Hostnames []string
	// AcceptFakeSNP trusts reports signed by go-sev-guest's test-only AMD
	// chain (the "fake" attestation provider) besides AMD's real roots.
	AcceptFakeSNP bool
	// BearerToken, if set, is the only Key Vault bearer token accepted;
	// otherwise any non-empty token is.
	BearerToken string
	// StateFile persists imported keys (mode 0600); empty keeps them in memory only.
	StateFile string
	// StateDir, when set, keeps the CA (ca.pem, ca-key.pem) across restarts,
	// so clients keep trusting the same --ca file, and holds the key state
	// (state.json) unless StateFile says otherwise.
	StateDir string
	// TokenTTL is the attestation token lifetime (default 8 h, as Azure).
	TokenTTL time.Duration
	// MAAAPIVersions are the attestation api-versions accepted (default
	// MAAAPIVersions); others are answered 400, as Azure does.
	MAAAPIVersions []string
	// FailFirst answers the first N requests with 503 (to exercise retries).
	FailFirst int
	// Insecure lets Start listen on an address other than loopback (all
	// interfaces, or another host's address). The mock is a test tool with
	// test keys: without Insecure, Start refuses such an address (ErrInsecure).
	Insecure bool
	Now      func() time.Time
	Logger   *slog.Logger
}

// Server is the mock. Create with New, then Start or Serve.
type Server struct {
	opts Options
	log  *slog.Logger

	caCert  *x509.Certificate
	caPEM   []byte
	tlsCert tls.Certificate
	// kvSigner signs release answers; kvChain is its x5c (leaf, CA).
	kvSigner *rsa.PrivateKey
	kvChain  [][]byte
	// maaKey signs attestation tokens; maaCert is its self-signed x5c.
	maaKey  *rsa.PrivateKey
	maaCert []byte
	maaKID  string

	failLeft atomic.Int64

	mu   sync.Mutex
	keys map[string]*storedKey

	srv *http.Server
	ln  net.Listener
	url string
}

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// New generates the mock's CA and keys and loads the state file if any.
func New(opts Options) (*Server, error) {
	if opts.StateDir != "" && opts.StateFile == "" {
		opts.StateFile = filepath.Join(opts.StateDir, "state.json")
	}
	s := &Server{opts: opts, log: opts.Logger, keys: map[string]*storedKey{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.opts.TokenTTL <= 0 {
		s.opts.TokenTTL = 8 * time.Hour
	}
	s.failLeft.Store(int64(opts.FailFirst))
	now := s.now()
	notBefore, notAfter := now.Add(-time.Hour), now.Add(10*365*24*time.Hour)

	caKey, caDER, err := loadOrMakeCA(opts.StateDir, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	s.caCert, _ = x509.ParseCertificate(caDER)
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	dns := append([]string{"localhost"}, opts.Hostnames...)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	leaf := func(cn string, pub any, usage x509.ExtKeyUsage) ([]byte, error) {
		t := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter,
			DNSNames: dns, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		return x509.CreateCertificate(rand.Reader, t, s.caCert, pub, caKey)
	}
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tlsDER, err := leaf("chestfs mock-kms", &tlsKey.PublicKey, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, fmt.Errorf("mockkms: TLS certificate: %w", err)
	}
	s.tlsCert = tls.Certificate{Certificate: [][]byte{tlsDER, caDER}, PrivateKey: tlsKey}

	if s.kvSigner, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	kvDER, err := leaf("chestfs mock-kms key release signer", &s.kvSigner.PublicKey, x509.ExtKeyUsageAny)
	if err != nil {
		return nil, fmt.Errorf("mockkms: signing certificate: %w", err)
	}
	s.kvChain = [][]byte{kvDER, caDER}

	if s.maaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	maaTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "chestfs mock attestation signer"},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	if s.maaCert, err = x509.CreateCertificate(rand.Reader, maaTmpl, maaTmpl, &s.maaKey.PublicKey, s.maaKey); err != nil {
		return nil, fmt.Errorf("mockkms: attestation signer: %w", err)
	}
	s.maaKID = thumbprint(s.maaCert)

	if opts.StateFile != "" {
		if err := s.loadState(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// CAPEM is the CA that signs the server's TLS and release-signing
// certificates: give it to the client (Options.CAPEM, --ca).
func (s *Server) CAPEM() []byte { return append([]byte(nil), s.caPEM...) }

// ErrInsecure: a listen address other than loopback without Options.Insecure.
var ErrInsecure = errors.New("mock-kms listens only on loopback unless Insecure is set")

// loopbackAddr reports whether addr ("host:port") binds only loopback: an
// empty host or 0.0.0.0 / :: is every interface. Names are resolved, as
// net.Listen will, and all their addresses must be loopback.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
// Addresses other than loopback need Options.Insecure.
func (s *Server) Start(addr string) error {
	if s.srv != nil {
		return errors.New("mockkms: already started")
	}
	if !s.opts.Insecure && !loopbackAddr(addr) {
		return fmt.Errorf("mockkms: listen %q: %w", addr, ErrInsecure)
	}
	if s.opts.Insecure && !loopbackAddr(addr) {
		s.log.Warn("INSECURE: mock-kms listening beyond loopback; it releases keys to forgeable fake evidence", "addr", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mockkms: %w", err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.ln = ln
	s.url = "https://" + net.JoinHostPort(host, port)
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{s.tlsCert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("mock-kms stopped", "err", err)
		}
	}()
	s.log.Info("mock-kms listening", "url", s.url)
	return nil
}

// Serve starts on addr and blocks until ctx is done, then shuts down.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if err := s.Start(addr); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

// URL is the server's base URL, e.g. https://127.0.0.1:40123 (after Start).
func (s *Server) URL() string { return s.url }

// Endpoint is URL without the scheme: the form the key blob uses.
func (s *Server) Endpoint() string {
	if len(s.url) > len("https://") {
		return s.url[len("https://"):]
	}
	return ""
}

// KeyBlobJSON returns a key blob pointing at this mock for key name
// (kty oct-HSM unless given).
func (s *Server) KeyBlobJSON(name, kty string) []byte {
	if kty == "" {
		kty = "oct-HSM"
	}
	return fmt.Appendf(nil, `{"kid":%q,"kty":%q,"authority":{"endpoint":%q},"akv":{"endpoint":%q}}`,
		name, kty, s.Endpoint(), s.Endpoint())
}

// Close stops the server.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	return err
}

// Handler is the mock's HTTP handler (without TLS), for embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /attest/SevSnpVm", s.handleAttest)
	mux.HandleFunc("POST /attest/AzureGuest", s.handleGuestAttest) // vTPM guests: guest.go
	mux.HandleFunc("GET /certs", s.handleCerts)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.handleOpenID)
	mux.HandleFunc("PUT /keys/{name}", s.handleImport)
	mux.HandleFunc("POST /keys/{name}/release", s.handleRelease)
	mux.HandleFunc("POST /keys/{name}/{version}/release", s.handleRelease)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.failLeft.Load() > 0 && s.failLeft.Add(-1) >= 0 {
			writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "injected failure")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		mux.ServeHTTP(w, r)
	})
}

// WriteCAFile writes CAPEM to path (mode 0644: it is public).
func (s *Server) WriteCAFile(path string) error {
	return os.WriteFile(path, s.caPEM, 0o644)
}

// loadOrMakeCA returns the mock's CA key and certificate: the ones saved in
// dir if there are any, else new ones (saved in dir when dir is set).
func loadOrMakeCA(dir string, notBefore, notAfter time.Time) (*ecdsa.PrivateKey, []byte, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if dir != "" {
		certPEM, err1 := os.ReadFile(certPath)
		keyPEM, err2 := os.ReadFile(keyPath)
		if err1 == nil && err2 == nil {
			cb, _ := pem.Decode(certPEM)
			kb, _ := pem.Decode(keyPEM)
			if cb == nil || kb == nil {
				return nil, nil, fmt.Errorf("mockkms: %s: not PEM", dir)
			}
			key, err := x509.ParseECPrivateKey(kb.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("mockkms: %s: %w", keyPath, err)
			}
			if _, err := x509.ParseCertificate(cb.Bytes); err != nil {
				return nil, nil, fmt.Errorf("mockkms: %s: %w", certPath, err)
			}
			return key, cb.Bytes, nil
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "chestfs mock-kms CA"},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("mockkms: CA: %w", err)
	}
	if dir != "" {
		der, err := x509.MarshalECPrivateKey(caKey)
		if err != nil {
			return nil, nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("mockkms: state dir: %w", err)
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, nil, fmt.Errorf("mockkms: %w", err)
		}
		if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
			return nil, nil, fmt.Errorf("mockkms: %w", err)
		}
	}
	return caKey, caDER, nil
}
