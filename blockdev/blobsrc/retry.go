package blobsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// errChanged is returned by a try when the response carries another ETag.
var errChanged = errors.New("ETag differs from the one pinned at open")

// shortError is a response that ended early or had the wrong length: the
// connection broke, so try again.
type shortError struct{ msg string }

func (e *shortError) Error() string { return e.msg }

// retry runs try until it succeeds, fails permanently, the retries run out or
// ctx is done (its deadline is the read's IOTimeout). Each try gets its own
// TryTimeout and stall watch; no try goes out before a Retry-After the
// service asked for.
func (b *Blob) retry(ctx context.Context, op string, try func(context.Context, *progress) error) error {
	var last error
	for attempt := 0; ; attempt++ {
		if err := b.waitTurn(ctx, last); err != nil {
			if ctx.Err() != nil {
				return b.ctxError(ctx, attempt, last)
			}
			return err
		}
		err := b.runTry(ctx, try)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return b.ctxError(ctx, attempt+1, last)
		}
		transient, out := b.classify(err)
		if !transient {
			return out
		}
		last = out
		if attempt >= b.o.Retries {
			return fmt.Errorf("%w (gave up after %d tries)", out, attempt+1)
		}
		if ra, ok := retryAfter(err, time.Now()); ok {
			b.holdOff(ra)
		}
		d := b.backoff(attempt)
		b.retries.Add(1)
		b.o.Logger.Debug("azblob: retrying", "op", op, "url", b.url.String(), "try", attempt+1, "delay", d, "err", out.Error())
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return b.ctxError(ctx, attempt+1, last)
		}
	}
}

// backoff is the jittered exponential delay before retry attempt+1; a
// Retry-After comes on top through holdOff.
func (b *Blob) backoff(attempt int) time.Duration {
	d := b.o.RetryDelay << min(attempt, 20)
	if d > b.o.MaxRetryDelay || d <= 0 {
		d = b.o.MaxRetryDelay
	}
	// Jitter in [d/2, d): parallel readers do not retry in lockstep.
	return d/2 + rand.N(d/2+1)
}

func (b *Blob) classify(err error) (transient bool, out error) {
	transient, out = classify(err, b.o.TryTimeout, access{mode: b.auth, auto: isAuto(b.o.Auth)})
	var dns *net.DNSError
	if !transient && b.ctx != nil && errors.As(err, &dns) && dns.IsNotFound {
		// The name resolved at Open: "not found" now is the resolver's
		// trouble, worth another try.
		return true, out
	}
	if errors.Is(out, errChanged) {
		return false, b.changed()
	}
	return transient, out
}

