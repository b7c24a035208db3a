package blobsrc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/chestfs/chestfs/internal/loopback"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

// Auth modes accepted in Options.Auth and UploadOptions.Auth (the CLI's --auth).
const (
	AuthAuto      = "auto"
	AuthAnonymous = "anonymous"
	AuthSAS       = "sas"
	AuthAzureAD   = "azuread"
	AuthSharedKey = "sharedkey"
)

// Environment variables read for shared-key access (the names Azure's own tools use).
const (
	EnvAccount = "AZURE_STORAGE_ACCOUNT"
	EnvKey     = "AZURE_STORAGE_KEY"
)

// azureBlobSuffixes are the blob endpoints of the public and sovereign clouds;
// only these get an Azure AD token in auto mode, so that a token is never sent
// to an arbitrary host.
var azureBlobSuffixes = []string{
	".blob.core.windows.net",
	".blob.core.chinacloudapi.cn",
	".blob.core.usgovcloudapi.net",
	".blob.storage.azure.net",
}

// IsURL reports whether s names a blob by URL (http or https) rather than a
// local path.
func IsURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return (scheme == "http" || scheme == "https") && u.Host != ""
}

// blobURL is a parsed, checked blob URL.
type blobURL struct {
	u       *url.URL
	account string // storage account, from the host or (path style) the first path segment
	path    bool   // path style (Azurite, http://127.0.0.1:10000/ACCOUNT/CONTAINER/BLOB)
}

// parseBlobURL checks that raw names one blob in one of the two URL forms.
func parseBlobURL(raw string) (*blobURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, SAS included: say only what is wrong.
		return nil, fmt.Errorf("azblob: malformed blob URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("azblob: %s: not an http(s) blob URL", redact(u))
	}
	b := &blobURL{u: u}
	host := u.Hostname()
	segs := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if net.ParseIP(host) != nil || host == "localhost" || !strings.Contains(host, ".") {
		// Path style as the emulator serves it: the account comes first.
		b.path = true
		if len(segs) < 3 || segs[0] == "" || segs[1] == "" || segs[len(segs)-1] == "" {
			return nil, fmt.Errorf("azblob: %s: want http://HOST:PORT/ACCOUNT/CONTAINER/BLOB", redact(u))
		}
		b.account = segs[0]
	} else {
		if len(segs) < 2 || segs[0] == "" || segs[len(segs)-1] == "" {
			return nil, fmt.Errorf("azblob: %s: want https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB", redact(u))
		}
		b.account, _, _ = strings.Cut(host, ".")
		if b.account == "" {
			return nil, fmt.Errorf("azblob: %s: no storage account in the host name", redact(u))
		}
	}
	return b, nil
}

// ErrInsecureHTTP: a plain http URL to a host other than loopback, refused
// before any request: a SAS or key would cross the network in clear text.
var ErrInsecureHTTP = errors.New("plain http is allowed only to loopback (use https, or AllowHTTP)")

// checkTransport refuses http to a non-loopback host unless allowHTTP.
func (b *blobURL) checkTransport(allowHTTP bool) error {
	if strings.EqualFold(b.u.Scheme, "https") || allowHTTP || loopback.Host(b.u.Hostname()) {
		return nil
	}
	return fmt.Errorf("azblob: %s: %w", b, ErrInsecureHTTP)
}

func (b *blobURL) hasSAS() bool { return b.u.Query().Has("sig") }

