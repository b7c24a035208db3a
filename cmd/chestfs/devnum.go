package main

// ext4 stores device numbers as Linux's dev_t (glibc's encoding: minor bits
// 0-7 and 20-31, major bits 8-19 and 32-43); they are decoded the Linux way on
// every host, where golang.org/x/sys/unix would use the host's (macOS: major
// in the top byte) or not build at all (Windows).

func devMajor(dev uint64) uint32 { return uint32((dev>>8)&0xfff | (dev>>32)&^0xfff) }

func devMinor(dev uint64) uint32 { return uint32(dev&0xff | (dev>>12)&^0xff) }
