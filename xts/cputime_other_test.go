//go:build !linux

package xts

func threadCPU() int64  { return 0 }
func processCPU() int64 { return 0 }
