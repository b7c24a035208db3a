package xts

import (
	"bytes"
	"context"
	"crypto/aes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	xxts "golang.org/x/crypto/xts"
)

// impls returns one XTS per code path available on this machine.
func impls(t testing.TB, key []byte, plain32 bool) map[string]*XTS {
	t.Helper()
	m := map[string]*XTS{}
	for _, name := range implNames() {
		x, err := NewXTS(key, plain32)
		if err != nil {
			t.Fatal(err)
		}
		if !x.setImpl(name) {
			if name != "generic" && len(key) == 48 {
				continue // AES-192 has no assembly
			}
			t.Fatalf("implementation %s listed but not settable", name)
		}
		if got := x.Implementation(); got != name {
			t.Fatalf("Implementation() = %s, want %s", got, name)
		}
		m[name] = x
	}
	return m
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIEEE1619Vectors(t *testing.T) {
	for _, v := range ieee1619Vectors {
		key := mustHex(t, v.key)
		pt := mustHex(t, v.plaintext)
		ct := mustHex(t, v.ciphertext)
		for name, x := range impls(t, key, false) {
			got := make([]byte, len(pt))
			x.crypt(got, pt, len(pt), v.sector, false)
			if !bytes.Equal(got, ct) {
				t.Errorf("%s %s: encrypt = %x, want %x", v.name, name, got, ct)
			}
			x.crypt(got, ct, len(ct), v.sector, true)
			if !bytes.Equal(got, pt) {
				t.Errorf("%s %s: decrypt = %x, want %x", v.name, name, got, pt)
			}
			if len(pt) == 512 {
				// The public API, in place.
				buf := bytes.Clone(pt)
				x.EncryptSectors(buf, buf, 512, v.sector)
				if !bytes.Equal(buf, ct) {
					t.Errorf("%s %s: EncryptSectors in place mismatch", v.name, name)
				}
				x.DecryptSectors(buf, buf, 512, v.sector)
				if !bytes.Equal(buf, pt) {
					t.Errorf("%s %s: DecryptSectors in place mismatch", v.name, name)
				}
			}
		}
	}
}

// reference encrypts or decrypts with golang.org/x/crypto/xts, one sector at a time.
func reference(t testing.TB, key, src []byte, sectorSize int, iv uint64, plain32, decrypt bool) []byte {
	t.Helper()
	c, err := xxts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(src))
	for off := 0; off < len(src); off += sectorSize {
		n := iv
		if plain32 {
			n = uint64(uint32(n))
		}
		if decrypt {
			c.Decrypt(out[off:off+sectorSize], src[off:off+sectorSize], n)
		} else {
			c.Encrypt(out[off:off+sectorSize], src[off:off+sectorSize], n)
		}
		iv += uint64(sectorSize / 512)
	}
	return out
}

func TestAgainstXCrypto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ivs := []uint64{0, 1, 7, 1<<32 - 8, 1<<32 - 1, 1 << 32, 1<<64 - 8, 1<<64 - 1}
	for i := 0; i < 200; i++ {
		key := make([]byte, []int{32, 48, 64}[i%3])
		fillRand(rng, key)
		sectorSize := 512 << (i / 3 % 4)
		n := 1 + rng.IntN(9)
		if i%17 == 0 {
			n = 40 // longer runs exercise the wide loops
		}
		iv := rng.Uint64()
		if i%2 == 0 {
			iv = ivs[(i/2)%len(ivs)]
		}
		plain32 := i%5 == 0
		src := make([]byte, n*sectorSize)
		fillRand(rng, src)
		wantCT := reference(t, key, src, sectorSize, iv, plain32, false)
		wantPT := reference(t, key, src, sectorSize, iv, plain32, true)
		for name, x := range impls(t, key, plain32) {
			desc := fmt.Sprintf("case %d %s key=%d sector=%d n=%d iv=%#x plain32=%v", i, name, len(key), sectorSize, n, iv, plain32)
			got := make([]byte, len(src))
			x.EncryptSectors(got, src, sectorSize, iv)
			if !bytes.Equal(got, wantCT) {
				t.Fatalf("%s: encrypt mismatch at byte %d", desc, firstDiff(got, wantCT))
			}
			x.DecryptSectors(got, src, sectorSize, iv)
			if !bytes.Equal(got, wantPT) {
				t.Fatalf("%s: decrypt mismatch at byte %d", desc, firstDiff(got, wantPT))
			}
			// In place, and round trip.
			buf := bytes.Clone(src)
			x.EncryptSectors(buf, buf, sectorSize, iv)
			if !bytes.Equal(buf, wantCT) {
				t.Fatalf("%s: in-place encrypt mismatch", desc)
			}
			x.DecryptSectors(buf, buf, sectorSize, iv)
			if !bytes.Equal(buf, src) {
				t.Fatalf("%s: in-place round trip mismatch", desc)
			}
		}
	}
}

