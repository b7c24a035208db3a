//go:build amd64 && !purego

package xts

import (
	"os"
	"testing"
)

func TestImplSelection(t *testing.T) {
	t.Logf("CPU paths: %v; default %s (CHESTFS_XTS=%q)", implNames(), implNamesByID[defaultImpl], os.Getenv("CHESTFS_XTS"))
	if chooseImpl("generic") != implGeneric {
		t.Error("CHESTFS_XTS=generic does not force the portable path")
	}
	if hasAESNI && chooseImpl("aesni") != implAESNI {
		t.Error("CHESTFS_XTS=aesni does not select AES-NI")
	}
	if hasVAES256 && chooseImpl("vaes256") != implVAES256 {
		t.Error("CHESTFS_XTS=vaes256 does not select VAES on ymm")
	}
	want := implGeneric
	if hasAESNI {
		want = implAESNI
	}
	if hasVAES256 {
		want = implVAES256
	}
	if hasVAES512 {
		want = implVAES512
	}
	if got := chooseImpl(""); got != want {
		t.Errorf("default path %d, want %d", got, want)
	}
	x, err := NewXTS(make([]byte, 64), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Implementation(); got != implNamesByID[defaultImpl] {
		t.Errorf("new cipher uses %s, want %s", got, implNamesByID[defaultImpl])
	}
	y, err := NewXTS(make([]byte, 48), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := y.Implementation(); got != "generic" {
		t.Errorf("AES-192-XTS uses %s; it has no assembly", got)
	}
}

func TestEncrypt8(t *testing.T) {
	for _, n := range []int{16, 32} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte(i*13 + n)
		}
		var rk roundKeys
		rounds := expandKey(&rk, key)
		var buf [128]byte
		for i := range buf {
			buf[i] = byte(i * 3)
		}
		want := buf
		for i := 0; i < 128; i += 16 {
			copy(want[i:i+16], refEncrypt(&rk, rounds, want[i:i+16]))
		}
		if !hasAESNI {
			t.Skip("no AES-NI")
		}
		encrypt8(&rk[0], rounds, &buf[0])
		if buf != want {
			t.Fatalf("key %d: encrypt8 differs from reference AES", n)
		}
	}
}