// classify says whether err is worth another try, and returns the error to
// report: one line with the status, Azure's error code and a hint for a as
// the request's credentials. A version change comes back as errChanged.
func classify(err error, tryTimeout time.Duration, a access) (transient bool, out error) {
	var re *azcore.ResponseError
	var ce *credError
	var se *shortError
	var st *stallError
	var dns *net.DNSError
	switch {
	case errors.Is(err, errChanged):
		return false, errChanged
	case errors.As(err, &ce):
		return false, fmt.Errorf("%w (%w)", ce, ErrAccessDenied)
	case errors.As(err, &re):
		code := re.ErrorCode
		if code == "" {
			code = http.StatusText(re.StatusCode)
		}
		switch re.StatusCode {
		case http.StatusPreconditionFailed:
			return false, errChanged
		case http.StatusNotFound:
			return false, fmt.Errorf("HTTP 404 %s%s: %w", code, hint(re.StatusCode, code, a), ErrNotFound)
		case http.StatusUnauthorized, http.StatusForbidden:
			return false, fmt.Errorf("HTTP %d %s%s: %w", re.StatusCode, code, hint(re.StatusCode, code, a), ErrAccessDenied)
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true, fmt.Errorf("HTTP %d %s", re.StatusCode, code)
		}
		return false, fmt.Errorf("HTTP %d %s%s", re.StatusCode, code, hint(re.StatusCode, code, a))
	case errors.As(err, &se):
		return true, se
	case errors.As(err, &st):
		return true, st
	case errors.Is(err, context.DeadlineExceeded):
		return true, fmt.Errorf("no answer within %v", tryTimeout)
	case errors.As(err, &dns) && dns.IsNotFound:
		return false, fmt.Errorf("host %s not found", dns.Name)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return true, netMessage(err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true, netMessage(err)
	}
	return false, err
}

// netMessage keeps the innermost cause: *url.Error would repeat the URL, SAS
// and all.
func netMessage(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("connection closed without an answer")
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// access is how a request was authorised, for hints.
type access struct {
	mode  string // resolved auth mode (AuthSAS, ...)
	auto  bool   // the mode was chosen by auto: nothing more was configured
	write bool   // an upload: the request writes
}

func isAuto(asked string) bool { return asked == "" || strings.EqualFold(asked, AuthAuto) }

// credHelp says how to give credentials (the CLI's flags and variables).
const credHelp = "give a SAS (--sas-file or $CHESTFS_SAS), a shared key ($AZURE_STORAGE_ACCOUNT and $AZURE_STORAGE_KEY) or an Azure AD identity (--auth azuread)"

// hint explains an error code for the credentials used: a refused
// anonymous request lacks credentials, a SAS its permission, an Azure AD
// identity its data role.
func hint(status int, code string, a access) string {
	if a.mode == AuthAnonymous {
		if h := anonymousHint(status, code, a.auto); h != "" {
			return h
		}
	}
	switch code {
	case "AuthenticationFailed":
		switch a.mode {
		case AuthSAS:
			return " (the SAS is wrong or expired)"
		case AuthSharedKey:
			return " (the account key is wrong)"
		case AuthAzureAD:
			return " (the Azure AD token was refused: is the identity in the account's tenant?)"
		}
		return " (the SAS or account key is wrong or expired)"
	case "AuthorizationPermissionMismatch":
		return permissionHint(a)
	case "AuthorizationFailure", "AuthorizationPermissionDenied":
		switch a.mode {
		case AuthSAS:
			return " (the SAS was refused: wrong, expired or not for this blob, or the account's network rules block this client)"
		case AuthSharedKey:
			return " (the account key was refused, or the account's network rules block this client)"
		case AuthAzureAD:
			return " (the identity was refused: it needs a data role such as " + dataRole(a.write) +
				", or the account's network rules block this client)"
		}
		return " (the SAS, key or identity was refused, or may not read this blob)"
	case "NoAuthenticationInformation":
		return " (the container is private: " + credHelp + ")"
	case "PublicAccessNotPermitted":
		return " (anonymous access is disabled on this account)"
	case "ContainerNotFound":
		if a.write {
			return " (CreateContainer, --create-container, creates it)"
		}
	case "ResourceNotFound":
		return " (no such blob, or a private container read anonymously)"
	}
	return ""
}

// anonymousHint: a refusal of a request without credentials.
func anonymousHint(status int, code string, auto bool) string {
	why := "anonymous access was refused"
	if auto {
		why = "no credentials were found"
	}
	switch {
	case code == "PublicAccessNotPermitted":
		why = "anonymous access is disabled on this account"
	case code == "ResourceNotFound" && status == http.StatusNotFound:
		why = "no such blob, or a private container read without credentials"
	case status != http.StatusUnauthorized && status != http.StatusForbidden:
		return ""
	}
	return " (" + why + ": " + credHelp + ")"
}

// permissionHint: the credentials are valid but may not do this.
func permissionHint(a access) string {
	if a.mode == AuthSAS {
		if a.write {
			return " (the SAS lacks write permission: it needs create and write, sp=cw)"
		}
		return " (the SAS lacks read permission: it needs sp=r)"
	}
	return " (the identity needs a data role such as " + dataRole(a.write) + ")"
}

func dataRole(write bool) string {
	if write {
		return "Storage Blob Data Contributor"
	}
	return "Storage Blob Data Reader"
}

// changed logs the version change once and returns the error every failing
// read reports.
func (b *Blob) changed() error {
	b.changedOnce.Do(func() {
		b.o.Logger.Error("azblob: the blob was modified after it was opened; refusing to read bytes of another version (remount to see the new version)",
			"url", b.url.String(), "etag", string(b.etag))
	})
	return fmt.Errorf("etag %s: %w", b.etag, ErrBlobChanged)
}

func isCredError(err error) bool {
	var ce *credError
	return errors.As(err, &ce)
}
