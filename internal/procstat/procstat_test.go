package procstat

import "testing"

func TestBytes(t *testing.T) {
	rss, err := Bytes("self", "VmRSS")
	if err != nil || rss < 1<<20 {
		t.Fatalf("VmRSS %d, %v", rss, err)
	}
	if hwm, err := Bytes("self", "VmHWM"); err != nil || hwm < rss {
		t.Fatalf("VmHWM %d (< VmRSS %d?), %v", hwm, rss, err)
	}
	if _, err := Bytes("self", "NoSuchField"); err == nil {
		t.Fatal("a missing field read as a figure")
	}
}
