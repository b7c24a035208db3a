package blobsrc

// Bounded waits: an overall deadline per read (IOTimeout), a watch that
// abandons a try whose connection stopped delivering (StallTimeout,
// MinRate), hedged GETs (HedgeAfter) and a Retry-After shared by every
// request of a Blob. See docs/faults.md for what each fault costs a reader.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
)

// ioDeadline is the cause of a read's context when IOTimeout ran out.
type ioDeadline struct{ d time.Duration }

func (e *ioDeadline) Error() string { return fmt.Sprintf("I/O timeout of %v", e.d) }

// deadline bounds ctx by IOTimeout and ends it on Close.
func (b *Blob) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	var cancel1 context.CancelFunc
	if b.o.IOTimeout > 0 {
		ctx, cancel1 = context.WithTimeoutCause(ctx, b.o.IOTimeout, &ioDeadline{b.o.IOTimeout})
	}
	ctx, cancel2 := context.WithCancel(ctx)
	var stop func() bool
	if b.ctx != nil { // nil during Open
		stop = context.AfterFunc(b.ctx, cancel2)
	}
	return ctx, func() {
		if stop != nil {
			stop()
		}
		cancel2()
		if cancel1 != nil {
			cancel1()
		}
	}
}

// ctxError is the error of a read whose context ended: ErrTimeout with the
// last try's error when the I/O deadline ran out, else the context's.
func (b *Blob) ctxError(ctx context.Context, tries int, last error) error {
	var dl *ioDeadline
	if errors.As(context.Cause(ctx), &dl) {
		if last == nil {
			return fmt.Errorf("%w (%v, %d tries)", ErrTimeout, dl.d, tries)
		}
		return fmt.Errorf("%w (%v, %d tries; last: %v)", ErrTimeout, dl.d, tries, last)
	}
	return ctx.Err()
}

// progress is what one try has received so far; the stall watch reads it.
type progress struct {
	headersAt atomic.Int64 // UnixNano of the answer; 0: none yet
	bytes     atomic.Int64
}

func (p *progress) answered() { p.headersAt.CompareAndSwap(0, time.Now().UnixNano()) }

type countReader struct {
	r io.Reader
	p *progress
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.bytes.Add(int64(n))
	return n, err
}

// stallError: a try abandoned by the watch. Transient: the next try gets a
// new connection.
type stallError struct{ msg string }

func (e *stallError) Error() string { return e.msg }

// watch abandons the try (through abandon) when no answer came within
// StallTimeout, or when the body then brought fewer than MinRate bytes per
// second over a stretch of at least half a StallTimeout. The returned func
// stops the watch.
func (b *Blob) watch(p *progress, abandon context.CancelCauseFunc) func() {
	st := b.o.StallTimeout
	if st <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	var since time.Time // start of the body stretch being measured
	last := int64(0)
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(st, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		now, n := time.Now(), p.bytes.Load()
		at := p.headersAt.Load()
		if at == 0 {
			abandon(&stallError{fmt.Sprintf("no answer within %v (stalled connection)", st)})
			return
		}
		if since.IsZero() {
			since = time.Unix(0, at)
		}
		if span := now.Sub(since); span >= st/2 {
			if float64(n-last) < float64(max(b.o.MinRate, 1))*span.Seconds() {
				abandon(&stallError{fmt.Sprintf("body stalled: %d bytes in %v", n-last, span.Round(time.Millisecond))})
				return
			}
			since, last = now, n
		}
		t.Reset(st / 2)
	})
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		t.Stop()
	}
}

// runTry runs one try under TryTimeout and the stall watch.
func (b *Blob) runTry(ctx context.Context, try func(context.Context, *progress) error) error {
	wctx, abandon := context.WithCancelCause(ctx)
	defer abandon(nil)
	tctx, cancel := context.WithTimeout(wctx, b.o.TryTimeout)
	defer cancel()
	p := &progress{}
	stop := b.watch(p, abandon)
	err := try(tctx, p)
	stop()
	if err != nil && ctx.Err() == nil {
		var se *stallError
		if errors.As(context.Cause(wctx), &se) {
			b.stalls.Add(1)
			return se
		}
	}
	return err
}

type dlResult struct {
	i    int
	resp blob.DownloadStreamResponse
	err  error
}

// download sends the ranged GET and, when it has not answered within
// HedgeAfter, a second one; the first success wins and the other is
// cancelled. done releases the winner's request after its body is read.
func (b *Blob) download(ctx context.Context, o *blob.DownloadStreamOptions) (resp blob.DownloadStreamResponse, done func(), err error) {
	if b.o.HedgeAfter <= 0 {
		b.requests.Add(1)
		resp, err := b.client.DownloadStream(ctx, o)
		return resp, func() {}, err
	}
	ch := make(chan dlResult, 2)
	var cancels [2]context.CancelFunc
	launch := func(i int) {
		rctx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		oc := *o
		b.requests.Add(1)
		go func() {
			r, err := b.client.DownloadStream(rctx, &oc)
			ch <- dlResult{i, r, err}
		}()
	}
	launch(0)
	t := time.NewTimer(b.o.HedgeAfter)
	defer t.Stop()
	inflight, launched := 1, 1
	for {
		select {
		case <-t.C:
			if launched == 1 {
				b.hedges.Add(1)
				launch(1)
				launched, inflight = 2, inflight+1
			}
		case r := <-ch:
			inflight--
			if r.err == nil {
				if r.i == 1 {
					b.hedgeWins.Add(1)
				}
				if inflight > 0 {
					cancels[1-r.i]()
					go func() { // the loser: release its connection
						if l := <-ch; l.err == nil {
							l.resp.Body.Close()
						}
					}()
				}
				return r.resp, cancels[r.i], nil
			}
			cancels[r.i]()
			err = r.err
			if inflight == 0 {
				// A quick failure (a 503) is not hedged: the retry
				// loop backs off instead.
				return blob.DownloadStreamResponse{}, func() {}, err
			}
		}
	}
}

// retryAfter is the wait a response asked for (Retry-After in seconds or
// as an HTTP date), capped at maxRetryAfter; ok is false without one.
func retryAfter(err error, now time.Time) (time.Duration, bool) {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.RawResponse == nil {
		return 0, false
	}
	return parseRetryAfter(re.RawResponse.Header.Get("Retry-After"), now)
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		d = time.Duration(min(s, int(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), maxRetryAfter), true
}

// holdOff records that no request should go out before now+d.
func (b *Blob) holdOff(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := b.notBefore.Load()
		if cur >= until || b.notBefore.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitTurn waits until the service's Retry-After has passed. When that is
// past ctx's deadline it fails at once: waiting would only end in the same
// error later.
func (b *Blob) waitTurn(ctx context.Context, last error) error {
	wait := time.Until(time.Unix(0, b.notBefore.Load()))
	if wait <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
		if last == nil {
			last = errors.New("the service asked for a pause")
		}
		return fmt.Errorf("%w: the service asked to wait %v more (Retry-After), past this read's deadline; last: %v",
			ErrTimeout, wait.Round(time.Millisecond), last)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
