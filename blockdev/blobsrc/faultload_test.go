package blobsrc_test

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chestfs/chestfs/internal/procstat"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
	"github.com/chestfs/chestfs/blockdev/cache"
)

// rss is this process's resident set (VmRSS).
func rss(t *testing.T) int64 {
	t.Helper()
	n, err := procstat.Bytes("self", "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// 64 readers, each holding a 1 MiB buffer (FUSE's largest read), blocked
// on a service that accepts connections and never answers: the process
// grows by less than the cache bound + 64 MiB. Once the service answers
// again, every reader gets its bytes.
func TestReadersBlockedOnStalledService(t *testing.T) {
	const readers = 64
	data := imageData(41, 16<<20)
	// Stalled tries are abandoned every second and tried again; no read
	// gives up while the test measures.
	b, p := faultyBlob(t, data, blobsrc.Options{IOTimeout: 2 * time.Minute, StallTimeout: time.Second, HedgeAfter: -1,
		Retries: 1000, RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 100 * time.Millisecond})
	c := cache.New(b, cache.Options{ChunkSize: 256 << 10, MaxBytes: 32 << 20, NoReadahead: true, Logger: slog.New(slog.DiscardHandler)})
	defer c.Close()
	bound := c.Stats().MaxBytes
	p.set(0, stall)
	before := rss(t)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for j := range buf { // resident, as a FUSE buffer would be
				buf[j] = byte(j)
			}
			off := int64(i) * (256 << 10)
			n, err := c.ReadAt(buf[:128<<10], off)
			if err != nil || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
				t.Errorf("reader %d: %d, %v", i, n, err)
			}
		})
	}
	deadline := time.Now().Add(time.Minute)
	for c.Stats().Waiting < readers || p.reads.Load() < readers {
		if time.Now().After(deadline) {
			t.Fatalf("readers not blocked: %+v", c.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	peak := int64(0)
	for range 20 { // over two abandoned-and-retried rounds
		peak = max(peak, rss(t))
		time.Sleep(100 * time.Millisecond)
	}
	grown := peak - before
	t.Logf("%d readers blocked on a stalled service: RSS grew %.1f MiB (readers' own buffers 64 MiB), cache bound %.0f MiB; %d requests so far",
		readers, float64(grown)/(1<<20), float64(bound)/(1<<20), p.reads.Load())
	if grown > bound+64<<20 {
		t.Errorf("RSS grew by %d bytes, more than the cache bound %d + 64 MiB", grown, bound)
	}
	p.set(0, pass)
	wg.Wait()
}

// Hedging: one GET in ten is slow (1 s before its answer). Without hedging
// such a read waits the 1 s; with HedgeAfter 200ms, a twin request on
// another connection answers first.
func TestHedging(t *testing.T) {
	data := imageData(42, 8<<20)
	const slow = time.Second
	plan := make([]azuritetest.Fault, 400)
	for i := range plan {
		if i%10 == 5 {
			plan[i] = azuritetest.Fault{Kind: azuritetest.Delay, Delay: slow}
		}
	}
	measure := func(hedge time.Duration) (lat []time.Duration, st blobsrc.Stats) {
		srv := needAzurite(t)
		cn := newContainer(t, false)
		upload(t, data, srv.BlobURL(cn, "a.img"), false)
		p := azuritetest.NewFaultProxy(t, srv.Host)
		o := blobsrc.Options{Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key,
			HedgeAfter: hedge, Logger: slog.New(slog.DiscardHandler)}
		b, err := blobsrc.Open(testCtx(t), p.Endpoint()+"/"+cn+"/a.img", o)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		p.Set(azuritetest.Fault{}, plan...)
		r := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 256<<10)
		for range 100 {
			off := int64(r.IntN(len(data) - len(buf)))
			start := time.Now()
			if _, err := b.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
				t.Fatalf("read at %d: %v", off, err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat, b.Stats()
	}
	off, stOff := measure(-1)
	on, stOn := measure(200 * time.Millisecond)
	q := func(l []time.Duration, p int) time.Duration { return l[min(len(l)*p/100, len(l)-1)] }
	t.Logf("| hedging | p50 | p90 | p99 | max | GETs for 100 reads |")
	t.Logf("| off | %v | %v | %v | %v | %d |", ms(q(off, 50)), ms(q(off, 90)), ms(q(off, 99)), ms(off[len(off)-1]), stOff.Requests)
	t.Logf("| after 200ms | %v | %v | %v | %v | %d (%d hedges, %d won) |", ms(q(on, 50)), ms(q(on, 90)), ms(q(on, 99)), ms(on[len(on)-1]), stOn.Requests, stOn.Hedges, stOn.HedgeWins)
	if stOn.HedgeWins == 0 {
		t.Fatalf("no hedge won: %+v", stOn)
	}
	if q(off, 99) < slow {
		t.Fatalf("without hedging p99 %v < the injected %v: the slow requests did not happen", q(off, 99), slow)
	}
	if q(on, 99) >= slow {
		t.Errorf("with hedging p99 %v, no better than the slow requests (%v)", q(on, 99), slow)
	}
}

// The library's defaults (IOTimeout 20s, StallTimeout 5s, hedging after
// 2s, 5 retries from 250ms): the worst case a reader waits in a stall, and
// what a lasting refusal costs. Slow (about a minute); -short leaves it out.
func TestFaultDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the defaults' stalls take about a minute to measure")
	}
	for _, c := range []struct {
		name  string
		fault azuritetest.Fault
	}{
		{"stall", azuritetest.Fault{Kind: azuritetest.Stall}},
		{"body stops halfway", azuritetest.Fault{Kind: azuritetest.StallBody}},
		{"503 lasting", azuritetest.Fault{Kind: azuritetest.Status, Status: 503}},
	} {
		m := newMx(t, blobsrc.Options{}, nil)
		m.c.Close()
		m.c = cache.New(m.b, cache.Options{ChunkSize: mChunk, MaxBytes: 8 * mChunk, NoReadahead: true,
			IOTimeout: blobsrc.DefaultIOTimeout, Logger: slog.New(slog.DiscardHandler)})
		m.p.Set(c.fault)
		d, err := m.read(m.fresh())
		if err == nil || d > blobsrc.DefaultIOTimeout+5*time.Second {
			t.Fatalf("%s: %v after %v", c.name, err, d)
		}
		m.p.Set(azuritetest.Fault{}, c.fault)
		d2, err2 := m.read(m.fresh())
		if err2 != nil {
			t.Fatalf("%s once: %v", c.name, err2)
		}
		m.p.Set(azuritetest.Fault{})
		t.Logf("| %s (defaults) | %s | %v | data after %v | %s |", c.name, sees(err), ms(d), ms(d2), m.after())
	}
}
