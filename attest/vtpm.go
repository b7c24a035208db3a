package attest

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

// GuestEvidence is what Azure Attestation's AzureGuest endpoint needs to
// attest a confidential VM through its vTPM (Microsoft's guest attestation
// protocol 2.0): the HCL report (hardware report + runtime claims carrying
// the AK), a quote of GuestPCRs signed by the AK, and an ephemeral TPM
// encryption key certified by the AK, which Azure Attestation encrypts its
// token to and puts in the token's x-ms-runtime for Key Vault to wrap to.
type GuestEvidence struct {
	HCLReport []byte     // raw NV contents
	HCL       *HCLReport // parsed, binding checked
	VCEKChain []byte     // PEM VCEK, ASK, ARK for the SNP report
	AKPub     []byte     // TPM2B_PUBLIC of the AK
	AKCert    []byte     // DER, from AKCertNVIndex; nil if absent
	PCRs      []PCRValue // SHA-256 values of GuestPCRs
	Quote     []byte     // TPMS_ATTEST
	QuoteSig  []byte     // RSASSA signature bytes
	EncKeyPub []byte     // TPM2B_PUBLIC of the ephemeral key
	// EncKeyCertifyInfo / EncKeyCertifySig: TPM2_Certify of the ephemeral key by the AK.
	EncKeyCertifyInfo []byte
	EncKeyCertifySig  []byte
	TCGLog            []byte // measured-boot event log, nil if unreadable
	OS                OSInfo
	// Fake marks evidence from the insecure tpm-sim provider.
	Fake bool
}

// OSInfo describes the guest OS as the AzureGuest request does.
type OSInfo struct {
	Type         string // "Linux"
	Distro       string
	VersionMajor uint32
	VersionMinor uint32
	Build        string
}

// GuestSession is one attestation on a vTPM: its evidence, and the
// ephemeral key that decrypts what Azure sends back. The key lives in the
// TPM and decrypts only while the quoted PCRs are unchanged. Close flushes it.
type GuestSession interface {
	crypto.Decrypter
	Evidence() *GuestEvidence
	Close() error
}

// GuestProvider is a provider for vTPM guests (azure-cvm, tpm-sim): key
// release goes through AzureGuest attestation and a TPM-bound key instead
// of a SEV-SNP report bound to runtime data.
type GuestProvider interface {
	Provider
	OpenGuest(ctx context.Context) (GuestSession, error)
}

// ErrGuestOnly: Evidence was called on a vTPM provider.
var ErrGuestOnly = errors.New("attest: a vTPM provider attests through AzureGuest (skr.ReleaseSecret), not with a bare SEV-SNP report")

// ErrNoHCLReport: the TPM has no HCL report (not an Azure confidential VM).
var ErrNoHCLReport = errors.New("attest: the TPM has no HCL report at NV index 0x01400001: not an Azure confidential VM")

// tpmSession implements GuestSession on a TPM.
type tpmSession struct {
	rw     io.ReadWriter
	closer func() error
	ev     *GuestEvidence
	eph    tpmutil.Handle
	ephPub *rsa.PublicKey
}

// collectOptions tune collectGuest.
type collectOptions struct {
	// vcek returns the PEM chain for the SNP report.
	vcek   func(ctx context.Context, snpReport []byte) ([]byte, error)
	tcgLog func() ([]byte, error)
	osInfo OSInfo
	log    *slog.Logger
}

// readHCLReport reads and parses the HCL report and checks its binding.
func readHCLReport(rw io.ReadWriter) ([]byte, *HCLReport, error) {
	if _, err := tpm2.NVReadPublic(rw, HCLReportNVIndex); err != nil {
		return nil, nil, fmt.Errorf("%w (%v)", ErrNoHCLReport, err)
	}
	raw, err := tpm2.NVReadEx(rw, HCLReportNVIndex, tpm2.HandleOwner, "", 0)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: reading the HCL report (NV 0x01400001): %w", err)
	}
	r, err := ParseHCLReport(raw)
	if err != nil {
		return nil, nil, err
	}
	if err := r.CheckBinding(); err != nil {
		return nil, nil, err
	}
	return raw, r, nil
}

// readAK loads the AK's public area and checks it is the HCLAkPub of the report.
func readAK(rw io.ReadWriter, hcl *HCLReport) ([]byte, error) {
	claims, err := ParseRuntimeClaims(hcl.RuntimeData)
	if err != nil {
		return nil, err
	}
	want, err := claims.RSAKey(HCLAKPubKID)
	if err != nil {
		return nil, err
	}
	pub, _, _, err := tpm2.ReadPublic(rw, AKHandle)
	if err != nil {
		return nil, fmt.Errorf("attest: no attestation key at TPM handle 0x81000003: %w", err)
	}
	k, err := rsaPublic(pub)
	if err != nil || !k.Equal(want) {
		return nil, errors.New("attest: the TPM's attestation key (0x81000003) is not the HCLAkPub of the HCL report")
	}
	return EncodeTPM2BPublic(pub)
}

