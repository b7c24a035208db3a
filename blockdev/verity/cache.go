package verity

import (
	"container/list"
	"sync"
)

type blockKey struct {
	level int
	idx   uint64
}

type cacheEntry struct {
	key   blockKey
	block []byte
}

// blockCache holds verified hash blocks: the top levels for good, the
// others in a bounded LRU, so that memory stays bounded for any image size
// (a 1 TiB image has 8 GiB of level-0 hashes with sha256).
type blockCache struct {
	mu      sync.Mutex
	max     int // LRU capacity in blocks
	lru     *list.List
	items   map[blockKey]*list.Element
	pinned  map[blockKey][]byte
	pinFrom int // levels >= pinFrom are pinned
}

// pinBudget bounds the bytes of the pinned levels below the top one (and
// so does half the cache size).
const pinBudget = 2 << 20

func newBlockCache(g *geometry, maxBytes int64) *blockCache {
	hbs := int64(g.p.HashBlockSize)
	c := &blockCache{
		max:     int(max(maxBytes/hbs, 8)),
		lru:     list.New(),
		items:   make(map[blockKey]*list.Element),
		pinned:  make(map[blockKey][]byte),
		pinFrom: g.levels,
	}
	var total int64
	budget := min(pinBudget, maxBytes/2)
	for l := g.levels - 1; l >= 0; l-- {
		total += int64(g.levelSize[l]) * hbs
		if l < g.levels-1 && total > budget {
			break
		}
		c.pinFrom = l
	}
	return c
}

func (c *blockCache) get(k blockKey) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.pinned[k]; ok {
		return b
	}
	if e, ok := c.items[k]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cacheEntry).block
	}
	return nil
}

func (c *blockCache) put(k blockKey, block []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.level >= c.pinFrom {
		c.pinned[k] = block
		return
	}
	if e, ok := c.items[k]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.items[k] = c.lru.PushFront(&cacheEntry{key: k, block: block})
	for c.lru.Len() > c.max {
		e := c.lru.Back()
		c.lru.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).key)
	}
}

// len returns the number of cached blocks, pinned and not.
func (c *blockCache) len() (pinned, lru int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pinned), c.lru.Len()
}
