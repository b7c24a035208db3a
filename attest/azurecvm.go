package attest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
)

// DefaultTPMDevice is the kernel's TPM resource manager.
const DefaultTPMDevice = "/dev/tpmrm0"

// tcgLogPath is the measured-boot event log the kernel exports.
const tcgLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// AzureCVMOptions configure the azure-cvm provider. The zero value is the
// real thing.
type AzureCVMOptions struct {
	// Device is the TPM device (default DefaultTPMDevice).
	Device string
	// RefreshReport asks the paravisor for a fresh HCL report (64 bytes of
	// random user data to NV HCLUserDataNVIndex) before reading it. The
	// boot-time report is enough to bind the AK; a fresh one carries the
	// current TCB.
	RefreshReport bool
	// THIMURL overrides DefaultTHIMURL (the VCEK chain from the instance
	// metadata service); HTTPClient the client for it.
	THIMURL    string
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// AzureCVM is the "azure-cvm" provider: the vTPM of an Azure confidential
// VM (SEV-SNP behind the paravisor), attested through AzureGuest.
type AzureCVM struct {
	opts AzureCVMOptions
	log  *slog.Logger
}

// NewAzureCVM returns the azure-cvm provider; the TPM is opened per release.
func NewAzureCVM(opts AzureCVMOptions) *AzureCVM {
	if opts.Device == "" {
		opts.Device = DefaultTPMDevice
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &AzureCVM{opts: opts, log: log}
}

// Evidence is not used by vTPM providers.
func (p *AzureCVM) Evidence(context.Context, []byte) (*Evidence, error) { return nil, ErrGuestOnly }

// OpenGuest opens the vTPM and collects the evidence.
func (p *AzureCVM) OpenGuest(ctx context.Context) (GuestSession, error) {
	rwc, err := openTPM(p.opts.Device)
	if err != nil {
		return nil, fmt.Errorf("attest: azure-cvm: open %s: %w", p.opts.Device, err)
	}
	if p.opts.RefreshReport {
		if err := refreshHCLReport(ctx, rwc); err != nil {
			rwc.Close()
			return nil, err
		}
	}
	return collectGuest(ctx, rwc, rwc.Close, collectOptions{
		vcek:   p.vcek,
		tcgLog: func() ([]byte, error) { return readLimitedFile(tcgLogPath, 4<<20) },
		osInfo: ReadOSInfo("/etc/os-release"),
		log:    p.log,
	})
}

// vcek fetches the VCEK chain for the report's REPORTED_TCB from THIM.
func (p *AzureCVM) vcek(ctx context.Context, report []byte) ([]byte, error) {
	tcb, err := ReportedTCB(report)
	if err != nil {
		return nil, err
	}
	h, err := FetchTHIM(ctx, p.opts.HTTPClient, p.opts.THIMURL)
	if err != nil {
		return nil, fmt.Errorf("attest: no VCEK certificate for REPORTED_TCB %016x: %w", tcb, err)
	}
	if !h.Matches(tcb) {
		return nil, fmt.Errorf("attest: THIM VCEK is for TCB %s, the HCL report's REPORTED_TCB is %016x", h.TCBM, tcb)
	}
	return h.ChainPEM(), nil
}

// refreshHCLReport writes random user data to NV HCLUserDataNVIndex and
// waits (up to 10 s) for the paravisor to publish a report carrying it.
func refreshHCLReport(ctx context.Context, rw io.ReadWriter) error {
	ud := make([]byte, 64)
	if _, err := rand.Read(ud); err != nil {
		return err
	}
	if _, err := tpm2.NVReadPublic(rw, HCLUserDataNVIndex); err != nil {
		attrs := tpm2.AttrOwnerWrite | tpm2.AttrOwnerRead
		if err := tpm2.NVDefineSpace(rw, tpm2.HandleOwner, HCLUserDataNVIndex, "", "", nil, attrs, 64); err != nil {
			return fmt.Errorf("attest: define NV 0x01400002 for a fresh HCL report: %w", err)
		}
	}
	if err := tpm2.NVWrite(rw, tpm2.HandleOwner, HCLUserDataNVIndex, "", ud, 0); err != nil {
		return fmt.Errorf("attest: write NV 0x01400002 for a fresh HCL report: %w", err)
	}
	want := hex.EncodeToString(ud)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, r, err := readHCLReport(rw); err == nil {
			if c, err := ParseRuntimeClaims(r.RuntimeData); err == nil && c.UserData == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("attest: the paravisor did not publish a fresh HCL report within 10 s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func readLimitedFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s larger than %d bytes", path, max)
	}
	return b, nil
}
