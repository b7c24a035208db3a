// Package azuritetest runs the Azurite blob emulator (pinned in
// tools/azurite) for tests on the loopback interface.
//
// When Azurite is not installed, tests skip with a message saying how to
// install it; with $CI set they fail instead, so that CI never passes by
// skipping.
package azuritetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

// The emulator's well-known account.
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// ErrNotInstalled: tools/azurite/node_modules (or node) is missing.
var ErrNotInstalled = errors.New("azurite is not installed: run `npm ci --prefix tools/azurite` in the repository root")

// Server is a running Azurite blob service.
type Server struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// Endpoint is the account's blob endpoint, http://127.0.0.1:PORT/devstoreaccount1.
	Endpoint string

	node, script string
	port         int
	persistent   bool // data on disk in dir, kept across Kill and Restart
	dir          string
	out          *syncBuffer

	mu      sync.Mutex
	cmd     *exec.Cmd     // the current process
	exited  chan struct{} // closed when cmd exits
	stopped bool
}

// Start runs Azurite for the duration of the test (stopped in t.Cleanup).
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartProcess()
	if err != nil {
		SkipOrFail(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// SkipOrFail ends the test for an error from StartProcess: a skip when
// Azurite is simply not installed outside CI, a failure otherwise.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip(err.Error())
	}
	t.Fatal(err)
}

// RepoRoot walks up from the working directory to the directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("azuritetest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// StartProcess starts Azurite on a free loopback port and waits until it
// answers; the caller must call Stop. For TestMain. Its data lives in memory.
func StartProcess() (*Server, error) {
	return startProcess(false)
}

// StartPersistent is Start with the data kept on disk, so that Kill and
// Restart bring the same blobs back on the same port.
func StartPersistent(t testing.TB) *Server {
	t.Helper()
	s, err := startProcess(true)
	if err != nil {
		SkipOrFail(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

func startProcess(persistent bool) (*Server, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(root, "tools", "azurite", "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("%w (%s missing)", ErrNotInstalled, script)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w (no node in PATH)", ErrNotInstalled)
	}
	// The free port can be taken between our probe and Azurite's bind; try
	// a few ports before giving up.
	var last error
	for range 4 {
		s, err := start(node, script, persistent)
		if err == nil {
			return s, nil
		}
		last = err
		if !strings.Contains(err.Error(), "EADDRINUSE") {
			break
		}
	}
	return nil, last
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(node, script string, persistent bool) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "azurite-")
	if err != nil {
		return nil, err
	}
	host := "127.0.0.1:" + strconv.Itoa(port)
	s := &Server{Host: host, Endpoint: "http://" + host + "/" + Account, node: node, script: script,
		port: port, persistent: persistent, dir: dir, out: &syncBuffer{}}
	if err := s.run(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// run starts the process and waits until it answers.
func (s *Server) run() error {
	args := []string{s.script, "--skipApiVersionCheck", "--silent", "--disableTelemetry",
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(s.port)}
	if s.persistent {
		args = append(args, "--location", s.dir)
	} else {
		args = append(args, "--inMemoryPersistence", "--extentMemoryLimit", "1024")
	}
	cmd := exec.Command(s.node, args...)
	cmd.Dir = s.dir
	cmd.Env = nodeEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Own process group, so Stop also ends anything node spawned; and die
	// with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("azuritetest: start: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return s.waitReady(exited, 90*time.Second)
}

// waitReady polls until Azurite answers HTTP at all (it refuses the
// unauthenticated request, which is fine).
func (s *Server) waitReady(exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(s.Endpoint + "?comp=list")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("azuritetest: azurite exited during start-up: %s", s.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("azuritetest: azurite did not answer on %s within %v: %s", s.Host, limit, s.out.String())
		}
	}
}

// Pid is the process id of the running Azurite (0 when none).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill ends the Azurite process at once (SIGKILL), as a crash would. A
// persistent server keeps its data for Restart; see WaitSaved.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
	}
}