// TestOddUnits runs data units of every block count 1..300 through all code
// paths, so that each tail length of the wide loops is covered.
func TestOddUnits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, klen := range []int{32, 64} {
		key := make([]byte, klen)
		fillRand(rng, key)
		c, err := xxts.NewCipher(aes.NewCipher, key)
		if err != nil {
			t.Fatal(err)
		}
		xs := impls(t, key, false)
		for blocks := 1; blocks <= 300; blocks++ {
			src := make([]byte, blocks*16)
			fillRand(rng, src)
			iv := rng.Uint64()
			want := make([]byte, len(src))
			c.Encrypt(want, src, iv)
			wantPT := make([]byte, len(src))
			c.Decrypt(wantPT, src, iv)
			for name, x := range xs {
				got := make([]byte, len(src))
				x.crypt(got, src, len(src), iv, false)
				if !bytes.Equal(got, want) {
					t.Fatalf("%s key=%d blocks=%d: encrypt mismatch at byte %d", name, klen, blocks, firstDiff(got, want))
				}
				x.crypt(got, src, len(src), iv, true)
				if !bytes.Equal(got, wantPT) {
					t.Fatalf("%s key=%d blocks=%d: decrypt mismatch at byte %d", name, klen, blocks, firstDiff(got, wantPT))
				}
			}
		}
	}
}

func TestPlainIVWraps(t *testing.T) {
	key := bytes.Repeat([]byte{0x5a}, 64)
	src := make([]byte, 3*4096)
	for i := range src {
		src[i] = byte(i * 7)
	}
	plain, err := New("aes-xts-plain", key)
	if err != nil {
		t.Fatal(err)
	}
	plain64, err := New("aes-xts-plain64", key)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(src))
	// Sector IVs 2^32-8, 2^32 (wraps to 0), 2^32+8 (wraps to 8).
	plain.EncryptSectors(got, src, 4096, 1<<32-8)
	want := make([]byte, len(src))
	plain64.EncryptSectors(want[:4096], src[:4096], 4096, 1<<32-8)
	plain64.EncryptSectors(want[4096:], src[4096:], 4096, 0)
	if !bytes.Equal(got, want) {
		t.Fatalf("plain IV did not wrap at 2^32 (first diff at %d)", firstDiff(got, want))
	}
	unwrapped := make([]byte, 4096)
	plain64.EncryptSectors(unwrapped, src[4096:8192], 4096, 1<<32)
	if bytes.Equal(unwrapped, got[4096:8192]) {
		t.Fatal("plain64 wrapped at 2^32, it must not")
	}
}

func TestNewErrors(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 64)
	for _, spec := range []string{"aes-xts-essiv:sha256", "twofish-xts-plain64", "aes-gcm-random", "", "aes-cbc-essiv:sha1", "aes"} {
		_, err := New(spec, key)
		if !errors.Is(err, ErrUnsupportedCipher) {
			t.Errorf("New(%q) error = %v, want ErrUnsupportedCipher", spec, err)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", spec)) {
			t.Errorf("New(%q) error %q does not name the spec", spec, err)
		}
	}
	for _, tc := range []struct {
		spec string
		n    int
	}{{"aes-xts-plain64", 16}, {"aes-xts-plain64", 0}, {"aes-xts-plain64", 63}, {"aes-xts-plain", 33}, {"aes-cbc-essiv:sha256", 64}, {"aes-cbc-plain64", 20}} {
		k := bytes.Repeat([]byte{0xab}, tc.n)
		_, err := New(tc.spec, k)
		if !errors.Is(err, ErrKeySize) {
			t.Errorf("New(%q, %d-byte key) error = %v, want ErrKeySize", tc.spec, tc.n, err)
			continue
		}
		if tc.n > 0 && (strings.Contains(err.Error(), "abab") || strings.Contains(err.Error(), "ABAB") || strings.Contains(err.Error(), "\xab")) {
			t.Errorf("error shows key bytes: %q", err)
		}
	}
	for _, spec := range []string{"aes-xts-plain64", "AES-XTS-PLAIN64", "capi:xts(aes)-plain64", "aes-xts-plain", "aes-cbc-essiv:sha256", "capi:cbc(aes)-essiv:sha256", "aes-cbc-plain64", "aes-cbc-plain"} {
		k := key
		if strings.Contains(spec, "cbc") {
			k = key[:32]
		}
		if _, err := New(spec, k); err != nil {
			t.Errorf("New(%q): %v", spec, err)
		}
	}
}

