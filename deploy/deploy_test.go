// Package deploy holds the deployment examples (Kubernetes, Azure Container
// Instances, AKS confidential containers) and the tests that check them: the
// manifests decode strictly into the Kubernetes API types, the fields chestfs
// relies on are there and agree with each other and with the Dockerfile, and
// (where podman works) an image built from the binary runs and mounts.
package deploy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/chestfs/chestfs/skr"
)

// Agreed with the Dockerfile: the binary's path and the image's user.
const (
	binPath   = "/usr/local/bin/chestfs"
	imageUser = 65532
)

// readPod decodes a manifest strictly: a misspelt or misplaced field (a
// "hostUser", a probe under the wrong key) fails the test.
func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(b, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" || pod.Name == "" {
		t.Fatalf("%s: apiVersion %q kind %q name %q", path, pod.APIVersion, pod.Kind, pod.Name)
	}
	return &pod
}

// chestfsArgs is a chestfs command line split up: the subcommand, the
// flags (--name=value or --name), the positional arguments before "--" and
// the command after it.
type chestfsArgs struct {
	sub   string
	flags map[string]string
	pos   []string
	cmd   []string
}

func parseArgs(t *testing.T, args []string) chestfsArgs {
	t.Helper()
	if len(args) == 0 {
		t.Fatal("no chestfs arguments")
	}
	a := chestfsArgs{sub: args[0], flags: map[string]string{}}
	for i := 1; i < len(args); i++ {
		s := args[i]
		switch {
		case s == "--":
			a.cmd = args[i+1:]
			return a
		case strings.HasPrefix(s, "--"):
			name, val, ok := strings.Cut(s[2:], "=")
			if !ok {
				val = "true"
			}
			a.flags[name] = val
		default:
			a.pos = append(a.pos, s)
		}
	}
	return a
}

// mountedAt reports whether path lies in one of c's volume mounts, and which.
func mountedAt(c *corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

// checkChestfsContainer checks what every chestfs container needs: the
// image's binary (or its default entrypoint), a writable place for the
// ready file, probes on the metrics listener, and JSON logs.
func checkChestfsContainer(t *testing.T, pod *corev1.Pod, c *corev1.Container) chestfsArgs {
	t.Helper()
	if !strings.Contains(c.Image, "chestfs") {
		t.Errorf("container %s: image %q is not chestfs", c.Name, c.Image)
	}
	if len(c.Command) > 0 && c.Command[0] != binPath {
		t.Errorf("container %s: command %v: the image's binary is %s", c.Name, c.Command, binPath)
	}
	a := parseArgs(t, append(c.Command[min(len(c.Command), 1):], c.Args...))
	ready := a.flags["ready-file"]
	if m, ok := mountedAt(c, ready); !ok || m.ReadOnly || volume(pod, m.Name) == nil || volume(pod, m.Name).EmptyDir == nil {
		t.Errorf("container %s: --ready-file %q is not on a writable emptyDir", c.Name, ready)
	}
	host, port, err := net.SplitHostPort(a.flags["metrics-addr"])
	if err != nil || host != "0.0.0.0" {
		t.Errorf("container %s: --metrics-addr %q: probes come from the kubelet, so listen on 0.0.0.0: %v", c.Name, a.flags["metrics-addr"], err)
	}
	if a.flags["log-format"] != "json" {
		t.Errorf("container %s: --log-format %q, want json", c.Name, a.flags["log-format"])
	}
	probes := map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe}
	for path, p := range probes {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
			t.Errorf("container %s: want an HTTP probe of %s", c.Name, path)
			continue
		}
		if got := portOf(c, p.HTTPGet.Port.String()); got != port {
			t.Errorf("container %s: probe of %s on port %s, metrics listen on %s", c.Name, path, got, port)
		}
	}
	return a
}

// portOf resolves a named container port.
func portOf(c *corev1.Container, p string) string {
	for _, cp := range c.Ports {
		if cp.Name == p {
			return fmt.Sprint(cp.ContainerPort)
		}
	}
	return p
}

