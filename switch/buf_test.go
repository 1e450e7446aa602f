package vswitch

import (
	"strings"
	"sync"
	"testing"
)

// sharedFree reports how many free buffers the shared pool holds.
func sharedFree() (large, small int) {
	sharedPool.mu.Lock()
	defer sharedPool.mu.Unlock()
	return len(sharedPool.large), len(sharedPool.small)
}

func TestGetBufClasses(t *testing.T) {
	tests := []struct {
		size, want int
	}{
		{0, SmallBufSize},
		{1, SmallBufSize},
		{MinFrameSize, SmallBufSize},
		{SmallBufSize, SmallBufSize},
		{SmallBufSize + 1, BufSize},
		{MaxFrameSize, BufSize},
		{BufSize, BufSize},
	}
	c := NewBufCache()
	defer c.Release()
	for _, tt := range tests {
		b := GetBuf(tt.size)
		if len(b) != tt.want || cap(b) != tt.want {
			t.Errorf("GetBuf(%d): len %d cap %d, want %d", tt.size, len(b), cap(b), tt.want)
		}
		PutBuf(b[:tt.size])
		b = c.Get(tt.size)
		if len(b) != tt.want || cap(b) != tt.want {
			t.Errorf("BufCache.Get(%d): len %d cap %d, want %d", tt.size, len(b), cap(b), tt.want)
		}
		c.Put(b[:tt.size])
	}
}

// TestPutBufReuses: a buffer given back is the next one handed out.
func TestPutBufReuses(t *testing.T) {
	for _, size := range []int{100, 9000} {
		b := GetBuf(size)
		b[0] = 0x5a
		PutBuf(b[:1])
		if g := GetBuf(size); &g[0] != &b[0] {
			t.Errorf("size %d: GetBuf after PutBuf returned another buffer", size)
		} else {
			PutBuf(g)
		}
	}
	bufs := [][]byte{GetBuf(1), nil, GetBuf(5000)}
	PutBufs(bufs)
	for i, b := range bufs {
		if b != nil {
			t.Fatalf("PutBufs left bufs[%d] set", i)
		}
	}
}

// TestBufPoolBounded: the shared pool keeps at most its bound of free
// buffers; beyond it, buffers are left to the GC.
func TestBufPoolBounded(t *testing.T) {
	n := maxFreeSmall + 100
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, SmallBufSize) // any buffer of the class's size and capacity
	}
	PutBufs(bufs)
	large, small := sharedFree()
	if small != maxFreeSmall {
		t.Fatalf("%d free small buffers after putting %d, want the bound %d", small, n, maxFreeSmall)
	}
	for i := 0; i < maxFreeLarge+10; i++ {
		PutBuf(make([]byte, BufSize))
	}
	if large, _ = sharedFree(); large != maxFreeLarge {
		t.Fatalf("%d free large buffers, want the bound %d", large, maxFreeLarge)
	}
	// Drain what this test added, for the others.
	for i := 0; i < maxFreeSmall; i++ {
		GetBuf(1)
	}
	for i := 0; i < maxFreeLarge; i++ {
		GetBuf(BufSize)
	}
}

func TestBufForeignPanics(t *testing.T) {
	tests := []struct {
		name string
		fn   func()
		want string
	}{
		{"PutBuf", func() { PutBuf(make([]byte, 1000)) }, "foreign buffer"},
		{"BufCache.Put", func() { NewBufCache().Put(make([]byte, 3000)) }, "foreign buffer"},
		{"PutBufs", func() { PutBufs([][]byte{GetBuf(1), make([]byte, 10)}) }, "foreign buffer"},
		{"GetBuf too big", func() { GetBuf(BufSize + 1) }, "more than BufSize"},
		{"BufCache.Get too big", func() { NewBufCache().Get(BufSize + 1) }, "more than BufSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.want) {
					t.Fatalf("recovered %v, want a panic about %q", r, tt.want)
				}
			}()
			tt.fn()
		})
	}
	// The pool still works: no lock was left held.
	PutBuf(GetBuf(1))
}

// TestBufCacheConcurrent: caches on several goroutines hand buffers to
// each other through channels (as a reader and a port's Read do) and back
// to the pool; the race detector watches.
func TestBufCacheConcurrent(t *testing.T) {
	ch := make(chan []byte, 64)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c := NewBufCache()
			defer c.Release()
			for i := 0; i < 2000; i++ {
				b := c.Get(100 + i%3000)
				b[0] = byte(i)
				ch <- b[:1]
			}
		}()
		go func() {
			defer wg.Done()
			c := NewBufCache()
			defer c.Release()
			done := make([][]byte, 0, 8)
			for i := 0; i < 2000; i++ {
				b := <-ch
				if i%2 == 0 {
					c.Put(b)
					continue
				}
				if done = append(done, b); len(done) == cap(done) {
					PutBufs(done)
					done = done[:0]
				}
			}
			PutBufs(done)
		}()
	}
	wg.Wait()
}

var sinkBuf []byte

// TestBufAPINoAllocs: in steady state the shared pool's API allocates
// nothing (STYLE 4.4).
func TestBufAPINoAllocs(t *testing.T) {
	c := NewBufCache()
	defer c.Release()
	bufs := make([][]byte, 4)
	run := func() {
		for i := range bufs {
			bufs[i] = c.Get(1000 + i*2000)
		}
		c.Put(bufs[0])
		bufs[0] = GetBuf(1)
		sinkBuf = bufs[0]
		PutBuf(bufs[0])
		bufs[0] = nil
		PutBufs(bufs)
	}
	run()
	if a := testing.AllocsPerRun(1000, run); a != 0 {
		t.Fatalf("pool Get/Put: %v allocations per run, want 0", a)
	}
}
