package verity

// Stats are a Reader's counters since Open.
type Stats struct {
	// BlocksVerified counts data blocks that matched the tree (a block
	// read twice counts twice).
	BlocksVerified int64
	// Failures counts reads refused because a data or hash block did not
	// match: each is an EIO that an application saw (or a readahead that
	// failed), so any value above zero means the image was changed.
	Failures int64
}

// Stats returns a snapshot of the counters; cheap, safe for concurrent use.
func (r *Reader) Stats() Stats {
	return Stats{BlocksVerified: r.verified.Load(), Failures: r.mismatches.Load()}
}