func hasCap(c *corev1.Container, cp corev1.Capability) bool {
	sc := c.SecurityContext
	return sc != nil && sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, cp)
}

// checkRun checks a `chestfs run SOURCE MOUNTPOINT -- CMD` container.
func checkRun(t *testing.T, pod *corev1.Pod, c *corev1.Container, a chestfsArgs) {
	t.Helper()
	if a.sub != "run" || len(a.pos) != 2 || len(a.cmd) == 0 {
		t.Fatalf("container %s: want run SOURCE MOUNTPOINT -- CMD, got %q %v -- %v", c.Name, a.sub, a.pos, a.cmd)
	}
	src, mnt := a.pos[0], a.pos[1]
	if !strings.HasPrefix(src, "https://") || !strings.Contains(src, ".blob.core.windows.net/") {
		t.Errorf("container %s: source %q is not a blob URL", c.Name, src)
	}
	// The mount point must exist in the container; the application reads
	// it, so it must be what the command serves.
	if _, ok := mountedAt(c, mnt); !ok && mnt != "/mnt/chestfs" {
		t.Errorf("container %s: mount point %s is neither a volume nor the image's /mnt/chestfs", c.Name, mnt)
	}
	if !slices.Contains(a.cmd, mnt) {
		t.Errorf("container %s: the application %v does not use the mount point %s", c.Name, a.cmd, mnt)
	}
	key, skrFile := a.flags["key-file"], a.flags["skr"]
	if (key == "") == (skrFile == "") {
		t.Errorf("container %s: want exactly one of --key-file and --skr", c.Name)
	}
	for _, f := range []string{key, skrFile} {
		if f == "" {
			continue
		}
		m, ok := mountedAt(c, f)
		v := volume(pod, m.Name)
		if !ok || v == nil || (v.Secret == nil && v.ConfigMap == nil) {
			t.Errorf("container %s: key %s is not in a Secret or ConfigMap volume", c.Name, f)
		}
	}
}

func TestUnprivilegedPod(t *testing.T) {
	pod := readPod(t, "kubernetes/pod-unprivileged.yaml")
	if len(pod.Spec.Containers) != 1 || len(pod.Spec.InitContainers) != 0 {
		t.Fatal("want a single container that mounts and runs the application")
	}
	c := &pod.Spec.Containers[0]
	checkRun(t, pod, c, checkChestfsContainer(t, pod, c))
	if pod.Spec.HostUsers == nil || *pod.Spec.HostUsers {
		t.Error("hostUsers must be false: root and capabilities then stay inside the pod's user namespace")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no securityContext")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != imageUser:
		t.Errorf("want runAsNonRoot as the image's user %d", imageUser)
	// Non-root mounts through the setuid fusermount3: escalation must be
	// allowed and SYS_ADMIN in the bounding set.
	case sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation must be true for the setuid fusermount3")
	case !hasCap(c, "SYS_ADMIN"):
		t.Error("SYS_ADMIN is not added: FUSE mount(2) needs it in the pod's user namespace")
	case sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined:
		t.Error("the runtime's default AppArmor profile denies mount(2)")
	}
	fuse := false
	for name, q := range c.Resources.Limits {
		if strings.HasSuffix(string(name), "/fuse") && q.Value() == 1 {
			fuse = true
		}
	}
	if !fuse {
		t.Errorf("no /dev/fuse from a device plugin in the limits: %v", c.Resources.Limits)
	}
	if a := parseArgs(t, c.Args); a.flags["allow-other"] != "" && (pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.FSGroup == nil) {
		t.Error("the key Secret is readable by the non-root user only with fsGroup")
	}
	if c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("want a read-only root filesystem")
	}
}

