//go:build amd64 && !purego

package xts

import (
	"os"

	"golang.org/x/sys/cpu"
)

// Code paths, chosen once at start-up.
const (
	implGeneric = iota
	implAESNI   // AES-NI on xmm registers, 8 blocks interleaved (needs AVX, PCLMULQDQ)
	implVAES256 // VAES on ymm registers, 16 blocks interleaved (needs AVX2, VAES, VPCLMULQDQ)
	implVAES512 // VAES on zmm registers, 32 blocks interleaved (needs AVX-512 F/BW/VL, VAES, VPCLMULQDQ)
)

var implNamesByID = [...]string{"generic", "aesni", "vaes256", "vaes512"}

var (
	hasAESNI    = cpu.X86.HasAES && cpu.X86.HasAVX && cpu.X86.HasPCLMULQDQ
	hasVAES256  = hasAESNI && cpu.X86.HasAVX2 && cpuHasVAES()
	hasVAES512  = hasVAES256 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VAES && cpu.X86.HasAVX512VPCLMULQDQ
	defaultImpl = chooseImpl(os.Getenv("CHESTFS_XTS"))
)

// cpuHasVAES reports the VAES and VPCLMULQDQ CPUID bits (leaf 7, ECX bits 9
// and 10) directly: golang.org/x/sys/cpu only reports them on AVX-512 CPUs,
// but the ymm forms need only AVX2 (AMD Zen 3, Intel Alder Lake).
func cpuHasVAES() bool {
	if maxLeaf, _, _, _ := cpuid(0, 0); maxLeaf < 7 {
		return false
	}
	_, _, ecx, _ := cpuid(7, 0)
	return ecx&(1<<9) != 0 && ecx&(1<<10) != 0
}

// chooseImpl picks the best available path. CHESTFS_XTS=generic, =aesni or
// =vaes256 asks for a lesser one (tests and benchmarks compare them).
func chooseImpl(env string) int {
	best := implGeneric
	switch {
	case hasVAES512:
		best = implVAES512
	case hasVAES256:
		best = implVAES256
	case hasAESNI:
		best = implAESNI
	}
	for id, name := range implNamesByID {
		if env == name {
			return min(best, id)
		}
	}
	return best
}

// asmKeys holds the expanded keys the assembly reads.
type asmKeys struct {
	enc, dec, tweak  roundKeys // data key (encrypt and equivalent-inverse schedules), tweak key
	encWide, decWide wideKeys  // enc and dec with every round key twice, for the ymm path
	rounds           int       // 10 or 14; 0: key size without assembly (AES-192)
	impl             int
}

type wideKeys [2 * len(roundKeys{})]byte

func widen(w *wideKeys, k *roundKeys) {
	for i := 0; i < len(k); i += 16 {
		copy(w[2*i:], k[i:i+16])
		copy(w[2*i+16:], k[i:i+16])
	}
}

func (x *XTS) initAsm(key []byte) {
	half := len(key) / 2
	a := &x.asm
	a.rounds = expandKey(&a.enc, key[:half])
	if a.rounds == 0 || expandKey(&a.tweak, key[half:]) != a.rounds {
		a.rounds = 0
		return
	}
	invertKey(&a.dec, &a.enc, a.rounds)
	widen(&a.encWide, &a.enc)
	widen(&a.decWide, &a.dec)
	a.impl = defaultImpl
	x.generic = a.impl == implGeneric
}

func (a *asmKeys) implName() string { return implNamesByID[a.impl] }

// implNames lists the XTS code paths usable on this machine.
func implNames() []string {
	names := []string{"generic"}
	if hasAESNI {
		names = append(names, "aesni")
	}
	if hasVAES256 {
		names = append(names, "vaes256")
	}
	if hasVAES512 {
		names = append(names, "vaes512")
	}
	return names
}

// setImpl switches x to the named code path; false if it is not available.
func (x *XTS) setImpl(name string) bool {
	for id, n := range implNamesByID {
		if n != name {
			continue
		}
		switch {
		case id == implGeneric:
		case x.asm.rounds == 0:
			return false
		case id == implAESNI && !hasAESNI, id == implVAES256 && !hasVAES256, id == implVAES512 && !hasVAES512:
			return false
		}
		x.asm.impl = id
		x.generic = id == implGeneric
		return true
	}
	return false
}

// tweakBatch is how many sector tweaks are encrypted per call of encrypt8.
const tweakBatch = 8

func (x *XTS) cryptAsm(dst, src []byte, unitSize int, n uint64, decrypt bool) {
	a := &x.asm
	if len(src) == 0 {
		return
	}
	step := uint64(unitSize / 512)
	blocks := unitSize / 16
	units := len(src) / unitSize
	var tweaks [tweakBatch * 16]byte
	for u := 0; u < units; u += tweakBatch {
		cnt := min(tweakBatch, units-u)
		x.ivBlocks(tweaks[:16*tweakBatch], n, step)
		encrypt8(&a.tweak[0], a.rounds, &tweaks[0])
		d := &dst[u*unitSize]
		s := &src[u*unitSize]
		switch {
		case a.impl == implVAES512 && decrypt:
			xtsDecVAES(&a.dec[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		case a.impl == implVAES512:
			xtsEncVAES(&a.enc[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		case a.impl == implVAES256 && decrypt:
			xtsDecVAES256(&a.decWide[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		case a.impl == implVAES256:
			xtsEncVAES256(&a.encWide[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		case decrypt:
			xtsDecAESNI(&a.dec[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		default:
			xtsEncAESNI(&a.enc[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		}
		n += uint64(cnt) * step
	}
}

// encrypt8 encrypts the 8 blocks at buf in place (ECB) with AES-NI.
//
//go:noescape
func encrypt8(rk *byte, rounds int, buf *byte)

// The XTS kernels process nsect data units of blocks 16-byte blocks each;
// unit i starts with the (already encrypted) tweak at tweaks[16*i:].
// Decryption takes the equivalent-inverse schedule.

//go:noescape
func xtsEncVAES(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)

//go:noescape
func xtsDecVAES(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)

//go:noescape
func xtsEncAESNI(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)

//go:noescape
func xtsDecAESNI(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)

// The ymm kernels take the wide (doubled) schedules.

//go:noescape
func xtsEncVAES256(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)

//go:noescape
func xtsDecVAES256(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)

func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
