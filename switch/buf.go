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

// SmallBufSize is the size of the pool's small buffers; its large ones
// are [BufSize] bytes.
const SmallBufSize = smallBufSize

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
func (c *bufCache) getFor(size int) []byte { return c.get(Headroom + size) }

// get returns a whole buffer of at least size bytes; the caller owns it.
func (c *bufCache) get(size int) []byte {
	if size > smallBufSize {
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

// The shared pool: the same bounded free lists, for packages that queue
// frames outside a switch (attach's datagram listeners), so that every
// frame buffer of corral comes from one mechanism.

// sharedPool backs [GetBuf], [PutBuf], [PutBufs] and every [BufCache].
var sharedPool bufPool

// checkSize panics when size exceeds the largest class: a caller that
// asks for more than [BufSize] has not checked the frame length it got.
func checkSize(size int) {
	if size > BufSize {
		panic("vswitch: buffer of more than BufSize bytes requested")
	}
}

// checkClass panics, before any lock is taken, when b is not a pool
// buffer (b or b[:n] of one).
func checkClass(b []byte) {
	if c := cap(b); c != BufSize && c != smallBufSize {
		panic("vswitch: foreign buffer returned to the pool")
	}
}

// GetBuf returns a whole buffer of at least size bytes from the shared
// pool: [SmallBufSize] bytes when that is enough, [BufSize] otherwise. It
// allocates only when the pool is empty. size must not exceed BufSize.
// The caller owns the buffer and gives it back with [PutBuf] or
// [PutBufs], or drops it.
func GetBuf(size int) []byte {
	checkSize(size)
	if size > smallBufSize {
		var b [1]*largeBuf
		fill(&sharedPool.mu, &sharedPool.large, b[:])
		return b[0][:]
	}
	var b [1]*smallBuf
	fill(&sharedPool.mu, &sharedPool.small, b[:])
	return b[0][:]
}

// PutBuf returns b, obtained from [GetBuf] or a [BufCache] (b or b[:n] of
// it), to the shared pool, or leaves it to the GC when the pool already
// holds its bound of free buffers (16 MiB of large, 8 MiB of small ones).
// The caller gives up b. It panics if b did not come from the pool.
func PutBuf(b []byte) {
	checkClass(b)
	sharedPool.mu.Lock()
	defer sharedPool.mu.Unlock()
	sharedPool.putLocked(b)
}

// PutBufs returns every non-nil bufs[i] to the shared pool, as [PutBuf],
// taking its lock once, and sets bufs[i] to nil.
func PutBufs(bufs [][]byte) {
	for _, b := range bufs {
		if b != nil {
			checkClass(b)
		}
	}
	sharedPool.putBufs(bufs)
}

// A BufCache is one goroutine's stash of up to 32 buffers of each size in
// front of the shared pool: Get and Put take the pool's lock once per 32
// buffers at most, not once per frame. It is not safe for concurrent use.
// Buffers may move between caches and the pool in any direction.
type BufCache struct{ c bufCache }

// NewBufCache returns an empty BufCache over the shared pool.
func NewBufCache() *BufCache { return &BufCache{c: newBufCache(&sharedPool)} }

// Get returns a whole buffer of at least size bytes, as [GetBuf]; size
// must not exceed BufSize. The caller owns it.
func (c *BufCache) Get(size int) []byte {
	checkSize(size)
	return c.c.get(size)
}

// Put takes back a buffer obtained from the pool (b or b[:n] of it); the
// caller gives it up. It panics if b did not come from the pool.
func (c *BufCache) Put(b []byte) {
	checkClass(b)
	c.c.put(b)
}

// Release returns the cache's buffers to the shared pool. The cache stays
// usable.
func (c *BufCache) Release() { c.c.release() }