func TestSidecarPod(t *testing.T) {
	pod := readPod(t, "kubernetes/pod-sidecar-privileged.yaml")
	if len(pod.Spec.InitContainers) != 1 || len(pod.Spec.Containers) != 1 {
		t.Fatal("want the chestfs native sidecar and one application container")
	}
	side, app := &pod.Spec.InitContainers[0], &pod.Spec.Containers[0]
	a := checkChestfsContainer(t, pod, side)
	if a.sub != "sidecar" || len(a.pos) != 0 || a.flags["allow-other"] != "true" {
		t.Errorf("want `sidecar --allow-other` (the application runs as another user): %+v", a)
	}
	if side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the sidecar must be a native sidecar (restartPolicy: Always) so the application starts after it")
	}
	if p := side.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Error("the application must wait for a startup probe of /readyz")
	}
	if sc := side.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("bidirectional propagation needs a privileged sidecar")
	}
	env := map[string]*corev1.EnvVar{}
	for i := range side.Env {
		env[side.Env[i].Name] = &side.Env[i]
	}
	if e := env["EncfsSideCarArgs"]; e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Error("EncfsSideCarArgs should come from a Secret")
	}
	// The images are mounted under a volume that both containers share,
	// propagated from the sidecar to the application.
	var shared string
	for _, m := range side.VolumeMounts {
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			shared = m.Name
		}
	}
	if shared == "" || volume(pod, shared) == nil || volume(pod, shared).EmptyDir == nil {
		t.Fatal("no emptyDir with Bidirectional propagation in the sidecar")
	}
	ok := false
	for _, m := range app.VolumeMounts {
		ok = ok || m.Name == shared && m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationHostToContainer
	}
	if !ok {
		t.Error("the application does not see the shared volume with HostToContainer propagation")
	}
	if sc := app.SecurityContext; sc == nil || sc.Privileged != nil && *sc.Privileged {
		t.Error("the application container need not be privileged")
	}
	// The sidecar's mount points, in the example configuration, lie in the
	// shared volume.
	mp := sidecarMountPoints(t)
	for _, p := range mp {
		if m, ok := mountedAt(side, p); !ok || m.Name != shared {
			t.Errorf("mount point %s of deploy/sidecar-config.json is not in the shared volume", p)
		}
	}
}

func TestKataPod(t *testing.T) {
	pod := readPod(t, "aks/kata-cc-pod.yaml")
	if pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName != "kata-cc-isolation" {
		t.Error("runtimeClassName must be kata-cc-isolation")
	}
	if pod.Annotations["io.katacontainers.config.agent.policy"] == "" {
		t.Error("no io.katacontainers.config.agent.policy placeholder")
	}
	if pod.Labels["azure.workload.identity/use"] != "true" || pod.Spec.ServiceAccountName == "" {
		t.Error("workload identity (label and service account) is needed for the blob and the key release")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatal("want one container")
	}
	c := &pod.Spec.Containers[0]
	a := checkChestfsContainer(t, pod, c)
	checkRun(t, pod, c, a)
	if a.flags["skr"] == "" {
		t.Error("a confidential pod releases its key through attestation (--skr)")
	}
	if !regexp.MustCompile(`^([0-9a-f]{64}|ROOT_HASH_HEX)$`).MatchString(a.flags["verity-root"]) {
		t.Errorf("--verity-root %q: the measured arguments should pin the image", a.flags["verity-root"])
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("a memory limit sizes the utility VM")
	}
}

// armParam matches an ARM template's parameters('name') reference.
var armParam = regexp.MustCompile(`parameters\('([^']+)'\)`)

