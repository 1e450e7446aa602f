package vswitch

import "time"

// MAC is an Ethernet address. It is comparable and usable as a map key
// without allocation (see STYLE.md 3.4).
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff. As a host of [Trunk.WriteTrunk] it
// means "flood to every remote host that has the fence".
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// IsMulticast reports whether m has the I/G bit set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

const (
	// Headroom is the number of bytes every frame buffer reserves in front of
	// the frame. Ports may use it as scratch on Write (a 4-byte length
	// prefix); a [Trunk] uses it to prepend the outer Ethernet header, the
	// fence header and, when sealed, the key ID and counter, so that
	// encapsulation is a prepend, not a copy.
	Headroom = 64

	// MaxFrameSize is the largest Ethernet frame (without FCS) the switch
	// carries: a 65520-byte guest MTU plus Ethernet and VLAN headers fits.
	MaxFrameSize = 65536

	// BufSize is the size of every frame buffer the switch hands to ports.
	BufSize = Headroom + MaxFrameSize

	// MinFrameSize is the shortest frame the switch accepts: an Ethernet
	// header. Shorter frames are counted as runts and dropped.
	MinFrameSize = 14

	// DefaultAgingTime is how long a learned MAC lives without traffic.
	DefaultAgingTime = 300 * time.Second
	// DefaultMaxPortMACs is how many source MACs one port may use.
	DefaultMaxPortMACs = 16
	// DefaultMaxFenceMACs is how many entries one fence's table holds.
	DefaultMaxFenceMACs = 65536
	// DefaultMaxHostMACs is how many entries of one fence's table may
	// point at one remote host (uplink.max_macs_per_host), so that one
	// host cannot fill a fence's table.
	DefaultMaxHostMACs = 4096
)

// Port is one attachment of the switch: a VM connection, a datagram peer, a
// TAP device, a gateway stack. It moves batches of plain byte slices, so
// transports implement it without importing this package.
//
// Buffers: the switch owns every buffer it passes; a port never keeps one
// after the call returns. Every bufs[i] has length at least offset +
// [MaxFrameSize] on Read; offset is always >= [Headroom].
//
// Concurrency: the switch calls Read from one goroutine and Write from one
// other goroutine; Read and Write may run at the same time. Close may be
// called at any time from any goroutine, more than once.
type Port interface {
	// Read blocks until at least one frame is available and reads up to
	// len(bufs) frames: frame i is written to bufs[i][offset:] and its length
	// to sizes[i]. len(sizes) >= len(bufs) and len(bufs) <= BatchSize().
	// It returns n > 0 with a nil error, or n == 0 with an error. An error is
	// final: a framing error (a length of 0 or above the port's maximum)
	// returns an error that says so, and after Close Read returns
	// [net.ErrClosed]. A frame longer than the buffer is a framing error.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write sends the frames bufs[i][offset:] (each slice ends where its
	// frame ends). The bytes bufs[i][:offset] are scratch the port may
	// overwrite. It returns how many frames were sent; an error is final
	// (the switch detaches the port). After Close it returns net.ErrClosed.
	// Write may block (that is the port's transmit queue backing up; the
	// switch drops frames for this port only, counted, while it does).
	Write(bufs [][]byte, offset int) (int, error)

	// BatchSize is the largest number of frames Read returns and Write
	// takes at once. It never changes over the port's life.
	BatchSize() int

	// Close releases the port; blocked Read and Write return net.ErrClosed.
	Close() error
}

// Trunk is the switch's side of an uplink: it carries the inner frames of
// many fences to and from remote hosts. Encapsulation, fragmentation,
// reassembly, validation and hellos are the trunk's job; the switch sees
// only valid inner frames tagged with their fence and host.
//
// Like [Port], the contract uses only builtin types, so an uplink
// implements it without importing this package. Every frame i travels with
// fences[i], its fence ID, and hosts[i], the 6-byte outer MAC of a remote
// host. On WriteTrunk, hosts[i] == ff:ff:ff:ff:ff:ff (all ones, [Broadcast])
// means "flood": send the frame to every remote host that has fences[i].
// No host has that outer MAC, so it never names one.
//
// Buffer, batch and concurrency rules are those of [Port]. On WriteTrunk,
// offset >= [Headroom], and the trunk may overwrite bufs[i][:offset] to
// prepend its headers.
type Trunk interface {
	// ReadTrunk reads up to len(bufs) inner frames received from remote
	// hosts: frame i into bufs[i][offset:offset+sizes[i]], its fence ID
	// into fences[i] and the sending host's outer MAC into hosts[i].
	// len(sizes), len(fences) and len(hosts) are >= len(bufs). Every frame
	// is at least [MinFrameSize] long. It returns n > 0 with a nil error,
	// or n == 0 with an error; after Close the error is [net.ErrClosed].
	ReadTrunk(bufs [][]byte, sizes []int, fences []uint32, hosts [][6]byte, offset int) (n int, err error)
	// WriteTrunk sends the inner frames bufs[i][offset:] of fence
	// fences[i] to the remote host whose outer MAC is hosts[i] (known
	// unicast), or, when hosts[i] is all ones, to every remote host that
	// has fences[i]. len(fences) and len(hosts) are >= len(bufs). It
	// returns how many were handed to the network; an error is final.
	WriteTrunk(bufs [][]byte, fences []uint32, hosts [][6]byte, offset int) (int, error)
	// BatchSize is the largest batch ReadTrunk returns and WriteTrunk takes.
	BatchSize() int
	// Close releases the trunk; blocked calls return net.ErrClosed.
	Close() error
}

// trunkMeta is where a frame queued for the trunk goes: its fence and the
// remote host's outer MAC ([Broadcast]: flood), passed to WriteTrunk as
// fences[i] and hosts[i].
type trunkMeta struct {
	fence uint32
	host  MAC
}

// ReadWaiter is an optional interface of a [Port] (not part of the frozen
// Port contract: ports without it work as before). It lets an idle port
// hold no frame buffers: the switch calls WaitRead, and only once it
// returns does it take a batch of buffers from the shared pool, call
// Read, switch the frames and give the buffers back before it waits
// again. Without it, the reader holds its batch (up to 64 buffers of
// [BufSize]) while Read blocks.
//
// Rules, in addition to those of [Port.Read]:
//   - WaitRead blocks until Read would not block: a frame, or part of one,
//     or an error is ready. It holds no frame buffers while it waits. An
//     error is final, like a Read error; after Close it returns
//     [net.ErrClosed].
//   - The switch calls WaitRead from the reader goroutine only, never at
//     the same time as Read.
//   - Read of a ReadWaiter may return 0 frames and a nil error when what
//     was ready was only part of a frame (a stream's length prefix or the
//     start of a frame); the switch then waits again. Read must not block
//     for long after WaitRead returned.
type ReadWaiter interface {
	WaitRead() error
}

// A Settler is a Port whose client may turn out to be a liveness probe: a
// connection that ends before its first byte (a second corral checking
// whether a socket path is held, `nc -z`, a health check). The switch
// attaches such a port at once, so it switches frames from the start (a
// quiet receiver misses no broadcast), but announces it — the "port
// attached" log line and [PortHandle.Announced] — only once Settled is
// closed with Probe false. A port that ends as a probe, or before it
// settled, is detached with a debug line instead of the attach and
// detach lines.
//
// Settled returns nil when the port is settled from the start (dialed
// ports, stdio). The port closes the channel before its Read returns the
// first frame or the end of the stream; Probe is read after it is closed.
type Settler interface {
	Settled() <-chan struct{}
	Probe() bool
}
