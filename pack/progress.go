package pack

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws a one-line bar on a terminal; on anything else it is off.
type progress struct {
	w     io.Writer // nil: quiet
	mu    sync.Mutex
	label string
	total int64
	nDone atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(w io.Writer) *progress {
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		w = nil
	}
	return &progress{w: w}
}

// step prints a phase without a bar.
func (p *progress) step(s string) {
	if p == nil || p.w == nil {
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[Kchestfs pack: %s", s)
}

// start begins a bar of total bytes, redrawn a few times a second.
func (p *progress) start(label string, total int64) {
	if p == nil || p.w == nil {
		return
	}
	p.label, p.total = label, total
	p.nDone.Store(0)
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			p.draw()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (p *progress) add(n int64) {
	if p != nil && p.w != nil {
		p.nDone.Add(n)
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, renderBar(p.label, p.nDone.Load(), p.total, 30))
}

// done stops the bar, drawn at 100%.
func (p *progress) done() {
	if p == nil || p.w == nil || p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.stop = nil
	p.nDone.Store(p.total)
	p.draw()
}

// finish ends the line (also after a failure).
func (p *progress) finish() {
	if p == nil || p.w == nil {
		return
	}
	if p.stop != nil {
		close(p.stop)
		p.wg.Wait()
		p.stop = nil
	}
	fmt.Fprintln(p.w)
}

func renderBar(label string, done, total int64, width int) string {
	frac := 1.0
	if total > 0 {
		frac = min(max(float64(done)/float64(total), 0), 1)
	}
	fill := int(frac * float64(width))
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	return fmt.Sprintf("\r\x1b[Kchestfs pack: %s [%s] %3.0f%% %d/%d MiB", label, bar, frac*100, done>>20, total>>20)
}
