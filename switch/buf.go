package vswitch

import "sync"

// Frame buffers are fixed-size arrays recycled through a bounded free list
// shared by the switch ([bufPool]) and a small per-goroutine stash
// ([bufCache]), so the shared lock is taken once per batch, not per frame.
// sync.Pool is not used: under the race detector it drops a quarter of the
// buffers put into it, which would make the zero-allocation tests lie.
//
// A frame in a buffer b always sits at b[Headroom:]; the slice handed to a
// port's Write ends where the frame ends, and its capacity tells which class
// the buffer belongs to.

// smallBufSize is the size of the buffers floods copy frames of up to
// smallBufSize-Headroom bytes into (Ethernet with VLAN tags fits).
const smallBufSize = 2048

type (
	largeBuf = [BufSize]byte
	smallBuf = [smallBufSize]byte
)

const (
	maxFreeLarge = 256  // 16 MiB of free large buffers at most
	maxFreeSmall = 4096 // 8 MiB of free small buffers at most
	stashSize    = 32   // buffers a goroutine keeps for itself, per class
)

// bufPool is the switch-wide free list.
type bufPool struct {
	mu sync.Mutex // mu guards the following fields
	// +checklocks:mu
	large []*largeBuf
	// +checklocks:mu
	small []*smallBuf
}

// fill sets every dst[i] to a buffer taken from the end of the free list
// *free (one size class of a bufPool, guarded by mu), or to a new one
// once the list is empty.
func fill[T any](mu *sync.Mutex, free *[]*T, dst []*T) {
	mu.Lock()
	i := 0
	for ; i < len(dst) && len(*free) > 0; i++ {
		n := len(*free) - 1
		dst[i], (*free)[n] = (*free)[n], nil
		*free = (*free)[:n]
	}
	mu.Unlock()
	for ; i < len(dst); i++ {
		dst[i] = new(T)
	}
}

// putLocked returns b to the free list, or lets the GC have it when the
// list is full. b must come from this pool; the caller gives up b.
func (p *bufPool) putLocked(b []byte) {
	switch cap(b) {
	case BufSize:
		if len(p.large) < maxFreeLarge {
			p.large = append(p.large, (*largeBuf)(b[:BufSize]))
		}
	case smallBufSize:
		if len(p.small) < maxFreeSmall {
			p.small = append(p.small, (*smallBuf)(b[:smallBufSize]))
		}
	default:
		panic("vswitch: foreign buffer returned to the pool")
	}
}

// putFrames returns the buffers of frames to the pool and clears frames.
func (p *bufPool) putFrames(frames []txFrame) {
	if len(frames) == 0 {
		return
	}
	p.mu.Lock()
	for i := range frames {
		p.putLocked(frames[i].b)
		frames[i] = txFrame{}
	}
	p.mu.Unlock()
}

// putBufs returns bufs[i] to the pool and clears bufs.
func (p *bufPool) putBufs(bufs [][]byte) {
	p.mu.Lock()
	for i, b := range bufs {
		if b != nil {
			p.putLocked(b)
			bufs[i] = nil
		}
	}
	p.mu.Unlock()
}

// bufCache is one goroutine's stash in front of a bufPool. Not safe for
// concurrent use.
type bufCache struct {
	pool  *bufPool
	large []*largeBuf
	small []*smallBuf
}

func newBufCache(p *bufPool) bufCache {
	return bufCache{pool: p, large: make([]*largeBuf, 0, stashSize), small: make([]*smallBuf, 0, stashSize)}
}

// take removes and returns the last buffer of *stash (one size class of a
// bufCache), first filling the whole stash from the pool's free list
// *free (guarded by mu) when it is empty.
func take[T any](mu *sync.Mutex, free *[]*T, stash *[]*T) *T {
	if len(*stash) == 0 {
		*stash = (*stash)[:cap(*stash)]
		fill(mu, free, *stash)
	}
	n := len(*stash) - 1
	b := (*stash)[n]
	(*stash)[n] = nil
	*stash = (*stash)[:n]
	return b
}

// getLarge returns a whole large buffer; the caller owns it.
func (c *bufCache) getLarge() []byte {
	return take(&c.pool.mu, &c.pool.large, &c.large)[:]
}

// getFor returns a whole buffer big enough for a frame of size bytes at
// Headroom; the caller owns it.
func (c *bufCache) getFor(size int) []byte {
	if Headroom+size > smallBufSize {
		return c.getLarge()
	}
	return take(&c.pool.mu, &c.pool.small, &c.small)[:]
}

// put takes back a buffer obtained from getLarge or getFor.
func (c *bufCache) put(b []byte) {
	switch cap(b) {
	case BufSize:
		if len(c.large) < cap(c.large) {
			c.large = append(c.large, (*largeBuf)(b[:BufSize]))
			return
		}
	case smallBufSize:
		if len(c.small) < cap(c.small) {
			c.small = append(c.small, (*smallBuf)(b[:smallBufSize]))
			return
		}
	}
	c.pool.mu.Lock()
	c.pool.putLocked(b)
	c.pool.mu.Unlock()
}

// release returns the whole stash to the pool.
func (c *bufCache) release() {
	c.pool.mu.Lock()
	for i, b := range c.large {
		c.pool.putLocked(b[:])
		c.large[i] = nil
	}
	for i, b := range c.small {
		c.pool.putLocked(b[:])
		c.small[i] = nil
	}
	c.pool.mu.Unlock()
	c.large, c.small = c.large[:0], c.small[:0]
}
