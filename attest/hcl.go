package attest

import (
	"bytes"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// The HCL report is what the Azure confidential VM paravisor (HCL) leaves in
// the vTPM's NV index HCLReportNVIndex: a 0x20-byte header, the hardware
// report area (an SEV-SNP report, or a TDX TDREPORT padded to the same
// size), then IGVM request data whose variable part is the runtime-claims
// JSON. The hardware report's REPORT_DATA is sha256(runtime claims)
// followed by zeros, which binds the vTPM's attestation key (in the claims)
// to the hardware. Layout from Microsoft's guest attestation library
// (SnpVmReport.h: ATTESTATION_REPORT) and checked against public samples.
const (
	// HCLReportNVIndex holds the HCL report.
	HCLReportNVIndex = 0x01400001
	// HCLUserDataNVIndex takes 64 bytes of user data; the HCL then writes a
	// fresh report with them in the runtime claims' "user-data".
	HCLUserDataNVIndex = 0x01400002
	// AKCertNVIndex holds the vTPM attestation key's certificate (DER).
	AKCertNVIndex = 0x01C101D0
	// AKHandle is the persistent handle of the vTPM attestation key.
	AKHandle = 0x81000003

	hclHeaderSize  = 0x20
	hclHWAreaSize  = 0x4A0 // 1184: an SNP report; a TDREPORT is padded
	hclIGVMOffset  = hclHeaderSize + hclHWAreaSize
	hclIGVMFixed   = 20 // DataSize, Version, ReportType, HashType, VariableDataSize
	hclVarOffset   = hclIGVMOffset + hclIGVMFixed
	hclSignature   = "HCLA"
	tdReportSize   = 1024
	maxHCLVarData  = 64 << 10
	hclHashSHA256  = 1
	offTDReportDat = 0x80 // REPORTDATA inside REPORTMACSTRUCT
)

// HCL hardware report types (IGVM_REPORT_TYPE).
const (
	HCLReportSNP = 2
	HCLReportTVM = 3
	HCLReportTDX = 4
)

// HCL runtime-claims key ids.
const (
	HCLAKPubKID = "HCLAkPub"
	HCLEKPubKID = "HCLEkPub"
)

// HCLReport is a parsed HCL report. Slices point into the parsed buffer.
type HCLReport struct {
	Version     uint32
	RequestType uint32
	ReportType  uint32 // HCLReportSNP or HCLReportTDX
	HashType    uint32 // 1 SHA-256, 2 SHA-384, 3 SHA-512
	// HWReport is the SNP report (1184 bytes) or the TDREPORT (1024 bytes).
	HWReport []byte
	// RuntimeData is the runtime-claims JSON, exactly as hashed into REPORT_DATA.
	RuntimeData []byte
}

// ErrHCLReport marks an HCL report that cannot be parsed.
var ErrHCLReport = errors.New("attest: bad HCL report")

// ParseHCLReport parses the bytes read from HCLReportNVIndex. Trailing
// bytes after the runtime claims (the NV index is larger than the report)
// are ignored.
func ParseHCLReport(b []byte) (*HCLReport, error) {
	if len(b) < hclVarOffset {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte fixed part", ErrHCLReport, len(b), hclVarOffset)
	}
	if string(b[:4]) != hclSignature {
		return nil, fmt.Errorf("%w: signature %q, want %q", ErrHCLReport, b[:4], hclSignature)
	}
	le := binary.LittleEndian
	r := &HCLReport{Version: le.Uint32(b[4:]), RequestType: le.Uint32(b[12:])}
	igvm := b[hclIGVMOffset:]
	dataSize := le.Uint32(igvm[0:])
	r.ReportType = le.Uint32(igvm[8:])
	r.HashType = le.Uint32(igvm[12:])
	varSize := le.Uint32(igvm[16:])
	if varSize > maxHCLVarData {
		return nil, fmt.Errorf("%w: runtime claims of %d bytes (limit %d)", ErrHCLReport, varSize, maxHCLVarData)
	}
	if uint64(hclVarOffset)+uint64(varSize) > uint64(len(b)) {
		return nil, fmt.Errorf("%w: runtime claims of %d bytes run past the %d-byte report", ErrHCLReport, varSize, len(b))
	}
	if uint64(dataSize) != uint64(hclIGVMFixed)+uint64(varSize) {
		return nil, fmt.Errorf("%w: IGVM data size %d does not match %d-byte runtime claims", ErrHCLReport, dataSize, varSize)
	}
	switch r.ReportType {
	case HCLReportSNP:
		r.HWReport = b[hclHeaderSize : hclHeaderSize+hclHWAreaSize : hclHeaderSize+hclHWAreaSize]
	case HCLReportTDX:
		r.HWReport = b[hclHeaderSize : hclHeaderSize+tdReportSize : hclHeaderSize+tdReportSize]
	default:
		return nil, fmt.Errorf("%w: hardware report type %d (want %d SEV-SNP or %d TDX)", ErrHCLReport, r.ReportType, HCLReportSNP, HCLReportTDX)
	}
	r.RuntimeData = b[hclVarOffset : hclVarOffset+int(varSize) : hclVarOffset+int(varSize)]
	return r, nil
}

// ReportData is the hardware report's REPORT_DATA field.
func (r *HCLReport) ReportData() []byte {
	if r.ReportType == HCLReportTDX {
		return r.HWReport[offTDReportDat : offTDReportDat+64]
	}
	return r.HWReport[offReportData : offReportData+64]
}

// CheckBinding verifies that REPORT_DATA is the SHA-256 of the runtime
// claims followed by zeros: only then does the hardware vouch for the claims
// (and so for the attestation key in them).
func (r *HCLReport) CheckBinding() error {
	if r.HashType != hclHashSHA256 {
		return fmt.Errorf("%w: REPORT_DATA hash type %d, only SHA-256 (1) is supported", ErrHCLReport, r.HashType)
	}
	want := ReportData(r.RuntimeData)
	if !bytes.Equal(r.ReportData(), want[:]) {
		return fmt.Errorf("%w: REPORT_DATA is not sha256(runtime claims): the claims are not bound to the hardware report", ErrHCLReport)
	}
	return nil
}

// HCLRuntimeClaims is the runtime-claims JSON of an HCL report.
type HCLRuntimeClaims struct {
	Keys            []HCLKey        `json:"keys"`
	VMConfiguration json.RawMessage `json:"vm-configuration,omitempty"`
	UserData        string          `json:"user-data,omitempty"`
}

// HCLKey is a public RSA JWK of the runtime claims.
type HCLKey struct {
	KID    string   `json:"kid"`
	KeyOps []string `json:"key_ops,omitempty"`
	KTY    string   `json:"kty"`
	E      string   `json:"e"`
	N      string   `json:"n"`
}

// VMConfig is the vm-configuration object of the runtime claims.
type VMConfig struct {
	ConsoleEnabled bool   `json:"console-enabled"`
	SecureBoot     bool   `json:"secure-boot"`
	TPMEnabled     bool   `json:"tpm-enabled"`
	TPMPersisted   *bool  `json:"tpm-persisted,omitempty"`
	VMUniqueID     string `json:"vmUniqueId"`
}

// ParseRuntimeClaims decodes runtime-claims JSON.
func ParseRuntimeClaims(data []byte) (*HCLRuntimeClaims, error) {
	var c HCLRuntimeClaims
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: runtime claims: %v", ErrHCLReport, err)
	}
	return &c, nil
}

