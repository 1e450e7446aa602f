package attach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// portFactories make one port of every kind, each with a live far end
// that keeps sending frames to it, so Read and Write both have work.
var portFactories = []struct {
	name string
	make func(t *testing.T) vswitch.Port
}{
	{"unix stream", func(t *testing.T) vswitch.Port {
		path := sockPath(t, "s")
		c := newCollector()
		listenT(t, Addr{Unix, path}, c)
		far, err := DialOnce(context.Background(), Addr{Unix, path}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { far.Close() })
		feed(t, far)
		return c.next(t).p
	}},
	{"tcp stream", func(t *testing.T) vswitch.Port {
		c := newCollector()
		l := listenT(t, Addr{TCP, "127.0.0.1:0"}, c)
		p, err := DialOnce(context.Background(), l.Addr(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		far := c.next(t).p
		feed(t, far)
		return p
	}},
	{"pipe stream", func(t *testing.T) vswitch.Port {
		a, b := net.Pipe()
		far := NewStreamPort(b, Options{})
		t.Cleanup(func() { far.Close() })
		feed(t, far)
		return NewStreamPort(a, Options{})
	}},
	{"unixpacket", func(t *testing.T) vswitch.Port {
		path := sockPath(t, "p")
		c := newCollector()
		listenT(t, Addr{Unixpacket, path}, c)
		p, err := DialOnce(context.Background(), Addr{Unixpacket, path}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		feed(t, c.next(t).p)
		return p
	}},
	{"udp peer", func(t *testing.T) vswitch.Port {
		c := newCollector()
		l := listenT(t, Addr{UDP, "127.0.0.1:0"}, c)
		far, err := DialOnce(context.Background(), l.Addr(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { far.Close() })
		feed(t, far)
		return c.next(t).p
	}},
	{"udp dialed", func(t *testing.T) vswitch.Port {
		c := newCollector()
		l := listenT(t, Addr{UDP, "127.0.0.1:0"}, c)
		p, err := DialOnce(context.Background(), l.Addr(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		p.Write(outBufs(frame(0, 60)), vswitch.Headroom)
		feed(t, c.next(t).p)
		return p
	}},
	{"unixgram peer", func(t *testing.T) vswitch.Port {
		path := filepath.Join(shortDir(t), "g")
		c := newCollector()
		listenT(t, Addr{Unixgram, path}, c)
		far, err := DialOnce(context.Background(), Addr{Unixgram, path}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { far.Close() })
		feed(t, far)
		return c.next(t).p
	}},
}

// feed writes frames to p until it fails or the test ends.
func feed(t *testing.T, p vswitch.Port) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		out := outBufs(frame(1, 60), frame(2, 1514))
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := p.Write(out, vswitch.Headroom); err != nil {
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	t.Cleanup(func() { close(stop); p.Close(); wg.Wait() })
}

// TestPortConformance checks the vswitch.Port rules every port kind must
// keep: a constant BatchSize, reading and writing at the same time, Close
// from a third goroutine unblocking both with net.ErrClosed, Close twice,
// and net.ErrClosed after Close.
func TestPortConformance(t *testing.T) {
	for _, pf := range portFactories {
		t.Run(pf.name, func(t *testing.T) {
			p := pf.make(t)
			if bs := p.BatchSize(); bs < 1 || bs != p.BatchSize() {
				t.Fatalf("BatchSize %d", bs)
			}
			// First frames arrive.
			readFrames(t, p, 2)

			var wg sync.WaitGroup
			var rerr, werr error
			var reads, writes atomic.Int64
			wg.Add(2)
			go func() {
				defer wg.Done()
				bufs, sizes := batch(p.BatchSize())
				for {
					if _, err := p.Read(bufs, sizes, vswitch.Headroom); err != nil {
						rerr = err
						return
					}
					reads.Add(1)
				}
			}()
			go func() {
				defer wg.Done()
				out := outBufs(frame(3, 60), frame(4, 1514), frame(5, 200))
				for {
					writes.Add(1) // a pipe's Write blocks until the far end reads: count calls
					if _, err := p.Write(out, vswitch.Headroom); err != nil {
						werr = err
						return
					}
				}
			}()
			// Both are under way (Read has returned frames, Write has been
			// called) before the third goroutine closes.
			waitUntil(t, time.Now().Add(testTimeout), func() bool { return reads.Load() > 0 && writes.Load() > 0 },
				func() string { return fmt.Sprintf("reads %d, writes %d before Close", reads.Load(), writes.Load()) })
			if err := p.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Close: %v", err)
			}
			p.Close()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(testTimeout):
				t.Fatal("Read or Write still running after Close")
			}
			if !errors.Is(rerr, net.ErrClosed) {
				t.Errorf("Read during Close: %v, want net.ErrClosed", rerr)
			}
			if !errors.Is(werr, net.ErrClosed) {
				t.Errorf("Write during Close: %v, want net.ErrClosed", werr)
			}
			bufs, sizes := batch(2)
			if _, err := p.Read(bufs, sizes, vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read after Close: %v", err)
			}
			if _, err := p.Write(outBufs(frame(6, 60)), vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write after Close: %v", err)
			}
		})
	}
}