func TestACITemplate(t *testing.T) {
	b, err := os.ReadFile("aci/aci-arm-template.json")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Schema     string `json:"$schema"`
		Parameters map[string]struct {
			Type         string `json:"type"`
			DefaultValue any    `json:"defaultValue"`
		} `json:"parameters"`
		Resources []struct {
			Type       string `json:"type"`
			APIVersion string `json:"apiVersion"`
			Identity   struct {
				Type string `json:"type"`
			} `json:"identity"`
			Properties struct {
				SKU  string `json:"sku"`
				Conf struct {
					CCEPolicy string `json:"ccePolicy"`
				} `json:"confidentialComputeProperties"`
				Containers []struct {
					Name       string `json:"name"`
					Properties struct {
						Image   string   `json:"image"`
						Command []string `json:"command"`
						Env     []struct {
							Name        string `json:"name"`
							Value       string `json:"value"`
							SecureValue string `json:"secureValue"`
						} `json:"environmentVariables"`
						SecurityContext struct {
							Privileged bool `json:"privileged"`
						} `json:"securityContext"`
						ReadinessProbe *struct {
							HTTPGet struct {
								Path string `json:"path"`
								Port int    `json:"port"`
							} `json:"httpGet"`
						} `json:"readinessProbe"`
						VolumeMounts []struct {
							Name      string `json:"name"`
							MountPath string `json:"mountPath"`
						} `json:"volumeMounts"`
					} `json:"properties"`
				} `json:"containers"`
				Volumes []struct {
					Name     string `json:"name"`
					EmptyDir any    `json:"emptyDir"`
				} `json:"volumes"`
			} `json:"properties"`
		} `json:"resources"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&tmpl); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tmpl.Schema, "deploymentTemplate.json") {
		t.Errorf("$schema %q", tmpl.Schema)
	}
	// Every parameter referenced is declared, and every one declared is used.
	used := map[string]bool{}
	for _, m := range armParam.FindAllStringSubmatch(string(b), -1) {
		used[m[1]] = true
		if _, ok := tmpl.Parameters[m[1]]; !ok {
			t.Errorf("parameters('%s') is not declared", m[1])
		}
	}
	for p := range tmpl.Parameters {
		if !used[p] {
			t.Errorf("parameter %s is never used", p)
		}
	}
	if p := tmpl.Parameters["encfsSideCarArgs"]; p.Type != "secureString" {
		t.Errorf("encfsSideCarArgs is %q: a raw_key would show in the deployment", p.Type)
	}
	if d, _ := tmpl.Parameters["ccePolicy"].DefaultValue.(string); !strings.Contains(d, "security-policy") {
		t.Errorf("ccePolicy placeholder %q", d)
	}
	if len(tmpl.Resources) != 1 {
		t.Fatalf("%d resources", len(tmpl.Resources))
	}
	r := tmpl.Resources[0]
	if r.Type != "Microsoft.ContainerInstance/containerGroups" || r.Properties.SKU != "Confidential" ||
		r.Properties.Conf.CCEPolicy != "[parameters('ccePolicy')]" || r.Identity.Type != "UserAssigned" {
		t.Errorf("want a confidential container group with the ccePolicy parameter and a user-assigned identity: %+v", r)
	}
	if len(r.Properties.Containers) != 2 {
		t.Fatalf("want chestfs and an application, got %d containers", len(r.Properties.Containers))
	}
	side, app := r.Properties.Containers[0].Properties, r.Properties.Containers[1].Properties
	if len(side.Command) < 2 || side.Command[0] != binPath || side.Command[1] != "sidecar" {
		t.Errorf("chestfs command %v", side.Command)
	}
	a := parseArgs(t, side.Command[1:])
	if a.flags["allow-other"] != "true" || a.flags["log-format"] != "json" {
		t.Errorf("sidecar flags %v", a.flags)
	}
	_, port, err := net.SplitHostPort(a.flags["metrics-addr"])
	if err != nil || side.ReadinessProbe == nil || side.ReadinessProbe.HTTPGet.Path != "/readyz" || fmt.Sprint(side.ReadinessProbe.HTTPGet.Port) != port {
		t.Errorf("readiness probe %+v vs --metrics-addr %q", side.ReadinessProbe, a.flags["metrics-addr"])
	}
	if !side.SecurityContext.Privileged {
		t.Error("the chestfs container needs /dev/fuse and propagation: privileged, as the encfs sidecar")
	}
	envOK := false
	for _, e := range side.Env {
		envOK = envOK || e.Name == "EncfsSideCarArgs" && e.SecureValue == "[parameters('encfsSideCarArgs')]"
	}
	if !envOK {
		t.Error("EncfsSideCarArgs is not passed as a secure value")
	}
	// Both containers mount the same emptyDir at the same path; the mount
	// points and the ready file lie inside it.
	if len(side.VolumeMounts) != 1 || len(app.VolumeMounts) != 1 || side.VolumeMounts[0] != app.VolumeMounts[0] {
		t.Fatalf("volume mounts differ: %v %v", side.VolumeMounts, app.VolumeMounts)
	}
	shared := side.VolumeMounts[0]
	if len(r.Properties.Volumes) != 1 || r.Properties.Volumes[0].Name != shared.Name || r.Properties.Volumes[0].EmptyDir == nil {
		t.Errorf("the shared volume is not an emptyDir: %v", r.Properties.Volumes)
	}
	under := func(p string) bool { return strings.HasPrefix(p, shared.MountPath+"/") }
	if !under(a.flags["ready-file"]) || !strings.Contains(strings.Join(app.Command, " "), a.flags["ready-file"]) {
		t.Errorf("the application does not wait for the ready file %s in the shared volume", a.flags["ready-file"])
	}
	for _, p := range sidecarMountPoints(t) {
		if !under(p) || !strings.Contains(strings.Join(app.Command, " "), p) {
			t.Errorf("mount point %s is not in the shared volume or not used by the application", p)
		}
	}
}

// sidecarMountPoints checks deploy/sidecar-config.json as chestfs sidecar
// would take it (base64 of the JSON in EncfsSideCarArgs), with the key blob
// parser of skr, and returns its mount points.
func sidecarMountPoints(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("sidecar-config.json")
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString(b)
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		FS []struct {
			MountPoint string          `json:"mount_point"`
			AzureURL   string          `json:"azure_url"`
			Private    bool            `json:"azure_url_private"`
			ReadWrite  bool            `json:"read_write"`
			Key        json.RawMessage `json:"key"`
		} `json:"azure_filesystems"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("sidecar-config.json: %v", err)
	}
	var out []string
	for i, f := range cfg.FS {
		if !filepath.IsAbs(f.MountPoint) || f.ReadWrite || !strings.HasPrefix(f.AzureURL, "https://") {
			t.Errorf("azure_filesystems[%d]: %+v", i, f)
		}
		if _, err := skr.ParseKeyBlob(f.Key); err != nil {
			t.Errorf("azure_filesystems[%d]: %v", i, err)
		}
		out = append(out, f.MountPoint)
	}
	if len(out) == 0 {
		t.Fatal("sidecar-config.json lists no filesystem")
	}
	return out
}

