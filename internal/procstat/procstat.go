// Package procstat reads memory figures of a process from /proc/PID/status,
// for the tests and benchmarks that bound memory.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Bytes returns a "kB" field of /proc/PID/status (VmRSS, VmHWM, ...) in
// bytes; pid "self" is this process.
func Bytes(pid, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("procstat: %s: %w", field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("procstat: no %s in /proc/%s/status", field, pid)
}
