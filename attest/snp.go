package attest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/client"
)

// SNPOptions configure the SEV-SNP provider. The zero value is the real thing.
type SNPOptions struct {
	// Context is the UVM security context; nil: LoadSecurityContext on each call.
	Context *SecurityContext
	// THIMURL overrides DefaultTHIMURL.
	THIMURL    string
	HTTPClient *http.Client
	// Quote overrides the device: it returns a raw report (optionally followed
	// by a certificate table) for reportData.
	Quote func(reportData [64]byte) ([]byte, error)
	// CertCache is the fallback for a VCEK chain whose TCB does not match
	// the report's (the sidecar's azure_info.certcache); nil: none.
	CertCache *CertCache
	// RetryBase is the first delay between certificate fetch attempts
	// (default 2 s, doubling; 3 attempts).
	RetryBase time.Duration
	Logger    *slog.Logger
}

// SNP gets reports from the SEV-SNP guest device (configfs-tsm or /dev/sev-guest).
type SNP struct{ opts SNPOptions }

// NewSNP returns the real SEV-SNP provider.
func NewSNP(opts SNPOptions) *SNP { return &SNP{opts: opts} }

// WithCertCache returns a copy of p that falls back to c for the VCEK chain.
func (p *SNP) WithCertCache(c *CertCache) *SNP {
	o := p.opts
	o.CertCache = c
	return &SNP{opts: o}
}

// ReportedTCB returns the REPORTED_TCB field of a raw report.
func ReportedTCB(report []byte) (uint64, error) {
	if len(report) < abi.ReportSize {
		return 0, fmt.Errorf("attest: SNP report is %d bytes, want %d", len(report), abi.ReportSize)
	}
	return binary.LittleEndian.Uint64(report[offReportedTCB:]), nil
}

// HostData returns the HOST_DATA field of a raw report.
func HostData(report []byte) ([32]byte, error) {
	var h [32]byte
	if len(report) < abi.ReportSize {
		return h, fmt.Errorf("attest: SNP report is %d bytes, want %d", len(report), abi.ReportSize)
	}
	copy(h[:], report[offHostData:])
	return h, nil
}

func deviceQuote(rd [64]byte) ([]byte, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("attest: no SEV-SNP guest device (configfs-tsm or /dev/sev-guest): %w", err)
	}
	q, err := qp.GetRawQuote(rd)
	if err != nil {
		return nil, fmt.Errorf("attest: SEV-SNP report: %w", err)
	}
	return q, nil
}

// Evidence gets a fresh report with REPORT_DATA = sha256(runtimeData)||0^32
// and the VCEK chain matching its REPORTED_TCB.
func (p *SNP) Evidence(ctx context.Context, runtimeData []byte) (*Evidence, error) {
	log := p.opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sc := p.opts.Context
	if sc == nil {
		var err error
		sc, err = LoadSecurityContext()
		if err != nil && !errors.Is(err, ErrNoSecurityContext) {
			return nil, err
		}
	}
	quote := p.opts.Quote
	if quote == nil {
		quote = deviceQuote
	}
	raw, err := quote(ReportData(runtimeData))
	if err != nil {
		return nil, err
	}
	if len(raw) < abi.ReportSize {
		return nil, fmt.Errorf("attest: SEV-SNP report is %d bytes, want %d", len(raw), abi.ReportSize)
	}
	report := raw[:abi.ReportSize:abi.ReportSize]
	tcb, _ := ReportedTCB(report)
	ev := &Evidence{Report: report, RuntimeData: runtimeData}
	if sc != nil {
		ev.ReferenceInfo = sc.ReferenceInfo
		if sc.HostAMDCert != nil {
			if sc.HostAMDCert.Matches(tcb) {
				ev.CertChain = sc.HostAMDCert.ChainPEM()
				return ev, nil
			}
			log.Info("UVM VCEK does not match the report's TCB; asking THIM", "tcbm", sc.HostAMDCert.TCBM, "reported_tcb", fmt.Sprintf("%016x", tcb))
		}
	}
	chain, err := p.fetchChain(ctx, report, tcb, log)
	if err != nil {
		return nil, err
	}
	ev.CertChain = chain
	return ev, nil
}

// fetchChain asks THIM for the VCEK chain, retried as the sidecar does, and
// when THIM fails or serves another TCB's certificate, the CertCache.
func (p *SNP) fetchChain(ctx context.Context, report []byte, tcb uint64, log *slog.Logger) ([]byte, error) {
	client := p.opts.HTTPClient
	if client == nil {
		client = thimClient
	}
	url := p.opts.THIMURL
	if url == "" {
		url = DefaultTHIMURL
	}
	r := retryOptions{base: p.opts.RetryBase}
	var thimErr error
	body, err := fetchRetry(ctx, client, url, http.Header{"Metadata": {"true"}}, r)
	if err == nil {
		var h *HostAMDCert
		if h, err = ParseHostAMDCert(body); err == nil {
			if h.Matches(tcb) {
				return h.ChainPEM(), nil
			}
			err = fmt.Errorf("VCEK is for TCB %s, the report's REPORTED_TCB is %016x", h.TCBM, tcb)
		}
	}
	thimErr = fmt.Errorf("THIM: %w", err)
	if p.opts.CertCache == nil {
		return nil, fmt.Errorf("attest: no VCEK certificate for REPORTED_TCB %016x: %w (set azure_info.certcache for a fallback)", tcb, thimErr)
	}
	log.Info("THIM gave no VCEK for the report's TCB; asking the certificate cache", "reason", thimErr, "certcache", p.opts.CertCache.EndpointType)
	chain, err := p.opts.CertCache.fetchChain(ctx, client, report, r)
	if err != nil {
		return nil, fmt.Errorf("attest: no VCEK certificate for REPORTED_TCB %016x: %v; %w", tcb, thimErr, err)
	}
	return chain, nil
}
