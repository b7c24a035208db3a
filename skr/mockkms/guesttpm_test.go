package mockkms

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
)

// The mock's TPM checks against a real TPM (the simulator), driven here
// with go-tpm directly and not through chestfs's attest package: what a
// TPM makes must pass, what it makes for other PCRs or keys must not.

type simTPM struct {
	t     testing.TB
	tpm   transport.TPMCloser
	akH   tpm2.AuthHandle
	akPub *rsa.PublicKey
	akRaw []byte // TPM2B_PUBLIC
}

func openSimTPM(t testing.TB) *simTPM {
	t.Helper()
	tpm, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })
	s := &simTPM{t: t, tpm: tpm}
	ak := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
	}
	h, pub := s.primary(ak)
	s.akH = h
	s.akRaw = tpm2.Marshal(pub)
	p, err := pub.Contents()
	if err != nil {
		t.Fatal(err)
	}
	if s.akPub, err = tpmRSAKey("AK", p); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *simTPM) primary(tmpl tpm2.TPMTPublic) (tpm2.AuthHandle, tpm2.TPM2BPublic) {
	s.t.Helper()
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}.Execute(s.tpm)
	if err != nil {
		s.t.Fatal(err)
	}
	return tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}, rsp.OutPublic
}

func rsaSig(t testing.TB, sig tpm2.TPMTSignature) []byte {
	t.Helper()
	r, err := sig.Signature.RSASSA()
	if err != nil {
		t.Fatal(err)
	}
	return r.Sig.Buffer
}

// quote quotes sel with the AK and reads the values of PCRs 0-7.
func (s *simTPM) quote(sel tpm2.TPMLPCRSelection) (q, sig []byte, pcrs []pcrValue) {
	s.t.Helper()
	rsp, err := tpm2.Quote{SignHandle: s.akH, InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}, PCRSelect: sel}.Execute(s.tpm)
	if err != nil {
		s.t.Fatal(err)
	}
	rd, err := tpm2.PCRRead{PCRSelectionIn: pcrSelectionOf(guestQuotedPCRs)}.Execute(s.tpm)
	if err != nil || len(rd.PCRValues.Digests) != len(guestQuotedPCRs) {
		s.t.Fatalf("PCRRead: %v", err)
	}
	for i, d := range rd.PCRValues.Digests {
		pcrs = append(pcrs, pcrValue{index: guestQuotedPCRs[i], digest: d.Buffer})
	}
	return rsp.Quoted.Bytes(), rsaSig(s.t, rsp.Signature), pcrs
}

// policyDigest is what the TPM computes for PolicyPCR over PCRs 0-7 with
// the given composite digest, in a trial session.
func (s *simTPM) policyDigest(composite []byte) []byte {
	s.t.Helper()
	sess, done, err := tpm2.PolicySession(s.tpm, tpm2.TPMAlgSHA256, 16, tpm2.Trial())
	if err != nil {
		s.t.Fatal(err)
	}
	defer done()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), PcrDigest: tpm2.TPM2BDigest{Buffer: composite}, Pcrs: pcrSelectionOf(guestQuotedPCRs)}).Execute(s.tpm); err != nil {
		s.t.Fatal(err)
	}
	d, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(s.tpm)
	if err != nil {
		s.t.Fatal(err)
	}
	return d.PolicyDigest.Buffer
}

// encKey creates a decryption key with attrs and policy and has the AK
// certify it.
func (s *simTPM) encKey(attrs tpm2.TPMAObject, policy []byte) (pub2B, info, sig []byte) {
	s.t.Helper()
	tmpl := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull}, KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
	}
	h, pub := s.primary(tmpl)
	rsp, err := tpm2.Certify{ObjectHandle: h, SignHandle: s.akH, InScheme: tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}}.Execute(s.tpm)
	if err != nil {
		s.t.Fatal(err)
	}
	return tpm2.Marshal(pub), rsp.CertifyInfo.Bytes(), rsaSig(s.t, rsp.Signature)
}

var ephemeralAttrs = tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, Decrypt: true}

