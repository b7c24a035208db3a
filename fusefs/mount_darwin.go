package fusefs

// go-fuse mounts through macFUSE's or FUSE-T's mount helper there: no direct
// mount(2), so no flags ("ro" is in the option strings).
const directMountFlags = 0

// raiseReadAhead does nothing: the readahead window is a Linux sysfs knob.
func raiseReadAhead(string) {}
