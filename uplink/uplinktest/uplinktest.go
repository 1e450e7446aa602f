// Package uplinktest provides in-memory fakes of an uplink for tests of the
// switch core: a [Network] of [Trunk]s, built on channels, that carries
// inner frames between "hosts" the way uplink.Uplink does (unicast to one
// host by outer MAC, floods to every other host), without sockets,
// encapsulation or hellos. *Trunk implements vswitch.Trunk; like the
// uplink, it uses only builtin types for that.
package uplinktest

import (
	"net"
	"sync"
	"sync/atomic"
)

// BatchSize is the batch size of every fake Trunk.
const BatchSize = 16

// QueueLen is how many frames a Trunk holds for its reader; more are
// dropped and counted in [Trunk.Dropped].
const QueueLen = 1024

// Flood is the host of a WriteTrunk frame that goes to every other host
// (ff:ff:ff:ff:ff:ff, as in the vswitch.Trunk contract).
var Flood = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

type frame struct {
	data  []byte
	fence uint32
	host  [6]byte // the sender
}

// Network connects fake trunks. The zero value is not usable; call
// [NewNetwork].
type Network struct {
	mu     sync.Mutex // guards trunks
	trunks map[[6]byte]*Trunk
}

// NewNetwork returns an empty network.
func NewNetwork() *Network { return &Network{trunks: map[[6]byte]*Trunk{}} }

// Trunk adds a host with outer MAC host to the network and returns its
// trunk. A second trunk with the same MAC replaces the first for delivery.
func (n *Network) Trunk(host [6]byte) *Trunk {
	t := &Trunk{net: n, host: host, in: make(chan frame, QueueLen), done: make(chan struct{})}
	n.mu.Lock()
	n.trunks[host] = t
	n.mu.Unlock()
	return t
}

// Trunk is one host's end of a [Network].
//
// Concurrency: as vswitch.Trunk (one reader, one writer, Close from
// anywhere, more than once).
type Trunk struct {
	net  *Network
	host [6]byte
	in   chan frame

	once sync.Once
	done chan struct{}

	// Sent counts frames handed to WriteTrunk (per destination host).
	Sent atomic.Uint64
	// Received counts frames returned by ReadTrunk.
	Received atomic.Uint64
	// Dropped counts frames lost to a full queue or an unknown host.
	Dropped atomic.Uint64
	// Fences, if set, filters floods: a flood of fence F reaches this
	// trunk only if Fences(F) is true (like hellos in the real uplink).
	Fences func(fence uint32) bool
}

// Host returns the trunk's outer MAC.
func (t *Trunk) Host() [6]byte { return t.host }

// ReadTrunk implements vswitch.Trunk.ReadTrunk: it blocks for one frame,
// then takes whatever else is queued, up to len(bufs).
func (t *Trunk) ReadTrunk(bufs [][]byte, sizes []int, fences []uint32, hosts [][6]byte, offset int) (int, error) {
	var f frame
	select {
	case f = <-t.in:
	case <-t.done:
		return 0, net.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], f.data)
		fences[n], hosts[n] = f.fence, f.host
		n++
		if n == len(bufs) {
			break
		}
		select {
		case f = <-t.in:
			continue
		default:
		}
		break
	}
	t.Received.Add(uint64(n))
	return n, nil
}

// WriteTrunk implements vswitch.Trunk.WriteTrunk: frames are copied to the
// destination trunk (hosts[i]), or, for [Flood], to every other trunk whose
// Fences filter accepts the fence.
func (t *Trunk) WriteTrunk(bufs [][]byte, fences []uint32, hosts [][6]byte, offset int) (int, error) {
	select {
	case <-t.done:
		return 0, net.ErrClosed
	default:
	}
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	for i := range bufs {
		fenceID := fences[i]
		if hosts[i] == Flood {
			for mac, d := range t.net.trunks {
				if mac != t.host && (d.Fences == nil || d.Fences(fenceID)) {
					t.deliver(d, bufs[i][offset:], fenceID)
				}
			}
			continue
		}
		d := t.net.trunks[hosts[i]]
		if d == nil {
			t.Dropped.Add(1)
			continue
		}
		t.deliver(d, bufs[i][offset:], fenceID)
	}
	return len(bufs), nil
}

func (t *Trunk) deliver(d *Trunk, b []byte, fenceID uint32) {
	select {
	case <-d.done:
		return
	default:
	}
	select {
	case d.in <- frame{data: append([]byte(nil), b...), fence: fenceID, host: t.host}:
		t.Sent.Add(1)
	default:
		d.Dropped.Add(1)
	}
}

// BatchSize implements vswitch.Trunk.BatchSize.
func (t *Trunk) BatchSize() int { return BatchSize }

// Close implements vswitch.Trunk.Close and removes the trunk from its
// network.
func (t *Trunk) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.net.mu.Lock()
		if t.net.trunks[t.host] == t {
			delete(t.net.trunks, t.host)
		}
		t.net.mu.Unlock()
	})
	return nil
}