func TestMisusePanics(t *testing.T) {
	for _, spec := range []string{"aes-xts-plain64", "aes-cbc-essiv:sha256"} {
		c, err := New(spec, make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8192)
		for _, tc := range []struct {
			name string
			f    func()
		}{
			{"short", func() { c.DecryptSectors(buf, buf[:1000], 512, 0) }},
			{"sector size", func() { c.DecryptSectors(buf, buf, 768, 0) }},
			{"sector size 8192", func() { c.DecryptSectors(buf, buf, 8192, 0) }},
			{"small dst", func() { c.DecryptSectors(buf[:512], buf[:1024], 512, 0) }},
			{"overlap", func() { c.DecryptSectors(buf[16:4112], buf[:4096], 512, 0) }},
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s %s: no panic", spec, tc.name)
					}
				}()
				tc.f()
			}()
		}
		c.DecryptSectors(nil, nil, 4096, 5) // empty runs are fine
	}
}

func TestNoAllocs(t *testing.T) {
	key := make([]byte, 64)
	buf := make([]byte, 64<<10)
	for name, x := range impls(t, key, false) {
		allocs := testing.AllocsPerRun(20, func() {
			x.DecryptSectors(buf, buf, 4096, 100)
			x.EncryptSectors(buf, buf, 512, 100)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per call", name, allocs)
		}
	}
}

// nodeXTS encrypts with OpenSSL's AES-XTS through Node's crypto module
// (`openssl enc` refuses XTS). Input: JSON [{alg, key, tweaks: [hex], data: hex}],
// each sector (len(data)/len(tweaks) bytes) one XTS data unit with its tweak.
// Output: JSON [hex ciphertext].
const nodeXTS = `
const c = require('crypto');
const chunks = [];
process.stdin.on('data', d => chunks.push(d));
process.stdin.on('end', () => {
  const jobs = JSON.parse(Buffer.concat(chunks).toString());
  const out = jobs.map(j => {
    const data = Buffer.from(j.data, 'hex');
    const n = data.length / j.tweaks.length;
    const parts = j.tweaks.map((t, i) => {
      const e = c.createCipheriv(j.alg, Buffer.from(j.key, 'hex'), Buffer.from(t, 'hex'));
      return Buffer.concat([e.update(data.subarray(i * n, (i + 1) * n)), e.final()]);
    });
    return Buffer.concat(parts).toString('hex');
  });
  process.stdout.write(JSON.stringify(out));
});
`

type nodeJob struct {
	Alg    string   `json:"alg"`
	Key    string   `json:"key"`
	Tweaks []string `json:"tweaks"`
	Data   string   `json:"data"`
}

func TestOpenSSLXTS(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed (its crypto module is OpenSSL's AES-XTS)")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	type testCase struct {
		keyLen, sectorSize int
		iv                 uint64
		plain32            bool
		key, pt            []byte
	}
	cases := []testCase{
		{keyLen: 64, sectorSize: 4096, iv: 0x123456789},
		{keyLen: 64, sectorSize: 512, iv: 0},
		{keyLen: 32, sectorSize: 4096, iv: 1<<64 - 8},
		{keyLen: 32, sectorSize: 512, iv: 77},
		{keyLen: 64, sectorSize: 4096, iv: 1<<32 - 8, plain32: true},
		{keyLen: 64, sectorSize: 1024, iv: 1<<32 - 2, plain32: true},
		{keyLen: 64, sectorSize: 2048, iv: 999999},
	}
	var jobs []nodeJob
	for i := range cases {
		tc := &cases[i]
		tc.key = make([]byte, tc.keyLen)
		fillRand(rng, tc.key)
		const sectors = 5
		tc.pt = make([]byte, sectors*tc.sectorSize)
		fillRand(rng, tc.pt)
		alg := "aes-256-xts"
		if tc.keyLen == 32 {
			alg = "aes-128-xts"
		}
		job := nodeJob{Alg: alg, Key: hex.EncodeToString(tc.key), Data: hex.EncodeToString(tc.pt)}
		for s := 0; s < sectors; s++ {
			n := tc.iv + uint64(s*tc.sectorSize/512)
			if tc.plain32 {
				n = uint64(uint32(n))
			}
			var tweak [16]byte
			putLE64(tweak[:8], n)
			job.Tweaks = append(job.Tweaks, hex.EncodeToString(tweak[:]))
		}
		jobs = append(jobs, job)
	}
	in, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "-e", nodeXTS)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var results []string
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(cases) {
		t.Fatalf("node output: %v (%d results)", err, len(results))
	}
	for i, tc := range cases {
		want := mustHex(t, results[i])
		pt, key := tc.pt, tc.key
		if len(want) != len(pt) {
			t.Fatalf("case %d: node returned %d bytes", i, len(want))
		}
		spec := "aes-xts-plain64"
		if tc.plain32 {
			spec = "aes-xts-plain"
		}
		for name, x := range impls(t, key, tc.plain32) {
			got := make([]byte, len(pt))
			x.EncryptSectors(got, pt, tc.sectorSize, tc.iv)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s %s key=%d sector=%d iv=%#x: differs from openssl at byte %d", spec, name, tc.keyLen, tc.sectorSize, tc.iv, firstDiff(got, want))
			}
			x.DecryptSectors(got, want, tc.sectorSize, tc.iv)
			if !bytes.Equal(got, pt) {
				t.Fatalf("%s %s: decrypting openssl's output failed", spec, name)
			}
		}
		c, err := New(spec, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		Parallel(c, 2).DecryptSectors(got, want, tc.sectorSize, tc.iv)
		if !bytes.Equal(got, pt) {
			t.Fatalf("New(%q) through Parallel: decrypting openssl's output failed", spec)
		}
	}
}

