package blobsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chestfs/chestfs/internal/retryafter"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

func TestParseBlobURL(t *testing.T) {
	for _, tc := range []struct {
		url, account string
		path, ok     bool
	}{
		{"https://acct.blob.core.windows.net/c/b.img", "acct", false, true},
		{"https://acct.blob.core.windows.net/c/dir/b.img?sv=x&sig=y", "acct", false, true},
		{"http://127.0.0.1:10000/devstoreaccount1/c/b", "devstoreaccount1", true, true},
		{"http://localhost:10000/devstoreaccount1/c/b", "devstoreaccount1", true, true},
		{"http://azurite:10000/devstoreaccount1/c/b", "devstoreaccount1", true, true},
		{"https://acct.blob.core.windows.net/c", "", false, false},
		{"https://acct.blob.core.windows.net/c/", "", false, false},
		{"http://127.0.0.1:10000/devstoreaccount1/c", "", true, false},
		{"ftp://acct.blob.core.windows.net/c/b", "", false, false},
		{"/local/path", "", false, false},
		{"https://%zz/c/b", "", false, false},
	} {
		b, err := parseBlobURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.url, err)
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "sig=") {
				t.Errorf("%s: error shows the SAS: %v", tc.url, err)
			}
			continue
		}
		if b.account != tc.account || b.path != tc.path || strings.Contains(b.String(), "?") {
			t.Errorf("%s: account %q path %v string %q", tc.url, b.account, b.path, b.String())
		}
	}
}

func FuzzParseBlobURL(f *testing.F) {
	for _, s := range []string{
		"https://acct.blob.core.windows.net/c/b.img?sv=2024&sig=abc%3D",
		"http://127.0.0.1:10000/devstoreaccount1/c/b",
		"https://user:pw@acct.blob.core.windows.net/c/b#frag",
		"http://[::1]:10000/devstoreaccount1/c/b",
		"", "https://", "http:///c/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseBlobURL(s)
		if err != nil {
			return
		}
		out := b.String()
		// No query (a SAS) and no user info; "@" may be in the path (blob
		// names allow it).
		_, rest, _ := strings.Cut(out, "://")
		authority, _, _ := strings.Cut(rest, "/")
		if strings.Contains(out, "?") || strings.Contains(authority, "@") || b.account == "" {
			t.Fatalf("%q: %q account %q", s, out, b.account)
		}
	})
}

func TestResolveAuth(t *testing.T) {
	const azure = "https://acct.blob.core.windows.net/c/b"
	const sasURL = azure + "?sv=2024&sig=abc"
	const local = "http://127.0.0.1:10000/devstoreaccount1/c/b"
	for _, tc := range []struct {
		mode, url, key string
		want           string // "" means an error
	}{
		{"", sasURL, "k", AuthSAS},
		{"auto", azure, "k", AuthSharedKey},
		{"auto", azure, "", AuthAzureAD},
		{"", "https://acct.blob.core.usgovcloudapi.net/c/b", "", AuthAzureAD},
		{"auto", local, "", AuthAnonymous},
		{"auto", local, "k", AuthSharedKey},
		{"auto", "https://evil.example.com/c/b", "", AuthAnonymous},
		{"sas", azure, "", ""},
		{"sas", sasURL, "", AuthSAS},
		{"sharedkey", azure, "", ""},
		{"SharedKey", azure, "k", AuthSharedKey},
		{"anonymous", sasURL, "", AuthAnonymous},
		{"azuread", local, "", AuthAzureAD},
		{"kerberos", azure, "", ""},
	} {
		t.Setenv(EnvKey, "")
		b, err := parseBlobURL(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := resolveAuth(credentials{Auth: tc.mode, AccountKey: tc.key}, b)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%s %s key %q: %q, %v; want %q", tc.mode, tc.url, tc.key, got, err, tc.want)
		}
	}
	// The key may also come from the environment.
	t.Setenv(EnvKey, "a2V5")
	b, _ := parseBlobURL(azure)
	if got, _ := resolveAuth(credentials{}, b); got != AuthSharedKey {
		t.Errorf("key from env: %q", got)
	}
}

func TestSharedKeyAccountMismatch(t *testing.T) {
	t.Setenv(EnvAccount, "other")
	b, _ := parseBlobURL("https://acct.blob.core.windows.net/c/b")
	_, err := newClientFactory(b, credentials{AccountKey: "a2V5"}, AuthSharedKey, http.DefaultClient, policy.RetryOptions{})
	if err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("got %v", err)
	}
	_, err = newClientFactory(b, credentials{AccountName: "acct", AccountKey: "not base64!"}, AuthSharedKey, http.DefaultClient, policy.RetryOptions{})
	if err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Fatalf("got %v", err)
	}
}

