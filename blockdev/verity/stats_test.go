package verity

import (
	"testing"
)

// TestStats: blocks that match are counted, and every read refused for a
// mismatch counts one failure, although only the first is logged.
func TestStats(t *testing.T) {
	_, d, h, _, root := tamperTree(t)
	const bad = 4000
	d.b[bad*512+77] ^= 1
	r, err := Open(d, h, 0, root, quiet)
	if err != nil {
		t.Fatal(err)
	}
	s0 := r.Stats()
	if s0.Failures != 0 || s0.BlocksVerified != 2 {
		t.Fatalf("after Open (first and last blocks checked): %+v", s0)
	}
	buf := make([]byte, 8*512)
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.BlocksVerified != s0.BlocksVerified+8 || s.Failures != 0 {
		t.Fatalf("after reading 8 good blocks: %+v", s)
	}
	for i := 0; i < 3; i++ {
		_, err := r.ReadAt(buf, (bad-2)*512)
		wantEIO(t, err)
	}
	if s := r.Stats(); s.Failures != 3 || s.BlocksVerified != s0.BlocksVerified+8+3*2 {
		t.Fatalf("after three reads through the bad block: %+v", s)
	}
}