func (b *blobURL) isAzure() bool {
	h := strings.ToLower(b.u.Hostname())
	for _, s := range azureBlobSuffixes {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// String is the URL without its query string: a SAS is a secret and must not
// reach logs or error messages.
func (b *blobURL) String() string { return redact(b.u) }

func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	c.ForceQuery = false
	c.User = nil
	c.Fragment = ""
	return c.String()
}

// credentials carries everything a client constructor needs.
type credentials struct {
	Auth        string // as asked: "" means auto
	AccountName string // shared key; default $AZURE_STORAGE_ACCOUNT, then the URL's account
	AccountKey  string // shared key (base64); default $AZURE_STORAGE_KEY
	Credential  azcore.TokenCredential
}

// resolveAuth turns the asked mode into a concrete one. auto: a SAS if the URL
// has a signature, else the shared key when one is configured, else Azure AD
// for Azure's own blob endpoints, else anonymous.
func resolveAuth(c credentials, b *blobURL) (string, error) {
	key := c.AccountKey
	if key == "" {
		key = os.Getenv(EnvKey)
	}
	switch strings.ToLower(c.Auth) {
	case "", AuthAuto:
		switch {
		case b.hasSAS():
			return AuthSAS, nil
		case key != "":
			return AuthSharedKey, nil
		case b.isAzure() || c.Credential != nil:
			return AuthAzureAD, nil
		default:
			return AuthAnonymous, nil
		}
	case AuthSAS:
		if !b.hasSAS() {
			return "", fmt.Errorf("azblob: %s: auth %q needs a URL with a SAS query string (…?sv=…&sig=…)", b, AuthSAS)
		}
		return AuthSAS, nil
	case AuthSharedKey:
		if key == "" {
			return "", fmt.Errorf("azblob: auth %q needs the account key in $%s", AuthSharedKey, EnvKey)
		}
		return AuthSharedKey, nil
	case AuthAnonymous:
		return AuthAnonymous, nil
	case AuthAzureAD:
		return AuthAzureAD, nil
	default:
		return "", fmt.Errorf("azblob: unknown auth mode %q (want auto, anonymous, sas, azuread or sharedkey)", c.Auth)
	}
}

// clientFactory builds the SDK clients (blob, page blob, block blob) for one
// URL with one credential.
type clientFactory struct {
	url    string // full URL, SAS included when used
	mode   string
	shared *blob.SharedKeyCredential
	token  azcore.TokenCredential
	opts   azcore.ClientOptions
}

func newClientFactory(b *blobURL, c credentials, mode string, httpc *http.Client, retry policy.RetryOptions) (*clientFactory, error) {
	f := &clientFactory{url: b.u.String(), mode: mode}
	f.opts = azcore.ClientOptions{
		Transport: httpc,
		Retry:     retry,
		Telemetry: policy.TelemetryOptions{ApplicationID: "chestfs"},
	}
	switch mode {
	case AuthSharedKey:
		name := c.AccountName
		if name == "" {
			name = os.Getenv(EnvAccount)
		}
		if name == "" {
			name = b.account
		}
		if name != b.account {
			return nil, fmt.Errorf("azblob: %s: account key is for account %q, the URL names %q", b, name, b.account)
		}
		key := c.AccountKey
		if key == "" {
			key = os.Getenv(EnvKey)
		}
		cred, err := blob.NewSharedKeyCredential(name, key)
		if err != nil {
			// The SDK's message would not leak the key, but keep it generic anyway.
			return nil, fmt.Errorf("azblob: shared key for account %q is not valid base64", name)
		}
		f.shared = cred
		f.url = redact(b.u) // a stray query string must not be signed along
	case AuthAzureAD:
		cred := c.Credential
		if cred == nil {
			dc, err := azidentity.NewDefaultAzureCredential(nil)
			if err != nil {
				return nil, fmt.Errorf("azblob: Azure AD credential: %w", err)
			}
			cred = dc
		}
		f.token = tagCredential{cred}
	}
	return f, nil
}

func (f *clientFactory) blob() (*blob.Client, error) {
	o := &blob.ClientOptions{ClientOptions: f.opts}
	switch {
	case f.shared != nil:
		return blob.NewClientWithSharedKeyCredential(f.url, f.shared, o)
	case f.token != nil:
		return blob.NewClient(f.url, f.token, o)
	default:
		return blob.NewClientWithNoCredential(f.url, o)
	}
}

// credError marks a failure to get an Azure AD token: never transient for our
// retry loop (azidentity has already tried what it can).
type credError struct{ err error }

func (e *credError) Error() string { return "Azure AD token: " + e.err.Error() }
func (e *credError) Unwrap() error { return e.err }

type tagCredential struct{ c azcore.TokenCredential }

func (t tagCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := t.c.GetToken(ctx, o)
	if err != nil && ctx.Err() == nil {
		return tok, &credError{err}
	}
	return tok, err
}

func (f *clientFactory) pageBlob() (*pageblob.Client, error) {
	o := &pageblob.ClientOptions{ClientOptions: f.opts}
	switch {
	case f.shared != nil:
		return pageblob.NewClientWithSharedKeyCredential(f.url, f.shared, o)
	case f.token != nil:
		return pageblob.NewClient(f.url, f.token, o)
	default:
		return pageblob.NewClientWithNoCredential(f.url, o)
	}
}

func (f *clientFactory) blockBlob() (*blockblob.Client, error) {
	o := &blockblob.ClientOptions{ClientOptions: f.opts}
	switch {
	case f.shared != nil:
		return blockblob.NewClientWithSharedKeyCredential(f.url, f.shared, o)
	case f.token != nil:
		return blockblob.NewClient(f.url, f.token, o)
	default:
		return blockblob.NewClientWithNoCredential(f.url, o)
	}
}