// readPCRs reads the SHA-256 values of GuestPCRs.
func readPCRs(rw io.ReadWriter) ([]PCRValue, error) {
	m, err := tpm2.ReadPCRs(rw, pcrSelection(GuestPCRs))
	if err != nil {
		return nil, fmt.Errorf("attest: reading PCRs: %w", err)
	}
	out := make([]PCRValue, 0, len(GuestPCRs))
	for _, i := range GuestPCRs {
		d, ok := m[i]
		if !ok {
			return nil, fmt.Errorf("attest: the TPM returned no SHA-256 value for PCR %d", i)
		}
		out = append(out, PCRValue{Index: i, Digest: d})
	}
	return out, nil
}

// quote quotes GuestPCRs with the AK and reads their values, retrying when
// a PCR moved between the quote and the read.
func quote(rw io.ReadWriter, ak *rsa.PublicKey) (q, sig []byte, pcrs []PCRValue, err error) {
	for try := 0; try < 3; try++ {
		var rawSig []byte
		q, rawSig, err = tpm2.QuoteRaw(rw, AKHandle, "", "", nil, pcrSelection(GuestPCRs), tpm2.AlgNull)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("attest: TPM quote: %w", err)
		}
		s, derr := tpm2.DecodeSignature(bytes.NewBuffer(rawSig))
		if derr != nil || s.RSA == nil {
			return nil, nil, nil, fmt.Errorf("attest: TPM quote signature is not RSA: %v", derr)
		}
		if pcrs, err = readPCRs(rw); err != nil {
			return nil, nil, nil, err
		}
		if err = VerifyTPMQuote(ak, q, s.RSA.Signature, pcrs, GuestPCRs, nil); err == nil {
			return q, s.RSA.Signature, pcrs, nil
		}
	}
	return nil, nil, nil, fmt.Errorf("attest: the PCRs keep changing under the quote: %w", err)
}

// ephemeralTemplate is the key Azure Attestation encrypts to: an RSA-2048
// decryption key, bound to this TPM, usable only through PolicyPCR on the
// quoted values. Created in the null hierarchy, it dies with the boot.
func ephemeralTemplate(pcrs []PCRValue) tpm2.Public {
	return tpm2.Public{
		Type:       tpm2.AlgRSA,
		NameAlg:    tpm2.AlgSHA256,
		Attributes: tpm2.FlagDecrypt | tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin | tpm2.FlagNoDA,
		AuthPolicy: PCRPolicyDigest(pcrs),
		RSAParameters: &tpm2.RSAParams{
			Symmetric:  &tpm2.SymScheme{Alg: tpm2.AlgNull},
			Sign:       &tpm2.SigScheme{Alg: tpm2.AlgNull},
			KeyBits:    2048,
			ModulusRaw: make([]byte, 256),
		},
	}
}

// collectGuest gathers GuestEvidence on rw and returns a session holding
// the ephemeral key; closer releases the TPM.
func collectGuest(ctx context.Context, rw io.ReadWriter, closer func() error, o collectOptions) (_ *tpmSession, err error) {
	s := &tpmSession{rw: rw, closer: closer, ev: &GuestEvidence{OS: o.osInfo}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	ev := s.ev
	if ev.HCLReport, ev.HCL, err = readHCLReport(rw); err != nil {
		return nil, err
	}
	if ev.HCL.ReportType != HCLReportSNP {
		return nil, fmt.Errorf("attest: the HCL report holds an Intel TDX report; only SEV-SNP confidential VMs are supported")
	}
	if ev.AKPub, err = readAK(rw, ev.HCL); err != nil {
		return nil, err
	}
	akPub, _, _ := DecodeTPM2BPublic(ev.AKPub)
	ak, _ := rsaPublic(akPub)
	if cert, cerr := tpm2.NVReadEx(rw, AKCertNVIndex, tpm2.HandleOwner, "", 0); cerr == nil {
		ev.AKCert = cert
	} else {
		o.log.Debug("no AK certificate in the vTPM", "err", cerr)
	}
	if ev.Quote, ev.QuoteSig, ev.PCRs, err = quote(rw, ak); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, pubRaw, _, _, _, _, err := tpm2.CreatePrimaryEx(rw, tpm2.HandleNull, tpm2.PCRSelection{}, "", "", ephemeralTemplate(ev.PCRs))
	if err != nil {
		return nil, fmt.Errorf("attest: creating the ephemeral TPM key: %w", err)
	}
	s.eph = h
	ev.EncKeyPub = append([]byte{byte(len(pubRaw) >> 8), byte(len(pubRaw))}, pubRaw...)
	info, rawSig, err := tpm2.Certify(rw, "", "", h, AKHandle, nil)
	if err != nil {
		return nil, fmt.Errorf("attest: certifying the ephemeral TPM key: %w", err)
	}
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(rawSig))
	if err != nil || sig.RSA == nil {
		return nil, fmt.Errorf("attest: ephemeral key certification signature is not RSA: %v", err)
	}
	ev.EncKeyCertifyInfo, ev.EncKeyCertifySig = info, sig.RSA.Signature
	ck, err := VerifyCertifiedKey(ak, ev.EncKeyPub, info, ev.EncKeyCertifySig)
	if err != nil {
		return nil, err
	}
	s.ephPub = ck.Public
	if o.tcgLog != nil {
		if ev.TCGLog, err = o.tcgLog(); err != nil {
			o.log.Info("no TPM event log; sending none", "err", err)
			ev.TCGLog, err = nil, nil
		}
	}
	if ev.VCEKChain, err = o.vcek(ctx, ev.HCL.HWReport); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *tpmSession) Evidence() *GuestEvidence { return s.ev }

