package tap

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// NetNSDir is where `ip netns add` keeps named network namespaces.
const NetNSDir = "/var/run/netns"

// BatchSize is the most frames one Read returns or one Write takes.
const BatchSize = 64

// Config describes a TAP device to create.
type Config struct {
	// Name is the interface name; empty lets the kernel pick (tapN).
	Name string
	// NetNS is a network namespace name under [NetNSDir], or an absolute
	// path to a namespace file (/proc/PID/ns/net); empty means the
	// namespace of the calling process.
	NetNS string
	// MTU of the interface; 0 keeps the kernel's default (1500).
	MTU int
	// Offload opens the device with IFF_VNET_HDR and TSO4/TSO6/CSUM
	// offloads: the kernel hands over TCP super-frames (up to 64 KiB),
	// which Read cuts into MTU-sized frames, and Write coalesces runs of
	// TCP segments of one flow into one super-frame per write(2). Frames
	// on the Port side stay ordinary Ethernet frames either way.
	Offload bool
}

// Validate reports a configuration Open would refuse.
func (c Config) Validate() error {
	if errNoTAP != nil {
		return errNoTAP
	}
	if len(c.Name) >= unix.IFNAMSIZ {
		return fmt.Errorf("tap name %q: longer than %d bytes", c.Name, unix.IFNAMSIZ-1)
	}
	if strings.ContainsAny(c.Name, "/ \t\n:") {
		return fmt.Errorf("tap name %q: bad character", c.Name)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65521) {
		return fmt.Errorf("tap MTU %d: want 68 to 65521", c.MTU)
	}
	if c.NetNS != "" && !filepath.IsAbs(c.NetNS) && strings.ContainsRune(c.NetNS, '/') {
		return fmt.Errorf("netns %q: want a name or an absolute path", c.NetNS)
	}
	return nil
}