func TestMockTPMChecksOnSimulator(t *testing.T) {
	s := openSimTPM(t)
	q, sig, pcrs := s.quote(pcrSelectionOf(guestQuotedPCRs))
	if err := checkQuote(s.akPub, q, sig, pcrs); err != nil {
		t.Fatalf("a TPM quote of PCRs 0-7: %v", err)
	}
	pol := s.policyDigest(pcrDigest(pcrs))
	if !bytes.Equal(pol, policyPCRDigest(pcrs)) {
		t.Fatalf("policyPCRDigest %x, the TPM computes %x", policyPCRDigest(pcrs), pol)
	}
	pub, info, isig := s.encKey(ephemeralAttrs, pol)
	k, err := checkCertifiedKey(s.akPub, pub, info, isig, pcrs)
	if err != nil {
		t.Fatalf("a certified PCR-bound key: %v", err)
	}
	if k.N.BitLen() != 2048 {
		t.Fatalf("key of %d bits", k.N.BitLen())
	}
	if _, _, err := parseTPM2BPublic("AK", s.akRaw); err != nil {
		t.Fatal(err)
	}

	refused := func(what, want string, err error) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", what, err, want)
		}
	}
	q3, sig3, _ := s.quote(pcrSelectionOf([]int{0, 1, 2}))
	refused("quote of PCRs 0-2", "covers PCRs [0 1 2]", checkQuote(s.akPub, q3, sig3, pcrs[:3]))
	sha1Sel := pcrSelectionOf(guestQuotedPCRs)
	sha1Sel.PCRSelections[0].Hash = tpm2.TPMAlgSHA1
	q1, sig1, _ := s.quote(sha1Sel)
	refused("quote of the SHA-1 bank", "SHA-256 bank", checkQuote(s.akPub, q1, sig1, pcrs))
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	refused("another AK", "not signed by the attestation key", checkQuote(&other.PublicKey, q, sig, pcrs))
	refused("certification as a quote", "not a quote", checkQuote(s.akPub, info, isig, pcrs))
	moved := slices.Clone(pcrs)
	moved[7] = pcrValue{index: 7, digest: bytes.Repeat([]byte{7}, 32)}
	refused("other PCR 7", "do not match the quote's PCR digest", checkQuote(s.akPub, q, sig, moved))

	_, err = checkCertifiedKey(s.akPub, pub, info, isig, moved)
	refused("key bound to other PCR values", "not bound (PolicyPCR)", err)
	withAuth := ephemeralAttrs
	withAuth.UserWithAuth = true
	p2, i2, s2 := s.encKey(withAuth, pol)
	_, err = checkCertifiedKey(s.akPub, p2, i2, s2, pcrs)
	refused("key usable with a password", "usable only by policy", err)
	_, err = checkCertifiedKey(s.akPub, p2, info, isig, pcrs)
	refused("certification of another key", "names another key", err)
	_, err = checkCertifiedKey(s.akPub, pub, q, sig, pcrs)
	refused("quote as a certification", "not a TPM2_Certify", err)
	_, err = checkCertifiedKey(s.akPub, append(slices.Clone(pub), 0), info, isig, pcrs)
	refused("EncKeyPub with a trailing byte", "TPM2B_PUBLIC announces", err)
}

// TestMockOwnConstants: the mock's own names agree with what the chestfs
// client and its policies use; if one side drifts this fails rather than
// a release silently.
func TestMockOwnConstants(t *testing.T) {
	if !slices.Equal(guestQuotedPCRs, attest.GuestPCRs) {
		t.Errorf("mock attests PCRs %v, the client quotes %v", guestQuotedPCRs, attest.GuestPCRs)
	}
	if ClaimPCRs != skr.ClaimMockPCRs || hclAKKID != attest.HCLAKPubKID || ephemeralKID != skr.RuntimeKeyID ||
		guestProtocolVersion != skr.GuestProtocolVersion || guestTransportAAD != skr.GuestTransportAAD {
		t.Error("mock and client disagree on a claim name, kid, protocol version or the token AAD")
	}
}

// FuzzTPMStructs: the mock's TPM decoding never panics or hangs on
// request bytes.
func FuzzTPMStructs(f *testing.F) {
	s := openSimTPM(f)
	q, sig, _ := s.quote(pcrSelectionOf(guestQuotedPCRs))
	pub, info, _ := s.encKey(ephemeralAttrs, nil)
	f.Add(s.akRaw, q, sig)
	f.Add(pub, info, sig)
	f.Add([]byte{0, 2, 0, 1}, []byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18}, []byte{})
	f.Fuzz(func(t *testing.T, pub, att, sig []byte) {
		if p, _, err := parseTPM2BPublic("pub", pub); err == nil {
			tpmRSAKey("pub", p)
		}
		if a, err := tpmUnmarshal("attest", func() (*tpm2.TPMSAttest, error) { return tpm2.Unmarshal[tpm2.TPMSAttest](att) }); err == nil {
			if qi, err := a.Attested.Quote(); err == nil {
				selectedPCRs(qi.PCRSelect)
			}
		}
		checkQuote(s.akPub, att, sig, nil)
	})
}
