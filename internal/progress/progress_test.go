package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chestfs/chestfs/internal/ptytest"
)

// fakeClock is advanced by hand: no test here depends on real time.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{time.Unix(1e9, 0)} }
func linesPrinter(w io.Writer, c *fakeClock) *Printer {
	return New(w, Options{Prefix: "chestfs pack", Mode: ModeLines, Interval: -1, Now: c.now})
}

func TestLinesFormat(t *testing.T) {
	var out bytes.Buffer
	clk := newClock()
	p := linesPrinter(&out, clk)
	if p.Mode() != ModeLines {
		t.Fatalf("mode %v", p.Mode())
	}
	p.Step("building ext4 (100 MiB)") // a terminal's only
	quick := p.Start("sizing", 10)
	quick.Add(10)
	quick.Done() // no periodic line yet: no final line either
	task := p.Start("encrypting", 100<<20)
	task.Add(25 << 20)
	clk.add(5 * time.Second)
	task.Tick()
	task.Add(75 << 20)
	clk.add(15 * time.Second)
	task.Done()
	task.Tick() // after Done: nothing
	p.Summary("packed img.luks", 100<<20+16<<20, 21*time.Second, "uuid 1234", "", "verity root hash abcd")
	want := "chestfs pack: encrypting 25.0 MiB / 100.0 MiB (25%), 5.2 MB/s, ETA 15s\n" +
		"chestfs pack: encrypting: 100.0 MiB in 20s (5.2 MB/s)\n" +
		"chestfs pack: packed img.luks: 116.0 MiB in 21s (5.8 MB/s), uuid 1234, verity root hash abcd\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestLinesUnknownTotalAndItems(t *testing.T) {
	var out bytes.Buffer
	clk := newClock()
	p := New(&out, Options{Mode: ModeLines, Interval: -1, Now: clk.now})
	task := p.Start("extracting", 0).Items("entries")
	task.Add(3000)
	task.AddItems(2)
	task.Tick() // no time passed: no rate
	clk.add(2 * time.Second)
	task.AddItems(40)
	task.Tick()
	task.Stop() // a failure: no final line
	task.Done() // after Stop: nothing
	want := "extracting 2.9 KiB, 2 entries\n" +
		"extracting 2.9 KiB, 0.0 MB/s, 42 entries\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
}

// TestQuietPrintsNothing: ModeQuiet, a nil writer and a nil Printer are
// all silent, summaries included, and their tasks still work as no-ops.
func TestQuietPrintsNothing(t *testing.T) {
	var out bytes.Buffer
	for name, p := range map[string]*Printer{
		"ModeQuiet": New(&out, Options{Mode: ModeQuiet, Prefix: "x"}),
		"nil w":     New(nil, Options{Mode: ModeLines}),
		"nil":       nil,
		"For(nil)":  For(nil, "x"),
	} {
		if !p.Quiet() {
			t.Errorf("%s: not quiet", name)
		}
		p.Step("step")
		task := p.Start("job", 10)
		task.Add(5)
		task.AddItems(1)
		task.Tick()
		task.Done()
		task.Stop()
		p.Flush()
		p.Summary("did", 10, time.Second)
		if _, err := p.Write([]byte("text\n")); err != nil {
			t.Errorf("%s: Write: %v", name, err)
		}
		if w := task.Writer(&out); w != &out {
			t.Errorf("%s: Writer of a nil task is not the writer itself", name)
		}
	}
	if out.Len() != 0 {
		t.Errorf("quiet printers wrote %q", out.String())
	}
}

// TestAutoMode: a buffer or a regular file gets lines, a pseudo-terminal a bar.
func TestAutoMode(t *testing.T) {
	if m := New(&bytes.Buffer{}, Options{}).Mode(); m != ModeLines {
		t.Errorf("buffer: mode %v", m)
	}
	f, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m := For(f, "x").Mode(); m != ModeLines {
		t.Errorf("file: mode %v", m)
	}
	_, slave := ptytest.Open(t)
	if m := For(slave, "x").Mode(); m != ModeBar {
		t.Errorf("pty: mode %v", m)
	}
	p := New(&bytes.Buffer{}, Options{Mode: ModeQuiet})
	if For(p, "other") != p {
		t.Error("For does not pass a *Printer through")
	}
}

