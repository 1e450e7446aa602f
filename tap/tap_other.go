//go:build !linux

package tap

import (
	"fmt"
	"net"
	"runtime"
)

// errNoTAP is why this OS cannot open TAP devices: the package drives
// Linux's /dev/net/tun and network namespaces.
var errNoTAP = fmt.Errorf("TAP devices (corral plug --tap) need Linux, this is %s; attach VMs through a socket (unix://, unixgram://, tcp://, udp://) instead", runtime.GOOS)

// Device is an open TAP device; on this OS none can be opened.
type Device struct{}

// Open fails: TAP devices need Linux.
func Open(cfg Config) (*Device, error) { return nil, errNoTAP }

// Name returns the interface name.
func (d *Device) Name() string { return "" }

// Drops counts frames the kernel refused on Write.
func (d *Device) Drops() uint64 { return 0 }

// RxBad counts frames Read dropped.
func (d *Device) RxBad() uint64 { return 0 }

// Coalesced counts frames Write merged into super-frames.
func (d *Device) Coalesced() uint64 { return 0 }

// Segmented counts the super-frames Read cut.
func (d *Device) Segmented() uint64 { return 0 }

// Offload reports whether the device uses offloads.
func (d *Device) Offload() bool { return false }

// BatchSize implements vswitch.Port.BatchSize.
func (d *Device) BatchSize() int { return BatchSize }

// Close implements vswitch.Port.Close.
func (d *Device) Close() error { return nil }

// Read implements vswitch.Port.Read.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) { return 0, net.ErrClosed }

// Write implements vswitch.Port.Write.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) { return 0, net.ErrClosed }
