package fusefs

import (
	"os"
	"testing"

	"github.com/chestfs/chestfs/ext4"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// BenchmarkReadDirPlusTree answers the first READDIRPLUS of every
// directory two levels under /tree of the image CHESTFS_BENCH_TREE_IMAGE
// names (a plain ext4 image, as scripts/bench-mount.sh builds), with the
// kernel forgetting every node between rounds as after drop_caches: the
// server's part of a cold `find -ls`.
func BenchmarkReadDirPlusTree(b *testing.B) {
	p := os.Getenv("CHESTFS_BENCH_TREE_IMAGE")
	if p == "" {
		b.Skip("CHESTFS_BENCH_TREE_IMAGE unset")
	}
	fh, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	fsys, err := ext4.Open(fh, st.Size())
	if err != nil {
		b.Fatal(err)
	}
	r := newRawFS(fsys)
	tree, err := fsys.Lookup(ext4.RootIno, "tree")
	if err != nil {
		b.Fatal(err)
	}
	var dirs []uint64
	top, _ := fsys.ReadDir(tree)
	for _, e := range top {
		sub, _ := fsys.ReadDir(e.Ino)
		for _, s := range sub {
			dirs = append(dirs, s.Ino)
		}
	}
	buf := make([]byte, 32<<10)
	entries := 0
	for b.Loop() {
		for _, d := range dirs {
			l := fuse.NewDirEntryList(buf, 0)
			in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: d}, Size: uint32(len(buf))}
			if st := r.ReadDirPlus(nil, in, l); !st.Ok() {
				b.Fatal(st)
			}
		}
		r.nlookupMu.Lock()
		entries = len(r.nlookup)
		clear(r.nlookup)
		r.nlookupMu.Unlock()
	}
	b.ReportMetric(float64(len(dirs)), "dirs")
	b.ReportMetric(float64(entries), "nodes")
}
