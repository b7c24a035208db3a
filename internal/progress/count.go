package progress

import "io"

// Writer returns w counting the bytes written into t; with a nil t it
// returns w itself.
func (t *Task) Writer(w io.Writer) io.Writer {
	if t == nil {
		return w
	}
	return &countWriter{w, t}
}

// WriterAt returns w counting the bytes written into t (decrypt's sparse
// copy skips zero blocks, so count its reads instead: ReaderAt).
func (t *Task) WriterAt(w io.WriterAt) io.WriterAt {
	if t == nil {
		return w
	}
	return &countWriterAt{w, t}
}

// Reader returns r counting the bytes read into t.
func (t *Task) Reader(r io.Reader) io.Reader {
	if t == nil {
		return r
	}
	return &countReader{r, t}
}

// ReaderAt returns r counting the bytes read into t.
func (t *Task) ReaderAt(r io.ReaderAt) io.ReaderAt {
	if t == nil {
		return r
	}
	return &countReaderAt{r, t}
}

type countWriter struct {
	w io.Writer
	t *Task
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.Add(int64(n))
	return n, err
}

type countWriterAt struct {
	w io.WriterAt
	t *Task
}

func (c *countWriterAt) WriteAt(p []byte, off int64) (int, error) {
	n, err := c.w.WriteAt(p, off)
	c.t.Add(int64(n))
	return n, err
}

type countReader struct {
	r io.Reader
	t *Task
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(int64(n))
	return n, err
}

type countReaderAt struct {
	r io.ReaderAt
	t *Task
}

func (c *countReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.t.Add(int64(n))
	return n, err
}