func responseError(status int, code string, header ...string) error {
	req, _ := http.NewRequest(http.MethodGet, "https://acct.blob.core.windows.net/c/b?sig=SECRET", nil)
	resp := &http.Response{StatusCode: status, Header: http.Header{}, Request: req, Body: http.NoBody}
	if code != "" {
		resp.Header.Set("x-ms-error-code", code)
	}
	for i := 0; i+1 < len(header); i += 2 {
		resp.Header.Set(header[i], header[i+1])
	}
	return runtime.NewResponseError(resp)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err       error
		transient bool
		sentinel  error
		words     string
	}{
		{responseError(503, "ServerBusy"), true, nil, "HTTP 503 ServerBusy"},
		{responseError(500, "InternalError"), true, nil, "500"},
		{responseError(429, ""), true, nil, "429 Too Many Requests"},
		{responseError(403, "AuthenticationFailed"), false, ErrAccessDenied, "403 AuthenticationFailed (the SAS or account key"},
		{responseError(404, "BlobNotFound"), false, ErrNotFound, "404 BlobNotFound"},
		{responseError(412, "ConditionNotMet"), false, errChanged, ""},
		{responseError(400, "InvalidHeaderValue"), false, nil, "400 InvalidHeaderValue"},
		{errChanged, false, errChanged, ""},
		{&credError{errors.New("no identity")}, false, ErrAccessDenied, "Azure AD token: no identity"},
		{&shortError{"cut"}, true, nil, "cut"},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true, nil, "unexpected EOF"},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true, nil, "connection reset"},
		{context.DeadlineExceeded, true, nil, "no answer within 1s"},
		{errors.New("something else"), false, nil, "something else"},
	} {
		transient, out := classify(tc.err, time.Second, access{})
		if transient != tc.transient || (tc.sentinel != nil && !errors.Is(out, tc.sentinel)) || !strings.Contains(out.Error(), tc.words) {
			t.Errorf("%v: transient %v, %v", tc.err, transient, out)
		}
		if strings.Contains(out.Error(), "SECRET") || strings.Contains(out.Error(), "\n") {
			t.Errorf("%v: message %q", tc.err, out)
		}
	}
}

// Retry-After is honoured in full (not capped at MaxRetryDelay), in
// seconds or as an HTTP date, up to retryafter.Max.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{"0", 0, true},
		{"100", retryafter.Max, true},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"", 0, false}, {"-3", 0, false}, {"soon", 0, false},
	} {
		d, ok := retryAfter(responseError(503, "ServerBusy", "Retry-After", tc.v), now)
		if d != tc.want || ok != tc.ok {
			t.Errorf("Retry-After %q: %v %v, want %v %v", tc.v, d, ok, tc.want, tc.ok)
		}
	}
	if _, ok := retryAfter(errors.New("x"), now); ok {
		t.Error("a non-HTTP error has a Retry-After")
	}
	b := &Blob{o: Options{RetryDelay: time.Millisecond, MaxRetryDelay: 3 * time.Second}}
	for attempt := range 40 {
		if d := b.backoff(attempt); d <= 0 || d > 3*time.Second {
			t.Fatalf("attempt %d: %v", attempt, d)
		}
	}
}

var _ azcore.TokenCredential = tagCredential{}

// TestHints: the hint names what the credentials used lack.
func TestHints(t *testing.T) {
	anonAuto, anon := access{mode: AuthAnonymous, auto: true}, access{mode: AuthAnonymous}
	sasR, sasW := access{mode: AuthSAS, auto: true}, access{mode: AuthSAS, write: true}
	aadR, aadW := access{mode: AuthAzureAD}, access{mode: AuthAzureAD, write: true}
	key := access{mode: AuthSharedKey}
	for _, tc := range []struct {
		status int
		code   string
		a      access
		want   string
	}{
		{403, "AuthorizationFailure", anonAuto, "(no credentials were found: give a SAS (--sas-file or $CHESTFS_SAS), a shared key"},
		{401, "NoAuthenticationInformation", anonAuto, "(no credentials were found: "},
		{403, "AuthorizationFailure", anon, "(anonymous access was refused: give a SAS"},
		{404, "ResourceNotFound", anonAuto, "(no such blob, or a private container read without credentials: give a SAS"},
		{409, "PublicAccessNotPermitted", anonAuto, "(anonymous access is disabled on this account: give a SAS"},
		{404, "BlobNotFound", anonAuto, ""},
		{403, "AuthorizationPermissionMismatch", sasR, "(the SAS lacks read permission: it needs sp=r)"},
		{403, "AuthorizationPermissionMismatch", sasW, "(the SAS lacks write permission"},
		{403, "AuthorizationPermissionMismatch", aadR, "(the identity needs a data role such as Storage Blob Data Reader)"},
		{403, "AuthorizationPermissionMismatch", aadW, "(the identity needs a data role such as Storage Blob Data Contributor)"},
		{403, "AuthorizationFailure", aadR, "data role such as Storage Blob Data Reader, or the account's network rules"},
		{403, "AuthorizationFailure", sasR, "(the SAS was refused"},
		{403, "AuthenticationFailed", sasR, "(the SAS is wrong or expired)"},
		{403, "AuthenticationFailed", key, "(the account key is wrong)"},
		{404, "ContainerNotFound", sasW, "--create-container"},
		{404, "ContainerNotFound", sasR, ""},
	} {
		got := hint(tc.status, tc.code, tc.a)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%d %s %+v: %q, want %q", tc.status, tc.code, tc.a, got, tc.want)
		}
		if tc.a.mode != AuthAzureAD && strings.Contains(got, "role") {
			t.Errorf("%d %s %+v: %q names a data role", tc.status, tc.code, tc.a, got)
		}
	}
}
