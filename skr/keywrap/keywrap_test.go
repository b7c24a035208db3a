package keywrap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Vectors from RFC 5649 section 6.
func TestRFC5649Vectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	cases := []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	}
	for _, c := range cases {
		got, err := Wrap(kek, unhex(t, c.key))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != c.wrapped {
			t.Errorf("Wrap(%s) = %x, want %s", c.key, got, c.wrapped)
		}
		plain, err := Unwrap(kek, unhex(t, c.wrapped))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(plain) != c.key {
			t.Errorf("Unwrap = %x, want %s", plain, c.key)
		}
	}
}

func TestRoundTripAndTamper(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	for n := 1; n <= 70; n++ {
		key := bytes.Repeat([]byte{byte(n)}, n)
		w, err := Wrap(kek, key)
		if err != nil {
			t.Fatal(err)
		}
		if want := 8 + (n+7)/8*8; len(w) != want && !(n <= 8 && len(w) == 16) {
			t.Fatalf("n=%d: wrapped length %d, want %d", n, len(w), want)
		}
		got, err := Unwrap(kek, w)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("n=%d: round trip got %x, %v", n, got, err)
		}
		for i := range w {
			bad := bytes.Clone(w)
			bad[i] ^= 0x40
			if _, err := Unwrap(kek, bad); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("n=%d: flipped byte %d: err = %v, want ErrIntegrity", n, i, err)
			}
		}
	}
	w, _ := Wrap(kek, []byte("0123456789abcdef0123456789abcdef"))
	if _, err := Unwrap(bytes.Repeat([]byte{8}, 32), w); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("wrong KEK: err = %v", err)
	}
	for _, l := range []int{0, 8, 15, 17} {
		if _, err := Unwrap(kek, make([]byte, l)); err == nil {
			t.Fatalf("length %d accepted", l)
		}
	}
	if _, err := Wrap([]byte("short"), []byte("k")); err == nil {
		t.Fatal("bad KEK length accepted")
	}
	if _, err := Wrap(kek, nil); err == nil {
		t.Fatal("empty key accepted")
	}
}

func FuzzUnwrap(f *testing.F) {
	kek := bytes.Repeat([]byte{1}, 16)
	w, _ := Wrap(kek, []byte("seed key material"))
	f.Add(w)
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Unwrap(kek, data)
		if err == nil {
			w2, err := Wrap(kek, p)
			if err != nil || !bytes.Equal(w2, data) {
				t.Fatalf("unwrap/wrap not inverse")
			}
		}
	})
}