func FuzzXTS(f *testing.F) {
	f.Add(make([]byte, 64), uint64(0), uint16(1), false, make([]byte, 512))
	f.Add(bytes.Repeat([]byte{1, 2, 3}, 11)[:32], uint64(1<<32-1), uint16(3), true, bytes.Repeat([]byte{0xff}, 700))
	f.Add(bytes.Repeat([]byte{9}, 48), uint64(1<<64-1), uint16(255), false, []byte("sector"))
	f.Add(bytes.Repeat([]byte{0x42}, 64), uint64(1<<32-3), uint16(33), true, bytes.Repeat([]byte{7, 1}, 1024))
	f.Fuzz(func(t *testing.T, key []byte, iv uint64, blocks uint16, plain32 bool, data []byte) {
		if len(key) != 32 && len(key) != 48 && len(key) != 64 {
			return
		}
		n := int(blocks%300) + 1
		src := make([]byte, n*16)
		copy(src, data)
		xs := impls(t, key, plain32)
		tw := iv
		if plain32 {
			tw = uint64(uint32(tw))
		}
		c, err := xxts.NewCipher(aes.NewCipher, key)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(src))
		c.Encrypt(want, src, tw)
		wantPT := make([]byte, len(src))
		c.Decrypt(wantPT, src, tw)
		for name, x := range xs {
			got := make([]byte, len(src))
			x.crypt(got, src, len(src), iv, false)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: encrypt differs from x/crypto at byte %d", name, firstDiff(got, want))
			}
			x.crypt(got, got, len(got), iv, true)
			if !bytes.Equal(got, src) {
				t.Fatalf("%s: round trip failed", name)
			}
			x.crypt(got, src, len(src), iv, true)
			if !bytes.Equal(got, wantPT) {
				t.Fatalf("%s: decrypt differs from x/crypto at byte %d", name, firstDiff(got, wantPT))
			}
		}
		// Whole 512-byte sectors through the public API: every path agrees.
		if sectors := len(data) / 512; sectors > 0 && sectors <= 16 {
			run := data[:sectors*512]
			var first []byte
			for name, x := range xs {
				got := make([]byte, len(run))
				x.DecryptSectors(got, run, 512, iv)
				if first == nil {
					first = got
				} else if !bytes.Equal(got, first) {
					t.Fatalf("%s: DecryptSectors differs between paths at byte %d", name, firstDiff(got, first))
				}
			}
		}
	})
}

func fillRand(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
