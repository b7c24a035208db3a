//go:build arm64 && !purego

package xts

import (
	"os"

	"golang.org/x/sys/cpu"
)

// Code paths, chosen once at start-up.
const (
	implGeneric = iota
	implARMv8   // ARMv8 cryptography extensions: AESE/AESD, PMULL; 8 blocks interleaved
)

var implNamesByID = [...]string{"generic", "armv8"}

var (
	hasARMv8    = cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	defaultImpl = chooseImpl(os.Getenv("CHESTFS_XTS"))
)

// chooseImpl picks the best available path. CHESTFS_XTS=generic asks for the
// portable one (tests and benchmarks compare them).
func chooseImpl(env string) int {
	best := implGeneric
	if hasARMv8 {
		best = implARMv8
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
	enc, dec, tweak roundKeys // data key (encrypt and equivalent-inverse schedules), tweak key
	rounds          int       // 10 or 14; 0: key size without assembly (AES-192)
	impl            int
}

func (x *XTS) initAsm(key []byte) {
	half := len(key) / 2
	a := &x.asm
	a.rounds = expandKey(&a.enc, key[:half])
	if a.rounds == 0 || expandKey(&a.tweak, key[half:]) != a.rounds {
		a.rounds = 0
		return
	}
	// AESD/AESIMC compute the equivalent inverse cipher, as AESDEC does: the
	// same inverted schedule serves both.
	invertKey(&a.dec, &a.enc, a.rounds)
	a.impl = defaultImpl
	x.generic = a.impl == implGeneric
}

func (a *asmKeys) implName() string { return implNamesByID[a.impl] }

// implNames lists the XTS code paths usable on this machine.
func implNames() []string {
	if hasARMv8 {
		return []string{"generic", "armv8"}
	}
	return []string{"generic"}
}

// setImpl switches x to the named code path; false if it is not available.
func (x *XTS) setImpl(name string) bool {
	switch {
	case name == "generic":
		x.asm.impl = implGeneric
	case name == "armv8" && hasARMv8 && x.asm.rounds != 0:
		x.asm.impl = implARMv8
	default:
		return false
	}
	x.generic = x.asm.impl == implGeneric
	return true
}

// tweakBatch is how many sector tweaks are encrypted per call of encryptBlocks.
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
		x.ivBlocks(tweaks[:16*cnt], n, step)
		encryptBlocks(&a.tweak[0], a.rounds, &tweaks[0], cnt)
		d := &dst[u*unitSize]
		s := &src[u*unitSize]
		if decrypt {
			xtsDecARMv8(&a.dec[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		} else {
			xtsEncARMv8(&a.enc[0], a.rounds, d, s, blocks, cnt, &tweaks[0])
		}
		n += uint64(cnt) * step
	}
}

// encryptBlocks AES-encrypts the n blocks at buf in place (ECB).
//
//go:noescape
func encryptBlocks(rk *byte, rounds int, buf *byte, n int)

// The XTS kernels process nsect data units of blocks 16-byte blocks each;
// unit i starts with the (already encrypted) tweak at tweaks[16*i:].
// Decryption takes the equivalent-inverse schedule.

//go:noescape
func xtsEncARMv8(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)

//go:noescape
func xtsDecARMv8(rk *byte, rounds int, dst, src *byte, blocks, nsect int, tweaks *byte)
