package pack

import (
	"bytes"
	"crypto/aes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"testing"

	xxts "golang.org/x/crypto/xts"
)

// afMergeRef is AF_merge written out from the LUKS specification.
func afMergeRef(split []byte, keySize, stripes int) []byte {
	x := make([]byte, keySize)
	for i := 0; i < stripes-1; i++ {
		for j := range x {
			x[j] ^= split[i*keySize+j]
		}
		for c := 0; c*32 < keySize; c++ {
			end := min((c+1)*32, keySize)
			h := sha256.New()
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(c)))
			h.Write(x[c*32 : end])
			copy(x[c*32:end], h.Sum(nil))
		}
	}
	for j := range x {
		x[j] ^= split[(stripes-1)*keySize+j]
	}
	return x
}

// TestHeaderUnlockIndependently decodes the header as the specification
// describes it and unlocks the keyslot with golang.org/x/crypto/xts.
func TestHeaderUnlockIndependently(t *testing.T) {
	pass := []byte("correct horse")
	vk := randBytes(volumeKeySize)
	hdr, _, err := luksHeader(pass, vk, kdfParams{Type: "pbkdf2", Time: 1000, DigestIter: 1000}, "lbl", "dynamic")
	if err != nil {
		t.Fatal(err)
	}
	if len(hdr) != dataOffset {
		t.Fatalf("header area %d bytes", len(hdr))
	}
	var js []byte
	for i, magic := range []string{"LUKS\xba\xbe", "SKUL\xba\xbe"} {
		h := hdr[i*hdrSize : (i+1)*hdrSize]
		if string(h[:6]) != magic || binary.BigEndian.Uint16(h[6:]) != 2 || binary.BigEndian.Uint64(h[8:]) != hdrSize ||
			binary.BigEndian.Uint64(h[16:]) != 1 || binary.BigEndian.Uint64(h[256:]) != uint64(i*hdrSize) {
			t.Fatalf("copy %d: bad binary header fields", i)
		}
		if string(bytes.TrimRight(h[24:72], "\x00")) != "lbl" || string(bytes.TrimRight(h[72:104], "\x00")) != "sha256" {
			t.Errorf("copy %d: label/csum_alg", i)
		}
		c := bytes.Clone(h)
		clear(c[448 : 448+64])
		if sum := sha256.Sum256(c); !bytes.Equal(sum[:], h[448:480]) || !bytes.Equal(h[480:512], make([]byte, 32)) {
			t.Errorf("copy %d: checksum mismatch", i)
		}
		j := bytes.TrimRight(h[4096:], "\x00")
		if js != nil && !bytes.Equal(js, j) {
			t.Error("JSON differs between copies")
		}
		js = j
	}
	if !bytes.Equal(hdr[168:208], hdr[hdrSize+168:hdrSize+208]) {
		t.Error("UUID differs between copies")
	}
	var m struct {
		Keyslots map[string]struct {
			KeySize int `json:"key_size"`
			Area    struct{ Offset, Size string }
			KDF     struct {
				Type       string
				Iterations int
				Salt       string
			}
		}
		Digests map[string]struct {
			Iterations   int
			Salt, Digest string
		}
		Config struct {
			JSONSize     string `json:"json_size"`
			KeyslotsSize string `json:"keyslots_size"`
		}
	}
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	ks := m.Keyslots["0"]
	off, _ := strconv.Atoi(ks.Area.Offset)
	size, _ := strconv.Atoi(ks.Area.Size)
	if off != 32768 || size != 258048 || m.Config.JSONSize != "12288" || m.Config.KeyslotsSize != "16744448" {
		t.Fatalf("layout: area %d+%d, config %+v", off, size, m.Config)
	}
	salt, _ := base64.StdEncoding.DecodeString(ks.KDF.Salt)
	areaKey, _ := pbkdf2.Key(sha256.New, string(pass), salt, ks.KDF.Iterations, ks.KeySize)
	c, err := xxts.NewCipher(aes.NewCipher, areaKey)
	if err != nil {
		t.Fatal(err)
	}
	material := make([]byte, ks.KeySize*afStripes)
	for s := 0; s < len(material)/512; s++ {
		c.Decrypt(material[s*512:(s+1)*512], hdr[off+s*512:off+(s+1)*512], uint64(s))
	}
	key := afMergeRef(material, ks.KeySize, afStripes)
	if !bytes.Equal(key, vk) {
		t.Fatal("keyslot does not give the volume key")
	}
	d := m.Digests["0"]
	dsalt, _ := base64.StdEncoding.DecodeString(d.Salt)
	want, _ := base64.StdEncoding.DecodeString(d.Digest)
	if got, _ := pbkdf2.Key(sha256.New, string(key), dsalt, d.Iterations, 32); !bytes.Equal(got, want) {
		t.Error("digest does not match the volume key")
	}
}

func TestKDFOptions(t *testing.T) {
	for i, tc := range []struct {
		o  Options
		ok bool
	}{
		{Options{}, true},
		{Options{PBKDF: "argon2i"}, true},
		{Options{PBKDF: "pbkdf2", Iterations: 1000}, true},
		{Options{PBKDF: "pbkdf2", Iterations: 999}, false},
		{Options{PBKDF: "pbkdf2", MemoryKiB: 1024}, false},
		{Options{Iterations: 3}, false},
		{Options{MemoryKiB: 16}, false},
		{Options{MemoryKiB: 4<<20 + 1}, false},
		{Options{Parallel: 5}, false},
		{Options{PBKDF: "scrypt"}, false},
	} {
		k, err := kdfFromOptions(tc.o)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: error %v", tc.o, err)
		}
		if i == 0 && (k.Type != "argon2id" || k.Time != 4 || k.MemoryKiB != 65536 || k.Parallel != 4) {
			t.Errorf("defaults: %+v", k)
		}
	}
}
