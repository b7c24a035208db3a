package mockkms_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

func tpmSim(t *testing.T, opts attest.TPMSimOptions) *attest.TPMSim {
	t.Helper()
	opts.Logger = quiet
	p, err := attest.NewTPMSim(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func cvmPolicy(t *testing.T, s *mockkms.Server, o skr.CVMPolicyOptions) []byte {
	t.Helper()
	p, err := skr.PolicyForCVM(s.Endpoint(), o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func guestBlob(t *testing.T, s *mockkms.Server, name string) *skr.KeyBlob {
	t.Helper()
	b, err := skr.ParseKeyBlob(s.KeyBlobJSON(name, "oct-HSM"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var zeroPCR = strings.Repeat("0", 64)

// TestGuestReleaseTPMSim is the whole confidential-VM release on the
// simulator: AzureGuest attestation (HCL report, quote and certified key
// verified by mock-kms), the token decrypted in the TPM, the key released
// wrapped to the TPM key and unwrapped there.
func TestGuestReleaseTPMSim(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	pol := cvmPolicy(t, s, skr.CVMPolicyOptions{SecureBoot: true, PCRs: map[int]string{0: zeroPCR, 7: zeroPCR}})
	key := importOct(t, s, "cvmkey", pol)
	got, err := skr.ReleaseSecret(testCtx(t), guestBlob(t, s, "cvmkey"), tpmSim(t, attest.TPMSimOptions{}), clientOpts(s))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Destroy()
	if !bytes.Equal(got.Bytes(), key) {
		t.Fatal("released key differs from the imported one")
	}
}

// TestGuestPolicyMismatch: another boot state or no secure boot is refused
// by the release policy, with the claim named.
func TestGuestPolicyMismatch(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	pol := cvmPolicy(t, s, skr.CVMPolicyOptions{SecureBoot: true, PCRs: map[int]string{7: zeroPCR}})
	importOct(t, s, "cvmkey", pol)
	noSB := false
	for name, tc := range map[string]struct {
		opts  attest.TPMSimOptions
		claim string
	}{
		"pcr7":       {attest.TPMSimOptions{ExtendPCRs: map[int][]byte{7: bytes.Repeat([]byte{1}, 32)}}, "x-chestfs-pcrs.7"},
		"secureboot": {attest.TPMSimOptions{SecureBoot: &noSB}, "claim secureboot"},
	} {
		_, err := skr.ReleaseSecret(testCtx(t), guestBlob(t, s, "cvmkey"), tpmSim(t, tc.opts), clientOpts(s))
		t.Logf("%s: %v", name, err)
		if !errors.Is(err, skr.ErrForbidden) || !strings.Contains(err.Error(), tc.claim) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one 403 line naming %s", name, err, tc.claim)
		}
	}
}

// tamperProvider hands out sessions whose evidence or key is altered.
type tamperProvider struct {
	*attest.TPMSim
	evidence func(*attest.GuestEvidence)
	public   crypto.PublicKey
}

type tamperSession struct {
	attest.GuestSession
	ev     *attest.GuestEvidence
	public crypto.PublicKey
}

func (s *tamperSession) Evidence() *attest.GuestEvidence { return s.ev }
func (s *tamperSession) Public() crypto.PublicKey {
	if s.public != nil {
		return s.public
	}
	return s.GuestSession.Public()
}

func (p *tamperProvider) OpenGuest(ctx context.Context) (attest.GuestSession, error) {
	gs, err := p.TPMSim.OpenGuest(ctx)
	if err != nil {
		return nil, err
	}
	ev := *gs.Evidence()
	if p.evidence != nil {
		p.evidence(&ev)
	}
	return &tamperSession{GuestSession: gs, ev: &ev, public: p.public}, nil
}

// TestGuestBadEvidence: mock-kms refuses tampered vTPM evidence with one
// clear line, and the client refuses a token for another key.
func TestGuestBadEvidence(t *testing.T) {
	s := startMock(t, mockkms.Options{AcceptFakeSNP: true})
	importOct(t, s, "cvmkey", cvmPolicy(t, s, skr.CVMPolicyOptions{}))
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-1] ^= 1; return b }
	cases := map[string]struct {
		p    *tamperProvider
		want string
	}{
		"quote": {&tamperProvider{evidence: func(e *attest.GuestEvidence) { e.Quote = flip(e.Quote) }}, "PCR quote is not signed by the attestation key"},
		"pcr": {&tamperProvider{evidence: func(e *attest.GuestEvidence) {
			e.PCRs = append([]attest.PCRValue(nil), e.PCRs...)
			e.PCRs[3].Digest = bytes.Repeat([]byte{3}, 32)
		}}, "do not match the quote's PCR digest"},
		"fewer pcrs": {&tamperProvider{evidence: func(e *attest.GuestEvidence) { e.PCRs = e.PCRs[:7] }}, "PCR values given for"},
		"ak": {&tamperProvider{evidence: func(e *attest.GuestEvidence) {
			pub, _, _ := attest.DecodeTPM2BPublic(e.AKPub)
			pub.RSAParameters.ModulusRaw = other.N.Bytes()
			e.AKPub, _ = attest.EncodeTPM2BPublic(pub)
		}}, "AikPub is not the HCLAkPub"},
		"runtime claims": {&tamperProvider{evidence: func(e *attest.GuestEvidence) {
			h := *e.HCL
			h.RuntimeData = bytes.Replace(h.RuntimeData, []byte(`"secure-boot":false`), []byte(`"secure-boot":true `), 1)
			h.RuntimeData = flip(h.RuntimeData)
			e.HCL = &h
		}}, "REPORT_DATA is not sha256(RunTimeData)"},
		"certify":               {&tamperProvider{evidence: func(e *attest.GuestEvidence) { e.EncKeyCertifySig = flip(e.EncKeyCertifySig) }}, "encryption key certification is not signed"},
		"token for another key": {&tamperProvider{public: &other.PublicKey}, "x-ms-runtime does not carry this release's TPM key"},
	}
	for name, tc := range cases {
		tc.p.TPMSim = tpmSim(t, attest.TPMSimOptions{})
		_, err := skr.ReleaseSecret(testCtx(t), guestBlob(t, s, "cvmkey"), tc.p, clientOpts(s))
		t.Logf("%s: %v", name, err)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line with %q", name, err, tc.want)
		}
	}
}

// TestGuestNonLoopbackRefused: tpm-sim evidence never goes to a real
// authority without Insecure.
func TestGuestNonLoopbackRefused(t *testing.T) {
	blob, err := skr.ParseKeyBlob([]byte(`{"kid":"k","kty":"oct-HSM","authority":{"endpoint":"sharedeus.eus.attest.azure.net"},"akv":{"endpoint":"v.vault.azure.net"}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = skr.ReleaseSecret(testCtx(t), blob, tpmSim(t, attest.TPMSimOptions{}), skr.Options{Logger: quiet, Token: "x"})
	if !errors.Is(err, skr.ErrInsecure) {
		t.Fatalf("got %v, want ErrInsecure", err)
	}
}

// TestGuestRequestWireFormat checks the request against the guest
// attestation library's format: AttestationInfo is unpadded base64url of
// JSON with these members; binary TPM fields are padded standard base64;
// the SNP proof is base64 JSON with an unpadded base64url report.
func TestGuestRequestWireFormat(t *testing.T) {
	gs, err := tpmSim(t, attest.TPMSimOptions{}).OpenGuest(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	ev := gs.Evidence()
	req, _, err := skr.NewGuestRequest(ev, "n0nce")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	var top map[string]string
	if err := json.Unmarshal(body, &top); err != nil || len(top) != 1 || top["AttestationInfo"] == "" {
		t.Fatalf("body %s", body)
	}
	if strings.ContainsAny(top["AttestationInfo"], "=+/") {
		t.Fatal("AttestationInfo is not unpadded base64url")
	}
	raw, err := base64.RawURLEncoding.DecodeString(top["AttestationInfo"])
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]json.RawMessage
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"AttestationProtocolVersion", "OSType", "OSDistro", "OSVersionMajor", "OSVersionMinor", "OSBuild", "TcgLogs", "ClientPayload", "TpmInfo", "IsolationInfo"} {
		if _, ok := info[k]; !ok {
			t.Errorf("AttestationInfo lacks %s", k)
		}
	}
	var tpm map[string]json.RawMessage
	json.Unmarshal(info["TpmInfo"], &tpm)
	for _, k := range []string{"AikCert", "AikPub", "PcrQuote", "PcrSignature", "EncKeyPub", "EncKeyCertifyInfo", "EncKeyCertifyInfoSignature", "PcrSet", "PCRs"} {
		if _, ok := tpm[k]; !ok {
			t.Errorf("TpmInfo lacks %s", k)
		}
	}
	var quote string
	json.Unmarshal(tpm["PcrQuote"], &quote)
	if q, err := base64.StdEncoding.DecodeString(quote); err != nil || !bytes.Equal(q, ev.Quote) {
		t.Fatalf("PcrQuote is not standard base64 of the quote: %v", err)
	}
	var set []int
	json.Unmarshal(tpm["PcrSet"], &set)
	if len(set) != 8 || set[0] != 0 || set[7] != 7 {
		t.Fatalf("PcrSet %v, want 0-7", set)
	}
	var iso struct {
		Type     string
		Evidence struct{ Proof, RunTimeData string }
	}
	json.Unmarshal(info["IsolationInfo"], &iso)
	proofRaw, err := base64.StdEncoding.DecodeString(iso.Evidence.Proof)
	if iso.Type != "SevSnp" || err != nil {
		t.Fatalf("IsolationInfo type %q, proof: %v", iso.Type, err)
	}
	var proof struct{ SnpReport, VcekCertChain string }
	json.Unmarshal(proofRaw, &proof)
	rep, err := base64.RawURLEncoding.DecodeString(proof.SnpReport)
	if err != nil || !bytes.Equal(rep, ev.HCL.HWReport) {
		t.Fatalf("SnpReport is not unpadded base64url of the SNP report: %v", err)
	}
	chain, _ := base64.StdEncoding.DecodeString(proof.VcekCertChain)
	if !bytes.Contains(chain, []byte("BEGIN CERTIFICATE")) {
		t.Fatal("VcekCertChain is not base64 of PEM")
	}
	if rd, _ := base64.StdEncoding.DecodeString(iso.Evidence.RunTimeData); !bytes.Equal(rd, ev.HCL.RuntimeData) {
		t.Fatal("RunTimeData is not the HCL runtime claims")
	}
	var cp map[string]string
	json.Unmarshal(info["ClientPayload"], &cp)
	if n, _ := base64.StdEncoding.DecodeString(cp["nonce"]); string(n) != "n0nce" {
		t.Fatalf("ClientPayload %v", cp)
	}
}
