//go:build arm64 && !purego

package xts

import (
	"os"
	"testing"
)

// TestImplSelection says which path runs here (qemu-user emulates the ARMv8
// crypto extensions, so under `go test -exec qemu-aarch64-static` it is armv8)
// and that CHESTFS_XTS=generic still forces the portable path.
func TestImplSelection(t *testing.T) {
	t.Logf("CPU paths: %v; default %s (CHESTFS_XTS=%q)", implNames(), implNamesByID[defaultImpl], os.Getenv("CHESTFS_XTS"))
	if chooseImpl("generic") != implGeneric {
		t.Error("CHESTFS_XTS=generic does not force the portable path")
	}
	want := implGeneric
	if hasARMv8 {
		want = implARMv8
	}
	if got := chooseImpl(""); got != want {
		t.Errorf("default path %d, want %d", got, want)
	}
	if os.Getenv("CHESTFS_XTS_WANT_ARMV8") != "" && !hasARMv8 {
		t.Fatal("CHESTFS_XTS_WANT_ARMV8 is set but the CPU reports no AES/PMULL: the armv8 path is not tested")
	}
	for _, n := range []int{32, 64} {
		x, err := NewXTS(make([]byte, n), false)
		if err != nil {
			t.Fatal(err)
		}
		if got := x.Implementation(); got != implNamesByID[defaultImpl] {
			t.Errorf("%d-byte key: new cipher uses %s, want %s", n, got, implNamesByID[defaultImpl])
		}
	}
	y, err := NewXTS(make([]byte, 48), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := y.Implementation(); got != "generic" {
		t.Errorf("AES-192-XTS uses %s; it has no assembly", got)
	}
	if y.setImpl("armv8") {
		t.Error("AES-192-XTS accepted the armv8 path")
	}
}

// TestEncryptBlocks checks the tweak cipher (plain AES, ECB) against the
// reference AES of keysched_test.go for every batch size the caller uses.
func TestEncryptBlocks(t *testing.T) {
	if !hasARMv8 {
		t.Skip("no ARMv8 AES/PMULL")
	}
	for _, n := range []int{16, 32} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte(i*13 + n)
		}
		var rk roundKeys
		rounds := expandKey(&rk, key)
		for cnt := 0; cnt <= tweakBatch; cnt++ {
			var buf [tweakBatch * 16]byte
			for i := range buf {
				buf[i] = byte(i*3 + cnt)
			}
			want := buf
			for i := 0; i < 16*cnt; i += 16 {
				copy(want[i:i+16], refEncrypt(&rk, rounds, want[i:i+16]))
			}
			encryptBlocks(&rk[0], rounds, &buf[0], cnt)
			if buf != want {
				t.Fatalf("key %d, %d blocks: encryptBlocks differs from reference AES (or wrote past the blocks)", n, cnt)
			}
		}
	}
}