func TestKeyBlob(t *testing.T) {
	b, err := os.ReadFile("key.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := skr.ParseKeyBlob(b); err != nil {
		t.Fatal(err)
	}
}

// TestDockerfile checks what the examples assume of the image.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM\s`).FindAllString(df, -1)
	checks := []struct {
		ok   bool
		what string
	}{
		{len(froms) >= 2, "a multi-stage build"},
		{strings.Contains(df, "CGO_ENABLED=0"), "a static binary (CGO_ENABLED=0)"},
		{regexp.MustCompile(`(?m)^FROM (alpine|debian|gcr\.io/distroless)`).MatchString(df), "a small final base image"},
		{strings.Contains(df, "fuse3"), "fuse3 in the final image"},
		{strings.Contains(df, "chmod 4755 /usr/bin/fusermount3"), "a setuid fusermount3"},
		{strings.Contains(df, "user_allow_other"), "user_allow_other for --allow-other"},
		{strings.Contains(df, fmt.Sprintf("USER %d:%d", imageUser, imageUser)), "the non-root user the manifests use"},
		{strings.Contains(df, fmt.Sprintf(`ENTRYPOINT ["%s"]`, binPath)), "the binary as entrypoint"},
		{strings.Contains(df, "ca-certificates"), "CA certificates for Azure's TLS endpoints"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("Dockerfile: want %s", c.what)
		}
	}
}
