package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestDevNumbersMatchLinux: devMajor/devMinor split as unix.Major/Minor do on
// Linux, so ls -l prints what it printed before they replaced them.
func TestDevNumbersMatchLinux(t *testing.T) {
	for _, mm := range [][2]uint32{{0, 0}, {8, 1}, {259, 3}, {4095, 255}, {4096, 256}, {0xfff, 0xfffff}, {0xffffffff, 0xffffffff}, {1 << 20, 1 << 19}} {
		dev := unix.Mkdev(mm[0], mm[1])
		if devMajor(dev) != unix.Major(dev) || devMinor(dev) != unix.Minor(dev) {
			t.Errorf("dev %#x: got %d,%d, unix says %d,%d", dev, devMajor(dev), devMinor(dev), unix.Major(dev), unix.Minor(dev))
		}
		if devMajor(dev) != mm[0] || devMinor(dev) != mm[1] {
			t.Errorf("Mkdev(%d,%d) splits into %d,%d", mm[0], mm[1], devMajor(dev), devMinor(dev))
		}
	}
}