// TestBar: ModeBar draws the library's bar with label, bytes and percent,
// ends it at 100% on Done and leaves the cursor on a new line.
func TestBar(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, Options{Prefix: "chestfs upload", Mode: ModeBar})
	p.Step("creating blob")
	task := p.Start("uploading", 8<<20)
	task.Add(4 << 20)
	task.Add(4 << 20) // the total: the bar still ends on Done only
	if strings.Contains(out.String(), "100%") {
		t.Errorf("bar full before Done: %q", out.String())
	}
	task.Done()
	p.Summary("uploaded", 8<<20, 2*time.Second)
	s := out.String()
	for _, want := range []string{"\r\x1b[Kchestfs upload: creating blob", "chestfs upload: uploading", "100%", "8.0 MiB",
		"\nchestfs upload: uploaded: 8.0 MiB in 2s (4.2 MB/s)\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("bar output lacks %q: %q", want, s)
		}
	}
}

// TestBarStopEndsLine: a stopped bar is not drawn full, and what follows
// starts on a new line.
func TestBarStopEndsLine(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, Options{Mode: ModeBar})
	task := p.Start("encrypting", 100)
	task.Add(10)
	task.Stop()
	p.Flush()
	s := out.String()
	if strings.Contains(s, "100%") || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("stopped bar: %q", s)
	}
	out.Reset()
	p.Step("half a line")
	if _, err := io.WriteString(p, "warning\n"); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "\r\x1b[Khalf a line\r\x1b[Kwarning\n" {
		t.Errorf("Write after a step: %q", got)
	}
}

func TestCounters(t *testing.T) {
	var out bytes.Buffer
	p := New(&out, Options{Mode: ModeLines, Interval: -1, Now: newClock().now})
	task := p.Start("copy", 0)
	var dst bytes.Buffer
	if _, err := io.Copy(task.Writer(&dst), task.Reader(strings.NewReader("hello"))); err != nil {
		t.Fatal(err)
	}
	if got := task.Bytes(); got != 10 { // read 5 and written 5
		t.Errorf("Reader+Writer counted %d, want 10", got)
	}
	f, err := os.Create(t.TempDir() + "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := task.WriterAt(f).WriteAt([]byte("abc"), 100); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, _ := task.ReaderAt(f).ReadAt(buf, 98); n != 5 {
		t.Errorf("ReadAt read %d", n)
	}
	if got := task.Bytes(); got != 18 {
		t.Errorf("counted %d, want 18", got)
	}
	task.Set(7)
	if got := task.Bytes(); got != 7 {
		t.Errorf("after Set: %d", got)
	}
}

func TestFormatters(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Size(0), "0 B"}, {Size(1023), "1023 B"}, {Size(1536), "1.5 KiB"}, {Size(1 << 30), "1.0 GiB"},
		{Rate(100e6, 2*time.Second), "50.0 MB/s"}, {Rate(5, 0), ""},
		{Duration(1234 * time.Millisecond), "1.2s"}, {Duration(90*time.Second + 400*time.Millisecond), "1m30s"},
		{FormatSummary("", 2048, time.Second), "2.0 KiB in 1s (0.0 MB/s)"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// TestBarUnknownTotal: on a terminal, a task without a total redraws the
// progress line, at most every 100 ms of the (fake) clock.
func TestBarUnknownTotal(t *testing.T) {
	var out bytes.Buffer
	clk := newClock()
	p := New(&out, Options{Prefix: "x", Mode: ModeBar, Now: clk.now})
	task := p.Start("extracting", 0).Items("entries")
	task.AddItems(3)
	task.Add(2048)
	task.Add(2048) // too soon: not drawn
	clk.add(time.Second)
	task.Add(1024)
	task.Done()
	want := "\r\x1b[Kx: extracting 2.0 KiB, 3 entries" + "\r\x1b[Kx: extracting 5.0 KiB, 0.0 MB/s, 3 entries" + "\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}
