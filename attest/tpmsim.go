package attest

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

// TPMSimOptions configure the tpm-sim provider.
type TPMSimOptions struct {
	// SecureBoot is the vm-configuration "secure-boot" of the fake runtime
	// claims (default true).
	SecureBoot *bool
	// ExtendPCRs extends these SHA-256 PCRs with these digests after the
	// simulated boot: another boot state than the reference one.
	ExtendPCRs map[int][]byte
	// VMID is the vmUniqueId of the runtime claims.
	VMID   string
	Logger *slog.Logger
}

// TPMSim is the "tpm-sim" provider: go-tpm-tools' TPM 2.0 simulator (the
// reference implementation, in process) provisioned as an Azure
// confidential VM's vTPM: an AK at 0x81000003 and an HCL report whose SEV-SNP
// part is signed by go-sev-guest's public test keys, as the fake provider's.
// Anyone can forge it: it proves nothing and exists for laptops and CI.
type TPMSim struct {
	opts TPMSimOptions
	log  *slog.Logger
}

// NewTPMSim returns the tpm-sim provider and warns that it is insecure.
func NewTPMSim(opts TPMSimOptions) (*TPMSim, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if _, err := fakeChain(); err != nil {
		return nil, err
	}
	log.Warn("INSECURE: using the tpm-sim attestation provider; a simulated vTPM with a fake HCL report signed by public test keys proves nothing")
	return &TPMSim{opts: opts, log: log}, nil
}

// Evidence is not used by vTPM providers.
func (p *TPMSim) Evidence(context.Context, []byte) (*Evidence, error) { return nil, ErrGuestOnly }

// OpenGuest powers up a fresh simulator, provisions it as the paravisor
// would, and collects the evidence. The simulator is process-global: a
// second OpenGuest waits until the first session is closed.
func (p *TPMSim) OpenGuest(ctx context.Context) (GuestSession, error) {
	sim, err := simulator.Get()
	if err != nil {
		return nil, fmt.Errorf("attest: tpm-sim: TPM simulator (needs a cgo build): %w", err)
	}
	chain, err := p.provision(ctx, sim)
	if err != nil {
		sim.Close()
		return nil, err
	}
	p.log.Warn("INSECURE: issuing tpm-sim evidence (simulated vTPM, fake HCL report)")
	s, err := collectGuest(ctx, sim, sim.Close, collectOptions{
		vcek:   func(context.Context, []byte) ([]byte, error) { return chain, nil },
		osInfo: OSInfo{Type: "Linux", Distro: "chestfs tpm-sim", VersionMajor: 1, Build: "NotApplication"},
		log:    p.log,
	})
	if err != nil {
		return nil, err
	}
	s.ev.Fake = true
	return s, nil
}

// provision creates the AK, extends PCRs as asked, and writes the HCL
// report to NV; it returns the fake VCEK chain.
func (p *TPMSim) provision(ctx context.Context, rw *simulator.Simulator) ([]byte, error) {
	for i, d := range p.opts.ExtendPCRs {
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(i), tpm2.AlgSHA256, d, ""); err != nil {
			return nil, fmt.Errorf("attest: tpm-sim: extend PCR %d: %w", i, err)
		}
	}
	h, pub, err := tpm2.CreatePrimary(rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, "", "", akTemplate())
	if err != nil {
		return nil, fmt.Errorf("attest: tpm-sim: create AK: %w", err)
	}
	defer tpm2.FlushContext(rw, h)
	if err := tpm2.EvictControl(rw, "", tpm2.HandleOwner, h, AKHandle); err != nil {
		return nil, fmt.Errorf("attest: tpm-sim: persist AK: %w", err)
	}
	rk, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("attest: tpm-sim: AK is %T, want RSA", pub)
	}
	claims, err := p.runtimeClaims(rk)
	if err != nil {
		return nil, err
	}
	fake, err := NewFake(FakeOptions{Context: &SecurityContext{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	ev, err := fake.Evidence(ctx, claims)
	if err != nil {
		return nil, err
	}
	report, err := BuildHCLReport(ev.Report, claims)
	if err != nil {
		return nil, err
	}
	return ev.CertChain, writeNV(rw, HCLReportNVIndex, report)
}

func (p *TPMSim) runtimeClaims(rk *rsa.PublicKey) ([]byte, error) {
	secureBoot := true
	if p.opts.SecureBoot != nil {
		secureBoot = *p.opts.SecureBoot
	}
	vmid := p.opts.VMID
	if vmid == "" {
		vmid = "00000000-0000-4000-8000-0000CAFEF00D"
	}
	claims := map[string]any{
		"keys": []HCLKey{{KID: HCLAKPubKID, KeyOps: []string{"sign"}, KTY: "RSA",
			E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(rk.E)).Bytes()),
			N: base64.RawURLEncoding.EncodeToString(rk.N.Bytes())}},
		"vm-configuration": map[string]any{"console-enabled": false, "secure-boot": secureBoot,
			"tpm-enabled": true, "tpm-persisted": true, "vmUniqueId": vmid},
		"user-data": hex.EncodeToString(make([]byte, 64)),
	}
	return json.Marshal(claims)
}

// writeNV defines index (owner and index auth, empty) and writes data in
// chunks the TPM accepts.
func writeNV(rw *simulator.Simulator, index tpmutil.Handle, data []byte) error {
	attrs := tpm2.AttrOwnerWrite | tpm2.AttrOwnerRead | tpm2.AttrAuthRead | tpm2.AttrAuthWrite | tpm2.AttrNoDA
	if err := tpm2.NVDefineSpace(rw, tpm2.HandleOwner, index, "", "", nil, attrs, uint16(len(data))); err != nil {
		return fmt.Errorf("attest: tpm-sim: define NV %#x (%d bytes): %w", uint32(index), len(data), err)
	}
	const chunk = 512
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if err := tpm2.NVWrite(rw, tpm2.HandleOwner, index, "", data[off:end], uint16(off)); err != nil {
			return fmt.Errorf("attest: tpm-sim: write NV %#x: %w", uint32(index), err)
		}
	}
	return nil
}

// akTemplate is an Azure-like vTPM attestation key: a restricted RSA-2048
// signing key with RSASSA-SHA256, made by the TPM, fixed to it.
func akTemplate() tpm2.Public {
	return tpm2.Public{
		Type:    tpm2.AlgRSA,
		NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagSign | tpm2.FlagRestricted | tpm2.FlagFixedTPM | tpm2.FlagFixedParent |
			tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth | tpm2.FlagNoDA,
		RSAParameters: &tpm2.RSAParams{
			Sign:    &tpm2.SigScheme{Alg: tpm2.AlgRSASSA, Hash: tpm2.AlgSHA256},
			KeyBits: 2048,
		},
	}
}
