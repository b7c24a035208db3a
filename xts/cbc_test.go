package xts

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestOpenSSLCBC(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	run := func(stdin []byte, args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openssl", args...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %v: %v", args[:2], err)
		}
		return out
	}
	for _, tc := range []struct {
		spec       string
		keyLen     int
		sectorSize int
		iv         uint64
	}{
		{"aes-cbc-essiv:sha256", 32, 512, 0x1234567},
		{"aes-cbc-essiv:sha256", 16, 4096, 1<<32 - 8},
		{"aes-cbc-essiv:sha256", 24, 512, 3},
		{"aes-cbc-plain64", 32, 512, 1<<32 + 5},
		{"aes-cbc-plain", 32, 4096, 1<<32 - 8},
	} {
		key := make([]byte, tc.keyLen)
		fillRand(rng, key)
		const sectors = 3
		pt := make([]byte, sectors*tc.sectorSize)
		fillRand(rng, pt)
		var want []byte
		for s := 0; s < sectors; s++ {
			n := tc.iv + uint64(s*tc.sectorSize/512)
			var iv [16]byte
			switch tc.spec {
			case "aes-cbc-plain":
				putLE64(iv[:8], uint64(uint32(n)))
			default:
				putLE64(iv[:8], n)
			}
			ivb := iv[:]
			if strings.Contains(tc.spec, "essiv") {
				salt := run(key, "dgst", "-sha256", "-binary")
				ivb = run(iv[:], "enc", "-aes-256-ecb", "-nopad", "-K", hex.EncodeToString(salt))
			}
			alg := fmt.Sprintf("-aes-%d-cbc", tc.keyLen*8)
			want = append(want, run(pt[s*tc.sectorSize:(s+1)*tc.sectorSize], "enc", alg, "-nopad", "-K", hex.EncodeToString(key), "-iv", hex.EncodeToString(ivb))...)
		}
		c, err := New(tc.spec, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(pt))
		c.EncryptSectors(got, pt, tc.sectorSize, tc.iv)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s key=%d: differs from openssl at byte %d", tc.spec, tc.keyLen, firstDiff(got, want))
		}
		c.DecryptSectors(got, got, tc.sectorSize, tc.iv)
		if !bytes.Equal(got, pt) {
			t.Fatalf("%s key=%d: in-place decrypt of openssl output failed", tc.spec, tc.keyLen)
		}
	}
}
