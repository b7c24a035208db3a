// Package progress reports the progress of long jobs (pack, upload,
// extract, decrypt) the way command-line tools usually do: on a terminal a
// redrawn bar with bytes, rate and ETA (github.com/schollz/progressbar), on
// anything else (a log file, a pipe, CI) one plain line every few seconds,
// and nothing at all when quiet.
//
// A nil *Printer and a nil *Task are valid and print nothing, so that
// libraries can report unconditionally.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Mode is how a Printer shows progress.
type Mode int

const (
	// ModeAuto is ModeBar when the writer is a terminal, else ModeLines.
	ModeAuto Mode = iota
	// ModeBar redraws one line: a bar with bytes, rate and ETA.
	ModeBar
	// ModeLines prints one line per step and per interval.
	ModeLines
	// ModeQuiet prints nothing, summaries included.
	ModeQuiet
)

// DefaultInterval is the time between two lines in ModeLines.
const DefaultInterval = 5 * time.Second

// redraw is the least time between two redraws of a terminal line.
const redraw = 100 * time.Millisecond

// Options configure a Printer.
type Options struct {
	// Prefix starts every line, followed by ": " (e.g. "chestfs pack").
	Prefix string
	// Mode: ModeAuto by default.
	Mode Mode
	// Interval between lines in ModeLines; 0 means DefaultInterval, a
	// negative value prints lines only on Task.Tick (tests).
	Interval time.Duration
	// Now is the clock for elapsed times and rates; nil means time.Now.
	Now func() time.Time
}

// Printer writes one command's progress to one writer. Its methods are safe
// for concurrent use.
type Printer struct {
	w        io.Writer
	mode     Mode
	prefix   string
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	partial bool // ModeBar: the cursor is at the end of an unterminated line
}