// VM decodes the vm-configuration object (zero values when absent).
func (c *HCLRuntimeClaims) VM() (VMConfig, error) {
	var v VMConfig
	if len(c.VMConfiguration) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(c.VMConfiguration, &v); err != nil {
		return v, fmt.Errorf("%w: vm-configuration: %v", ErrHCLReport, err)
	}
	return v, nil
}

// RSAKey returns the RSA key with kid from the runtime claims.
func (c *HCLRuntimeClaims) RSAKey(kid string) (*rsa.PublicKey, error) {
	for _, k := range c.Keys {
		if k.KID != kid {
			continue
		}
		if k.KTY != "RSA" {
			return nil, fmt.Errorf("%w: runtime claims key %s is %q, want RSA", ErrHCLReport, kid, k.KTY)
		}
		n, err1 := DecodeBase64(k.N)
		e, err2 := DecodeBase64(k.E)
		if err1 != nil || err2 != nil || len(n) < 128 || len(n) > 1024 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: runtime claims key %s: bad modulus or exponent", ErrHCLReport, kid)
		}
		ev := new(big.Int).SetBytes(e).Int64()
		if ev < 3 || ev%2 == 0 {
			return nil, fmt.Errorf("%w: runtime claims key %s: bad exponent %d", ErrHCLReport, kid, ev)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}, nil
	}
	return nil, fmt.Errorf("%w: runtime claims carry no %s key", ErrHCLReport, kid)
}

// BuildHCLReport assembles an SEV-SNP HCL report around hwReport (1184
// bytes, whose REPORT_DATA the caller set to ReportData(runtime)) and the
// runtime claims; the tpm-sim provider plays the paravisor with it.
func BuildHCLReport(hwReport, runtime []byte) ([]byte, error) {
	if len(hwReport) != hclHWAreaSize {
		return nil, fmt.Errorf("attest: HCL hardware report is %d bytes, want %d", len(hwReport), hclHWAreaSize)
	}
	if len(runtime) > maxHCLVarData {
		return nil, errors.New("attest: HCL runtime claims too large")
	}
	b := make([]byte, hclVarOffset+len(runtime))
	le := binary.LittleEndian
	copy(b, hclSignature)
	le.PutUint32(b[4:], 1)
	le.PutUint32(b[8:], uint32(len(b)-hclHeaderSize))
	le.PutUint32(b[12:], 2) // IGVM_REQUEST_TYPE AkCertRequest, as seen in real reports
	copy(b[hclHeaderSize:], hwReport)
	igvm := b[hclIGVMOffset:]
	le.PutUint32(igvm[0:], uint32(hclIGVMFixed+len(runtime)))
	le.PutUint32(igvm[4:], 1)
	le.PutUint32(igvm[8:], HCLReportSNP)
	le.PutUint32(igvm[12:], hclHashSHA256)
	le.PutUint32(igvm[16:], uint32(len(runtime)))
	copy(b[hclVarOffset:], runtime)
	return b, nil
}
