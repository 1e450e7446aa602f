package gossip

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport wraps memberlist's transport and counts every byte
// memberlist sends and receives (probes, gossip, push/pull and the fence
// state alike): the figures of Counters.BytesIn and BytesOut.
type countingTransport struct {
	memberlist.NodeAwareTransport
	in, out *atomic.Uint64

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func newCountingTransport(t memberlist.NodeAwareTransport, in, out *atomic.Uint64) *countingTransport {
	c := &countingTransport{
		NodeAwareTransport: t,
		in:                 in,
		out:                out,
		packetCh:           make(chan *memberlist.Packet),
		streamCh:           make(chan net.Conn),
		stop:               make(chan struct{}),
	}
	c.wg.Add(2)
	go c.forwardPackets()
	go c.forwardStreams()
	return c
}

func (c *countingTransport) forwardPackets() {
	defer c.wg.Done()
	src := c.NodeAwareTransport.PacketCh()
	for {
		select {
		case p := <-src:
			c.in.Add(uint64(len(p.Buf)))
			select {
			case c.packetCh <- p:
			case <-c.stop:
				return
			}
		case <-c.stop:
			return
		}
	}
}

func (c *countingTransport) forwardStreams() {
	defer c.wg.Done()
	src := c.NodeAwareTransport.StreamCh()
	for {
		select {
		case s := <-src:
			select {
			case c.streamCh <- &countingConn{Conn: s, c: c}:
			case <-c.stop:
				s.Close()
				return
			}
		case <-c.stop:
			return
		}
	}
}

// PacketCh implements memberlist.Transport.
func (c *countingTransport) PacketCh() <-chan *memberlist.Packet { return c.packetCh }

// StreamCh implements memberlist.Transport.
func (c *countingTransport) StreamCh() <-chan net.Conn { return c.streamCh }

// WriteTo implements memberlist.Transport.
func (c *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	c.out.Add(uint64(len(b)))
	return c.NodeAwareTransport.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (c *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	c.out.Add(uint64(len(b)))
	return c.NodeAwareTransport.WriteToAddress(b, a)
}

// DialTimeout implements memberlist.Transport.
func (c *countingTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	s, err := c.NodeAwareTransport.DialTimeout(addr, d)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: s, c: c}, nil
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (c *countingTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	s, err := c.NodeAwareTransport.DialAddressTimeout(a, d)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: s, c: c}, nil
}

// Shutdown implements memberlist.Transport: it stops the forwarders and
// shuts the wrapped transport down.
func (c *countingTransport) Shutdown() error {
	c.once.Do(func() { close(c.stop) })
	err := c.NodeAwareTransport.Shutdown()
	c.wg.Wait()
	return err
}

// countingConn counts a stream's bytes.
type countingConn struct {
	net.Conn
	c *countingTransport
}

func (s *countingConn) Read(b []byte) (int, error) {
	n, err := s.Conn.Read(b)
	s.c.in.Add(uint64(n))
	return n, err
}

func (s *countingConn) Write(b []byte) (int, error) {
	n, err := s.Conn.Write(b)
	s.c.out.Add(uint64(n))
	return n, err
}

// logWriter turns memberlist's log lines ("[WARN] memberlist: …") into
// slog records at the matching level, at most logBurst per second; a
// peer can make memberlist log (bad packets, failed decryption), so the
// rest is counted in suppressed.
type logWriter struct {
	log        *slog.Logger
	suppressed *atomic.Uint64

	mu     sync.Mutex
	window time.Time // +checklocks:mu
	n      int       // +checklocks:mu
}

const logBurst = 20

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(bytes.TrimRight(p, "\n")))
	level := slog.LevelInfo
	for _, l := range [...]struct {
		tag   string
		level slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}} {
		if i := strings.Index(line, l.tag); i >= 0 {
			level = l.level
			line = strings.TrimSpace(line[i+len(l.tag):])
			break
		}
	}
	if !w.log.Enabled(context.Background(), level) {
		return len(p), nil
	}
	now := time.Now()
	w.mu.Lock()
	if now.Sub(w.window) >= time.Second {
		w.window, w.n = now, 0
	}
	w.n++
	ok := w.n <= logBurst
	w.mu.Unlock()
	if !ok {
		w.suppressed.Add(1)
		return len(p), nil
	}
	w.log.Log(context.Background(), level, strings.TrimPrefix(line, "memberlist: "), "component", "memberlist")
	return len(p), nil
}