// Restart starts Azurite again on the same port, with the data of a
// persistent server, after Kill.
func (s *Server) Restart() error {
	s.mu.Lock()
	stopped, exited := s.stopped, s.exited
	s.mu.Unlock()
	if stopped {
		return errors.New("azuritetest: restart after Stop")
	}
	if exited != nil {
		select {
		case <-exited:
		default:
			return errors.New("azuritetest: restart while azurite is running (Kill it first)")
		}
	}
	// The port was ours a moment ago; another process may take it in
	// between, but only rarely: try a few times.
	var err error
	for range 10 {
		if err = s.run(); err == nil || !strings.Contains(err.Error(), "EADDRINUSE") {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

// WaitSaved waits until a persistent server has written substr (a blob's
// name, an ETag without its quotes) to its metadata database. Azurite saves
// the database every few seconds, so without this wait a Kill soon after an
// upload may lose the blob.
func (s *Server) WaitSaved(ctx context.Context, substr string) error {
	if !s.persistent {
		return errors.New("azuritetest: WaitSaved on an in-memory server")
	}
	db := filepath.Join(s.dir, "__azurite_db_blob__.json")
	for {
		if b, err := os.ReadFile(db); err == nil && bytes.Contains(b, []byte(substr)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("azuritetest: %q not saved in %s: %w", substr, db, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop kills Azurite and removes its directory. Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	s.Kill()
	os.RemoveAll(s.dir)
}

// Credential is the shared key of the well-known account.
func (s *Server) Credential() *blob.SharedKeyCredential {
	c, err := blob.NewSharedKeyCredential(Account, Key)
	if err != nil {
		panic(err) // a constant key
	}
	return c
}

// BlobURL is the path-style URL of a blob (no credentials).
func (s *Server) BlobURL(containerName, blobName string) string {
	return s.Endpoint + "/" + containerName + "/" + blobName
}

// CreateContainer creates a container; public allows anonymous reads of its blobs.
func (s *Server) CreateContainer(ctx context.Context, name string, public bool) error {
	c, err := container.NewClientWithSharedKeyCredential(s.Endpoint+"/"+name, s.Credential(), nil)
	if err != nil {
		return err
	}
	var o container.CreateOptions
	if public {
		access := container.PublicAccessTypeBlob
		o.Access = &access
	}
	_, err = c.Create(ctx, &o)
	return err
}

// SASURL returns the blob URL with a SAS signed by the account key, granting
// perms until expiry.
func (s *Server) SASURL(containerName, blobName string, perms sas.BlobPermissions, expiry time.Time) (string, error) {
	qp, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		StartTime:     time.Now().Add(-10 * time.Minute).UTC(),
		ExpiryTime:    expiry.UTC(),
		Permissions:   perms.String(),
		ContainerName: containerName,
		BlobName:      blobName,
	}.SignWithSharedKey(s.Credential())
	if err != nil {
		return "", err
	}
	return s.BlobURL(containerName, blobName) + "?" + qp.Encode(), nil
}

// syncBuffer keeps the first 64 KiB of Azurite's output for error messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.b.Len(); room > 0 {
		b.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Forward sends r on to upstream (HOST:PORT) through tr and writes the
// response's status and headers to w. The caller copies the body as it
// likes (in full, slowly, or cut short) and closes it. On a transport error
// Forward answers 502 and returns nil.
func Forward(w http.ResponseWriter, r *http.Request, tr http.RoundTripper, upstream string) *http.Response {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+upstream+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return nil
	}
	out.Header = r.Header.Clone()
	out.ContentLength = r.ContentLength
	resp, err := tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return nil
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	return resp
}

// mallocTunables keeps glibc from mapping (and page-faulting) a fresh region
// for every multi-MiB buffer Azurite allocates per ranged GET: with them a
// 2-4 MiB GET costs node ~3 ms of CPU per MiB instead of ~10, so benchmarks
// measure the client rather than the emulator's allocator. Harmless where
// node is not linked against glibc.
const mallocTunables = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=1073741824"

// nodeEnv is env with mallocTunables added to GLIBC_TUNABLES.
func nodeEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	tun := mallocTunables
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GLIBC_TUNABLES="); ok {
			if v != "" {
				tun = v + ":" + tun
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GLIBC_TUNABLES="+tun)
}
