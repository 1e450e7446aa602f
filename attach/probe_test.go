package attach

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// settledAs waits for g's port to settle and returns whether it was a
// probe.
func settledAs(t *testing.T, g gotPort) bool {
	t.Helper()
	s, ok := g.p.(vswitch.Settler)
	if !ok || s.Settled() == nil {
		t.Fatalf("a listener's port %s is not a Settler", g.name)
	}
	select {
	case <-s.Settled():
		return s.Probe()
	case <-time.After(testTimeout):
		t.Fatalf("port %s never settled", g.name)
	}
	panic("unreachable")
}

// A listener's connection is a port at once; it settles as a liveness
// probe when it ends before its first byte, as a client when a byte comes
// (at once) or after probeGrace of silence.
func TestProbeSettles(t *testing.T) {
	for _, scheme := range []Scheme{Unix, Unixpacket, TCP} {
		t.Run(string(scheme), func(t *testing.T) {
			target := "127.0.0.1:0"
			if scheme != TCP {
				target = sockPath(t, "p.sock")
			}
			c := newCollector()
			l, err := Listen(context.Background(), Addr{scheme, target}, testOpts(t), c.onPort)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			network := map[Scheme]string{Unix: "unix", Unixpacket: "unixpacket", TCP: "tcp"}[scheme]
			if scheme == TCP {
				conn, err := net.Dial(network, l.Addr().Target)
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
			} else {
				// What a second corral does with a live path.
				_, err := Listen(context.Background(), Addr{scheme, target}, testOpts(t), newCollector().onPort)
				if !errors.Is(err, ErrInUse) {
					t.Fatalf("second Listen: %v, want ErrInUse", err)
				}
			}
			probe := c.next(t)
			if _, err := probe.p.Read([][]byte{make([]byte, 2048)}, make([]int, 1), vswitch.Headroom); !errors.Is(err, io.EOF) {
				t.Fatalf("the probe's Read: %v, want EOF", err)
			}
			if !settledAs(t, probe) {
				t.Fatal("a connection that ended before its first byte did not settle as a probe")
			}

			// A client that talks at once settles as a client with its
			// first frame.
			talk, err := net.Dial(network, l.Addr().Target)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { talk.Close() })
			want := [][]byte{frame(1, 60)}
			if _, err := talk.Write(encodeFor(scheme, want)); err != nil {
				t.Fatal(err)
			}
			g := c.next(t)
			sameFrames(t, readFrames(t, g.p, 1), want)
			if settledAs(t, g) {
				t.Fatal("a client that sent a frame settled as a probe")
			}

			// A quiet client is a port at once and settles as a client
			// after the grace; what is written to it arrives meanwhile.
			start := time.Now()
			quiet, err := net.Dial(network, l.Addr().Target)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { quiet.Close() })
			q := c.next(t)
			if _, err := q.p.Write([][]byte{append(make([]byte, vswitch.Headroom), want[0]...)}, vswitch.Headroom); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 256)
			quiet.SetReadDeadline(time.Now().Add(testTimeout))
			if n, err := quiet.Read(buf); err != nil || n == 0 {
				t.Fatalf("the quiet client read %d bytes, %v", n, err)
			}
			if settledAs(t, q) {
				t.Fatal("a quiet client settled as a probe")
			}
			if d := time.Since(start); d < probeGrace/2 {
				t.Fatalf("the quiet client settled after %v, before the grace %v", d, probeGrace)
			}
		})
	}
}

// encodeFor frames frames as a client of scheme writes them: a 4-byte
// length per frame on streams, one frame per message on unixpacket.
func encodeFor(s Scheme, frames [][]byte) []byte {
	if s == Unixpacket {
		return frames[0]
	}
	return encode(frames...)
}