// Public is the ephemeral key.
func (s *tpmSession) Public() crypto.PublicKey { return s.ephPub }

// Decrypt decrypts with the ephemeral key inside the TPM, in a policy
// session that proves the quoted PCRs still hold. opts: *rsa.OAEPOptions
// (empty label; SHA-1, SHA-256 or SHA-384), or nil for RSAES-PKCS1-v1_5.
func (s *tpmSession) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if s.ephPub == nil {
		return nil, errors.New("attest: TPM session is closed")
	}
	scheme := &tpm2.AsymScheme{Alg: tpm2.AlgRSAES}
	switch o := opts.(type) {
	case nil: // RSAES-PKCS1-v1_5: what AzureGuest encrypts its token key with
	case *rsa.OAEPOptions:
		if len(o.Label) != 0 {
			return nil, errors.New("attest: TPM decrypt: OAEP labels are not supported")
		}
		var alg tpm2.Algorithm
		switch o.Hash {
		case crypto.SHA1:
			alg = tpm2.AlgSHA1
		case crypto.SHA256:
			alg = tpm2.AlgSHA256
		case crypto.SHA384:
			alg = tpm2.AlgSHA384
		default:
			return nil, fmt.Errorf("attest: TPM decrypt: OAEP hash %v not supported", o.Hash)
		}
		scheme = &tpm2.AsymScheme{Alg: tpm2.AlgOAEP, Hash: alg}
	default:
		return nil, fmt.Errorf("attest: TPM decrypt: options %T not supported", opts)
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sess, _, err := tpm2.StartAuthSession(s.rw, tpm2.HandleNull, tpm2.HandleNull, nonce, nil, tpm2.SessionPolicy, tpm2.AlgNull, tpm2.AlgSHA256)
	if err != nil {
		return nil, fmt.Errorf("attest: TPM policy session: %w", err)
	}
	defer tpm2.FlushContext(s.rw, sess)
	if err := tpm2.PolicyPCR(s.rw, sess, pcrComposite(s.ev.PCRs), pcrSelection(GuestPCRs)); err != nil {
		return nil, fmt.Errorf("attest: TPM refuses the ephemeral key: the PCRs changed since the quote: %w", err)
	}
	out, err := tpm2.RSADecryptWithSession(s.rw, sess, s.eph, "", msg, scheme, "")
	if err != nil {
		return nil, fmt.Errorf("attest: TPM decrypt: %w", err)
	}
	return out, nil
}

// Close flushes the ephemeral key and releases the TPM.
func (s *tpmSession) Close() error {
	if s.eph != 0 {
		tpm2.FlushContext(s.rw, s.eph)
		s.eph = 0
	}
	s.ephPub = nil
	if s.closer != nil {
		c := s.closer
		s.closer = nil
		return c()
	}
	return nil
}

// ReadOSInfo reads /etc/os-release as Microsoft's library does (NAME, VERSION_ID).
func ReadOSInfo(path string) OSInfo {
	info := OSInfo{Type: "Linux", Distro: "Linux", VersionMajor: 1, Build: "NotApplication"}
	f, err := os.Open(path)
	if err != nil {
		return info
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "NAME":
			info.Distro = v
		case "VERSION_ID":
			maj, min, _ := strings.Cut(v, ".")
			if n, err := strconv.ParseUint(maj, 10, 32); err == nil && n > 0 {
				info.VersionMajor = uint32(n)
			}
			if n, err := strconv.ParseUint(min, 10, 32); err == nil {
				info.VersionMinor = uint32(n)
			}
		}
	}
	return info
}
