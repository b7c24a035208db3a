package fusefs

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Sibling readahead: a program that reads the files of a directory one
// after the other (tar, a Python import, a compiler reading headers) pays
// a FUSE round trip per small file, and in between waits for the reply:
// two context switches and the read itself. The kernel's readahead stops
// at the end of each file. Once a file of a recently listed directory is
// read from its start, the next siblings in the listing (small regular
// files only; a few after a first file, more once a second one is read)
// are read by a background goroutine and pushed into the kernel's page
// cache (FUSE_NOTIFY_STORE), on the other core while the program works on
// the file it has: their reads then find the data cached and never reach
// the server. The pushed bytes are the
// image's own (it never changes) and live in the kernel's page cache,
// which bounds and reclaims them like any other cached file data.

const (
	// pushWindow is how many entries past the file being read are pushed.
	pushWindow = 32
	// maxPushFile is the largest file pushed; larger ones are read with
	// the kernel's own readahead, which is efficient for them.
	maxPushFile = 128 << 10
	// maxPushDir bounds the listings watched (an index by inode is built
	// for them); the files of larger directories are not pushed.
	maxPushDir = 1 << 16
	// recentDirs is how many recently listed directories are watched.
	recentDirs = 4
)

// Entry states in siblings.state.
const (
	stUntouched = iota
	stQueued    // waiting for the pusher
	stDone      // read by the kernel, or being pushed
)

// job is a file to push: entry i of listing d.
type job struct {
	d *listing
	i int
}

// siblings tracks recently listed directories and which of their entries
// were read or pushed.
type siblings struct {
	srv   *fuse.Server // set by Init; nil: nothing is pushed
	mu    sync.Mutex
	dirs  [recentDirs]recent // most recently listed first
	dir   *listing           // the directory whose files are being read
	pos   map[uint64]int     // dir's entries by inode, index in ents
	state []uint8            // per entry of dir: stUntouched, stQueued or stDone
	last  int                // the entry last read from its start

	jobs   chan job // files to push
	stop   chan struct{}
	pushed atomic.Int64 // files pushed, for tests
}

// recent is a recently listed directory and, once a READ looked for a
// file in it, its entries by inode.
type recent struct {
	d   *listing
	pos map[uint64]int
}

// start runs the pusher; close ends it at unmount.
func (s *siblings) start(r *rawFS, srv *fuse.Server) {
	s.srv = srv
	s.jobs = make(chan job, 2*pushWindow)
	s.stop = make(chan struct{})
	go s.pusher(r)
}

func (s *siblings) close() {
	if s.stop != nil {
		close(s.stop)
	}
}

// listed notes that directory d was served to the kernel.
func (s *siblings) listed(d *listing) {
	if s.jobs == nil || len(d.ents) > maxPushDir {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < recentDirs-1 && s.dirs[i].d != d {
		i++
	}
	r := s.dirs[i]
	if r.d != d {
		r = recent{d: d}
	}
	copy(s.dirs[1:i+1], s.dirs[:i])
	s.dirs[0] = r
}

// read notes a READ of inode ino from offset 0 and queues siblings: the
// first file read in a directory pushes the next pushWindow/4 entries, a
// further one (the program reads the directory's files in turn) the next
// pushWindow.
func (s *siblings) read(ino uint64) {
	if s.jobs == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	window := pushWindow
	i, ok := s.pos[ino]
	if !ok {
		if i, ok = s.find(ino); !ok {
			return
		}
		window = pushWindow / 4
	} else if i == s.last {
		return
	}
	s.state[i] = stDone // a queued file the kernel reads itself is not pushed
	s.last = i
	for j := i + 1; j < len(s.dir.ents) && j <= i+window; j++ {
		if s.state[j] != stUntouched || s.dir.ents[j].Type != unix.DT_REG {
			continue
		}
		select {
		case s.jobs <- job{s.dir, j}:
			s.state[j] = stQueued
		default:
			return // the pusher is behind: the kernel reads the rest
		}
	}
}

// take reports whether a queued file still wants pushing, and marks it.
func (s *siblings) take(j job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir != j.d {
		return true // the reader moved on; the push may still serve it
	}
	if s.state[j.i] == stDone {
		return false
	}
	s.state[j.i] = stDone
	return true
}

// find makes the recently listed directory holding ino the current one
// and returns ino's index in it. Each directory is indexed once.
func (s *siblings) find(ino uint64) (int, bool) {
	for k := range s.dirs {
		r := &s.dirs[k]
		if r.d == nil || r.d == s.dir {
			continue
		}
		if r.pos == nil {
			r.pos = make(map[uint64]int, len(r.d.ents))
			for j := range r.d.ents {
				r.pos[r.d.ents[j].Ino] = j
			}
		}
		if i, ok := r.pos[ino]; ok {
			s.dir, s.pos, s.last = r.d, r.pos, -1
			s.state = make([]uint8, len(r.d.ents))
			return i, true
		}
	}
	return 0, false
}

// pusher reads queued files and stores them in the kernel's page cache.
func (s *siblings) pusher(r *rawFS) {
	buf := make([]byte, maxPushFile)
	for {
		select {
		case <-s.stop:
			return
		case j := <-s.jobs:
			if !s.take(j) {
				continue
			}
			ino := j.d.ents[j.i].Ino
			if n, ok := s.load(r, ino, buf); ok {
				if s.srv.InodeNotifyStoreCache(nodeOf(ino), 0, buf[:n]) == fuse.OK {
					s.pushed.Add(1)
				}
			}
		}
	}
}

// load reads a whole small regular file into buf; ok is false for
// anything else, and on any error (the kernel's own READ reports it).
func (s *siblings) load(r *rawFS, ino uint64, buf []byte) (int, bool) {
	st, err := r.fs.Stat(ino)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 || st.Size > uint64(len(buf)) {
		return 0, false
	}
	n, err := r.fs.ReadAt(ino, buf[:st.Size], 0)
	if err != nil && err != io.EOF || uint64(n) != st.Size {
		return 0, false
	}
	return n, true
}
