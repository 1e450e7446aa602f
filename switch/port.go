package vswitch

import "time"

// MAC is an Ethernet address. It is comparable and usable as a map key
// without allocation (see STYLE.md 3.4).
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff. As a [TrunkMeta.Host] on output it means
// "flood to every remote host that has the fence".
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

// TrunkMeta says where a trunk frame comes from or goes to.
type TrunkMeta struct {
	// Fence is the fence ID (1 … 0xFFFFFE).
	Fence uint32
	// Host is, on ReadTrunk, the sending host's outer MAC. On WriteTrunk it
	// is the destination host's outer MAC for known unicast, or [Broadcast]
	// to flood to every remote host that has Fence.
	Host MAC
}

// Trunk is the switch's side of an uplink: it carries the inner frames of
// many fences to and from remote hosts. Encapsulation, fragmentation,
// reassembly, validation and hellos are the trunk's job; the switch sees
// only valid inner frames tagged with their fence and host.
//
// Buffer, batch and concurrency rules are those of [Port]. On WriteTrunk,
// offset >= [Headroom], and the trunk may overwrite bufs[i][:offset] to
// prepend its headers.
type Trunk interface {
	// ReadTrunk reads up to len(bufs) inner frames received from remote
	// hosts into bufs[i][offset:offset+sizes[i]], with meta[i] naming the
	// fence and the sending host. Every frame is at least MinFrameSize long.
	ReadTrunk(bufs [][]byte, sizes []int, meta []TrunkMeta, offset int) (int, error)
	// WriteTrunk sends inner frames bufs[i][offset:] to remote hosts as
	// meta[i] says. It returns how many were handed to the network.
	WriteTrunk(bufs [][]byte, meta []TrunkMeta, offset int) (int, error)
	// BatchSize is the largest batch ReadTrunk returns and WriteTrunk takes.
	BatchSize() int
	// Close releases the trunk; blocked calls return net.ErrClosed.
	Close() error
}
