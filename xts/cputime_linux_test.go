//go:build linux

package xts

import "golang.org/x/sys/unix"

// threadCPU returns the calling thread's CPU time in nanoseconds. Benchmarks
// report throughput per CPU second as well as per wall second, because on a
// shared machine wall time mostly measures waiting for a core (OpenSSL's
// `speed` also divides by CPU time unless given -elapsed).
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

func processCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}