// New returns a Printer on w. A nil w is quiet.
func New(w io.Writer, o Options) *Printer {
	p := &Printer{w: w, mode: o.Mode, prefix: o.Prefix, interval: o.Interval, now: o.Now}
	if w == nil {
		p.mode = ModeQuiet
	}
	if p.mode == ModeAuto {
		p.mode = ModeLines
		if IsTerminal(w) {
			p.mode = ModeBar
		}
	}
	if p.interval == 0 {
		p.interval = DefaultInterval
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// For is how a library turns its Options.Progress writer into a Printer:
// a *Printer is used as it is (the caller chose its mode and prefix), nil
// is quiet, any other writer gets New(w, Options{Prefix: prefix}).
func For(w io.Writer, prefix string) *Printer {
	if p, ok := w.(*Printer); ok {
		return p
	}
	return New(w, Options{Prefix: prefix})
}

// IsTerminal says whether w is a terminal (a tty; /dev/null is not one).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Mode returns the mode in use (never ModeAuto).
func (p *Printer) Mode() Mode {
	if p == nil {
		return ModeQuiet
	}
	return p.mode
}

// Quiet says whether p prints nothing.
func (p *Printer) Quiet() bool { return p.Mode() == ModeQuiet }

func (p *Printer) line(s string) string {
	if p.prefix == "" {
		return s
	}
	return p.prefix + ": " + s
}

// endLine terminates a partial bar line; p.mu held.
func (p *Printer) endLine() {
	if p.partial {
		io.WriteString(p.w, "\n")
		p.partial = false
	}
}

// Step shows a phase that has no bar ("building ext4") on a terminal,
// until the next step or bar replaces it. Elsewhere it prints nothing: a
// log gets only the periodic lines of long tasks (and the summary).
func (p *Printer) Step(msg string) {
	if p.Mode() != ModeBar {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, "\r\x1b[K"+p.line(msg))
	p.partial = true
}

// Write prints text as its own line(s), after ending a partial bar line,
// so that a Printer can be passed where an io.Writer is expected (the
// Options.Progress of pack, blobsrc.Upload and extract). Quiet discards.
func (p *Printer) Write(b []byte) (int, error) {
	if p.Quiet() {
		return len(b), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.partial {
		io.WriteString(p.w, "\r\x1b[K")
		p.partial = false
	}
	return p.w.Write(b)
}

// Flush ends a partial line (a step or a bar cut short), so that what is
// printed next, such as an error, starts on a line of its own.
func (p *Printer) Flush() {
	if p.Quiet() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endLine()
}

// Summary prints the one line a command ends with, as FormatSummary.
func (p *Printer) Summary(what string, bytes int64, elapsed time.Duration, extra ...string) {
	if p.Quiet() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.partial {
		io.WriteString(p.w, "\r\x1b[K")
		p.partial = false
	}
	io.WriteString(p.w, p.line(FormatSummary(what, bytes, elapsed, extra...))+"\n")
}

// FormatSummary is "WHAT: SIZE in ELAPSED (RATE)" followed by the extra
// fields, comma-separated, e.g.
// "packed img.luks: 1.0 GiB in 6.1s (176.0 MB/s), uuid 5c1e..., verity root hash ab12...".
func FormatSummary(what string, bytes int64, elapsed time.Duration, extra ...string) string {
	var b strings.Builder
	if what != "" {
		b.WriteString(what + ": ")
	}
	fmt.Fprintf(&b, "%s in %s", Size(bytes), Duration(elapsed))
	if r := Rate(bytes, elapsed); r != "" {
		b.WriteString(" (" + r + ")")
	}
	for _, e := range extra {
		if e != "" {
			b.WriteString(", " + e)
		}
	}
	return b.String()
}

// Size formats a byte count with binary units: "512 B", "1.5 KiB", "1.0 GiB".
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[i])
}

// Rate is bytes per elapsed second in decimal megabytes ("176.0 MB/s"), as
// dd and azcopy print it; "" when no time has passed.
func Rate(bytes int64, elapsed time.Duration) string {
	if elapsed <= 0 {
		return ""
	}
	return fmt.Sprintf("%.1f MB/s", float64(bytes)/elapsed.Seconds()/1e6)
}

// Duration rounds d for people: tenths of a second under a minute, whole
// seconds above.
func Duration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Task is one measured job: a bar of total bytes.
type Task struct {
	p     *Printer
	label string
	total int64
	start time.Time

	done  atomic.Int64
	items atomic.Int64
	unit  string // of items

	mu      sync.Mutex // bar, ended, drawn, printed
	bar     *progressbar.ProgressBar
	drawn   time.Time // last redraw without a bar
	printed bool      // ModeLines: a periodic line was printed
	ended   bool
	stopCh  chan struct{}
	wg      sync.WaitGroup
}

// Start begins a task of total bytes (0 or less: unknown). Each Task must
// end with Done or Stop.
func (p *Printer) Start(label string, total int64) *Task {
	if p.Quiet() {
		return nil
	}
	t := &Task{p: p, label: label, total: total, start: p.now()}
	switch p.mode {
	case ModeBar:
		p.mu.Lock()
		if p.partial {
			io.WriteString(p.w, "\r\x1b[K")
		}
		p.partial = true
		p.mu.Unlock()
		if total > 0 {
			t.bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(p.line(label)),
				progressbar.OptionShowBytes(true),
				progressbar.OptionShowCount(),
				progressbar.OptionUseIECUnits(true),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(redraw),
				progressbar.OptionSetRenderBlankState(true),
			)
		}
	case ModeLines:
		if p.interval > 0 {
			t.stopCh = make(chan struct{})
			t.wg.Add(1)
			go t.tickEvery(p.interval)
		}
	}
	return t
}

func (t *Task) tickEvery(d time.Duration) {
	defer t.wg.Done()
	tk := time.NewTicker(d)
	defer tk.Stop()
	for {
		select {
		case <-t.stopCh:
			return
		case <-tk.C:
			t.Tick()
		}
	}
}

// Add counts n more bytes done. Safe for concurrent use.
func (t *Task) Add(n int64) {
	if t == nil {
		return
	}
	t.set(t.done.Add(n))
}

// Set sets the bytes done so far.
func (t *Task) Set(done int64) {
	if t == nil {
		return
	}
	t.done.Store(done)
	t.set(done)
}

// Items names what AddItems counts ("entries"; default "items") and
// returns t.
func (t *Task) Items(unit string) *Task {
	if t != nil {
		t.unit = unit
	}
	return t
}

