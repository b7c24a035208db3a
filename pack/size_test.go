package pack

import (
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "64M": 64 << 20, "64MiB": 64 << 20, "2g": 2 << 30,
		"1T": 1 << 40, "3k": 3072, " 5M ": 5 << 20, "7B": 7} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1.5G", "9999999999999999T", "12X", "0x10"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestParseHeadroom(t *testing.T) {
	for in, want := range map[string]Headroom{"": {0.2, 16 << 20}, "20%+16M": {0.2, 16 << 20}, "50%": {0.5, 0},
		"100M": {0, 100 << 20}, "0": {}, "1G+10%": {0.1, 1 << 30}} {
		if got, err := ParseHeadroom(in); err != nil || got != want {
			t.Errorf("ParseHeadroom(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"abc", "-5%", "%", "10%+", "NaN%", "1e9%"} {
		if _, err := ParseHeadroom(in); err == nil {
			t.Errorf("ParseHeadroom(%q) accepted", in)
		}
	}
}

func FuzzParseHeadroom(f *testing.F) {
	for _, s := range []string{"20%+16M", "0", "1G", "5.5%", "+", "%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHeadroom(s)
		if err == nil && (h.Fraction < 0 || h.Bytes < 0) {
			t.Errorf("%q: negative headroom %+v", s, h)
		}
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Errorf("%q: negative size", s)
		}
	})
}

func TestFSSizeEstimate(t *testing.T) {
	c := &contents{data: 100 << 20, meta: 1 << 20, inodes: 1000}
	size, inodes := c.fsSize(Headroom{Fraction: 0.2, Bytes: 16 << 20})
	if size < 136<<20 || size%(1<<20) != 0 || inodes != 0 {
		t.Errorf("100 MiB of data: size %d, inodes %d", size, inodes)
	}
	// many empty files need more inodes than the default ratio gives
	c = &contents{meta: 100000 * 24, inodes: 100000}
	if _, inodes := c.fsSize(Headroom{}); inodes < 100000 {
		t.Errorf("100000 files: -N %d", inodes)
	}
}

func TestParseOwner(t *testing.T) {
	if o, err := ParseOwner("1000:65537"); err != nil || *o != [2]uint32{1000, 65537} {
		t.Errorf("ParseOwner: %v, %v", o, err)
	}
	for _, in := range []string{"", "1000", "a:b", "1:2:3", "-1:0", "4294967296:0", ":"} {
		if _, err := ParseOwner(in); err == nil {
			t.Errorf("ParseOwner(%q) accepted", in)
		}
	}
}

// TestMkfsMessage: the last line of mkfs's output, its "mkfs.ext4: " prefix
// dropped (the error adds its own, once).
func TestMkfsMessage(t *testing.T) {
	out := "__populate_fs: Could not allocate block in ext2 filesystem while writing file \"big\"\n" +
		"mkfs.ext4: Could not allocate block in ext2 filesystem while populating file system\n"
	for _, c := range []struct{ out, prog, want string }{
		{out, "/usr/sbin/mkfs.ext4", "Could not allocate block in ext2 filesystem while populating file system"},
		{"mke2fs: bad\n", "/sbin/mke2fs", "bad"},
		{"mymkfs: odd", "/opt/mymkfs", "odd"},
		{"  \n", "mkfs.ext4", "no output"},
		{"just text", "mkfs.ext4", "just text"},
	} {
		if got := mkfsMessage(c.out, c.prog); got != c.want {
			t.Errorf("mkfsMessage(%q, %q) = %q, want %q", c.out, c.prog, got, c.want)
		}
	}
}
