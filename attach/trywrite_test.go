package attach

import (
	"net"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

// TestStreamTryWrite fills a small socket buffer with TryWrite (which must
// never block, and may stop in the middle of a frame), mixes in Write, and
// checks every frame arrives whole, once, in order.
func TestStreamTryWrite(t *testing.T) {
	a, b := unixPair(t)
	a.(*net.UnixConn).SetWriteBuffer(4096)
	p := NewStreamPort(a, Options{})
	tw, ok := p.(vswitch.TryWriter)
	if !ok {
		t.Fatal("stream port does not implement vswitch.TryWriter")
	}
	var want [][]byte
	for i := 0; i < 200; i++ {
		want = append(want, frame(i, 60+(i*997)%3000))
	}
	done := make(chan error, 1)
	go func() {
		rest := want
		tries, full := 0, 0
		for len(rest) > 0 {
			n := min(len(rest), 16)
			k, err := tw.TryWrite(outBufs(rest[:n]...), vswitch.Headroom)
			if err != nil {
				done <- err
				return
			}
			tries++
			if k == 0 {
				full++
				// Full: hand the rest of this batch to the blocking Write.
				if _, err := p.Write(outBufs(rest[:n]...), vswitch.Headroom); err != nil {
					done <- err
					return
				}
				k = n
			}
			rest = rest[k:]
		}
		if full == 0 {
			t.Errorf("TryWrite never found the socket full in %d tries", tries)
		}
		done <- nil
	}()
	q := NewStreamPort(b, Options{})
	sameFrames(t, readFrames(t, q, len(want)), want)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