// AddItems counts n more items (files, entries); once any are counted,
// the progress line shows them. Safe for concurrent use.
func (t *Task) AddItems(n int64) {
	if t == nil {
		return
	}
	t.items.Add(n)
}

// Bytes is the bytes counted so far.
func (t *Task) Bytes() int64 {
	if t == nil {
		return 0
	}
	return t.done.Load()
}

// Elapsed is the time since Start.
func (t *Task) Elapsed() time.Duration {
	if t == nil {
		return 0
	}
	return t.p.now().Sub(t.start)
}

// set redraws the bar; the bar ends on Done only, so a total that was an
// estimate never ends it early.
func (t *Task) set(done int64) {
	if t.p.mode != ModeBar {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	if t.bar == nil {
		// Unknown total: the line ModeLines would print, redrawn.
		if now := t.p.now(); now.Sub(t.drawn) >= redraw {
			t.drawn = now
			t.p.mu.Lock()
			io.WriteString(t.p.w, "\r\x1b[K"+t.p.line(t.Line()))
			t.p.mu.Unlock()
		}
		return
	}
	if it := t.itemsText(); it != "" {
		t.bar.Describe(t.p.line(t.label + " (" + it + ")"))
	}
	t.bar.Set64(min(done, t.total-1))
}

// itemsText is "42 entries", or "" before any item is counted.
func (t *Task) itemsText() string {
	n := t.items.Load()
	if n == 0 {
		return ""
	}
	unit := t.unit
	if unit == "" {
		unit = "items"
	}
	return fmt.Sprintf("%d %s", n, unit)
}

// Line is the progress line ModeLines prints every Interval:
// "LABEL 120.0 MiB / 1.0 GiB (11%), 85.3 MB/s, ETA 12s[, 42 entries]"
// (without " / TOTAL (P%)" and the ETA when the total is unknown).
func (t *Task) Line() string {
	if t == nil {
		return ""
	}
	done, el := t.done.Load(), t.Elapsed()
	var b strings.Builder
	b.WriteString(t.label + " " + Size(done))
	if t.total > 0 {
		fmt.Fprintf(&b, " / %s (%d%%)", Size(t.total), min(done*100/t.total, 100))
	}
	if r := Rate(done, el); r != "" {
		b.WriteString(", " + r)
	}
	if t.total > 0 && done > 0 && done < t.total && el > 0 {
		left := time.Duration(float64(el) * float64(t.total-done) / float64(done))
		b.WriteString(", ETA " + left.Round(time.Second).String())
	}
	if it := t.itemsText(); it != "" {
		b.WriteString(", " + it)
	}
	return b.String()
}

// Tick prints the progress line now in ModeLines (a ticker calls it every
// Interval); in other modes it does nothing.
func (t *Task) Tick() {
	if t == nil || t.p.mode != ModeLines {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	t.printed = true
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	io.WriteString(t.p.w, t.p.line(t.Line())+"\n")
}

// Done ends the task as complete: the bar is drawn full, or (ModeLines,
// after a periodic line) the final line is printed,
// "LABEL: SIZE in ELAPSED (RATE)[, 42 entries]"; a task shorter than
// one Interval prints nothing in ModeLines.
func (t *Task) Done() { t.end(true) }

// Stop ends the task without completing it (after a failure): the bar
// stays as it was and the line is ended. Stop after Done does nothing.
func (t *Task) Stop() { t.end(false) }

func (t *Task) end(complete bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.ended = true
	stop, printed := t.stopCh, t.printed
	t.mu.Unlock()
	if stop != nil {
		close(stop)
		t.wg.Wait()
	}
	p := t.p
	switch p.mode {
	case ModeBar:
		if t.bar != nil {
			if it := t.itemsText(); it != "" {
				t.bar.Describe(p.line(t.label + " (" + it + ")"))
			}
			if complete {
				t.bar.Finish()
			} else {
				t.bar.Exit()
			}
		}
		p.mu.Lock()
		p.endLine()
		p.mu.Unlock()
	case ModeLines:
		if !complete || !printed {
			return
		}
		line := FormatSummary(t.label, t.done.Load(), t.Elapsed(), t.itemsText())
		p.mu.Lock()
		io.WriteString(p.w, p.line(line)+"\n")
		p.mu.Unlock()
	}
}
