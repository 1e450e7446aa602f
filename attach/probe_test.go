package attach

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// A liveness probe (connect, close without a byte) never becomes a port,
// is logged at debug; a quiet client becomes one after probeGrace, a
// talking one at once.
func TestProbeIsNoPort(t *testing.T) {
	for _, scheme := range []Scheme{Unix, Unixpacket, TCP} {
		t.Run(string(scheme), func(t *testing.T) {
			target := "127.0.0.1:0"
			if scheme != TCP {
				target = sockPath(t, "p.sock")
			}
			c := newCollector()
			var probes atomic.Int64
			opts := countMsgs(testOpts(t), "connection closed before its first byte (a liveness probe): no port", &probes)
			l, err := Listen(context.Background(), Addr{scheme, target}, opts, c.onPort)
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
			waitUntil(t, time.Now().Add(testTimeout), func() bool { return probes.Load() == 1 },
				func() string { return "the probe was not recognized" })
			if n := c.calls.Load(); n != 0 {
				t.Fatalf("the probe made %d ports", n)
			}

			// A client that talks at once is a port at once (well within
			// the grace in the normal case; a loaded machine may be slow,
			// so only that it becomes one is checked).
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

			// A quiet client becomes a port after the grace.
			start := time.Now()
			quiet, err := net.Dial(network, l.Addr().Target)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { quiet.Close() })
			c.next(t)
			if d := time.Since(start); d < probeGrace/2 {
				t.Fatalf("the quiet client was a port after %v, before the grace %v", d, probeGrace)
			}
			if n := probes.Load(); n != 1 {
				t.Fatalf("%d probes, want 1", n)
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
