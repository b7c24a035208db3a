package azuritetest

import (
	"testing"
	"time"
)

// TestPacer: the virtual link books each send after the previous one at
// its rate, so n bytes take n/rate whoever sends them, and an idle link
// gathers no credit. Checked on the reservations, with a fixed clock.
func TestPacer(t *testing.T) {
	var p pacer
	p.setRate(1 << 20) // 1 MiB/s: 64 KiB takes 62.5 ms
	t0 := time.Unix(1000, 0)
	piece := 64 << 10
	for i := 1; i <= 16; i++ {
		want := time.Duration(i)*time.Second/16 - pacerSlack
		if got := p.reserve(piece, t0); got != want {
			t.Fatalf("send %d at t0: wait %v, want %v", i, got, want)
		}
	}
	// After a long idle stretch the link starts afresh: one piece's time.
	t1 := t0.Add(time.Hour)
	if got, want := p.reserve(piece, t1), time.Second/16-pacerSlack; got != want {
		t.Fatalf("after idle: wait %v, want %v", got, want)
	}
	p.setRate(0)
	if got := p.reserve(piece, t1); got != 0 {
		t.Fatalf("unlimited: wait %v, want 0", got)
	}
}
