package pack

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func TestZZFuzzSpeed(t *testing.T) {
	img, src := smallExt4(t, 256<<10, 3)
	seed, _ := os.ReadFile(img)
	r := rand.New(rand.NewPCG(1, 2))
	var worst time.Duration
	for i := 0; i < 20000; i++ {
		b := append([]byte(nil), seed...)
		for j := 0; j < 1+r.IntN(16); j++ {
			b[r.IntN(len(b))] = byte(r.Uint32())
			if r.IntN(2) == 0 {
				b[1024+r.IntN(1024)] = byte(r.Uint32())
			}
		}
		perm := uint16(0o755)
		st := time.Now()
		patchInodes(memImage(b), int64(len(b)), inodeAttrs{perm: &perm, allOwner: &[2]uint32{3, 4}})
		setTimes(context.Background(), memImage(b), int64(len(b)), src)
		if d := time.Since(st); d > worst {
			worst = d
		}
	}
	t.Logf("worst %v", worst)
}
