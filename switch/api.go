package vswitch

// API skeleton written by the lead so that every package compiles from the
// start. The vswitch implementer replaces the bodies (and may move these
// declarations into other files), keeping the exported signatures; changing
// a signature means telling the lead.

import (
	"errors"
	"log/slog"
	"time"
)

var errTODO = errors.New("vswitch: not implemented yet")

// Config configures a [Switch]. The zero value of every field means its default.
type Config struct {
	AgingTime    time.Duration // 0: DefaultAgingTime
	MaxPortMACs  int           // 0: DefaultMaxPortMACs
	MaxFenceMACs int           // 0: DefaultMaxFenceMACs
	QueueLen     int           // 0: DefaultQueueLen
	Logger       *slog.Logger  // nil: discard
}

// FenceConfig describes one fence.
type FenceConfig struct {
	ID      uint32 // 1 … 0xFFFFFE
	Name    string
	MaxMACs int // 0: Config.MaxFenceMACs
}

// PortConfig describes one port when it is attached.
type PortConfig struct {
	Name     string // shown in logs and the admin API, e.g. "unix:/run/x.sock#3"
	Fence    uint32
	PinMAC   MAC // non-zero: only frames with this source MAC are accepted
	MaxMACs  int // 0: Config.MaxPortMACs
	QueueLen int // 0: Config.QueueLen
}

// Switch is the switch core.
type Switch struct{}

// New returns a switch with no fences.
func New(cfg Config) (*Switch, error) { return nil, errTODO }

// AddFence adds a fence. IDs and names are unique.
func (s *Switch) AddFence(fc FenceConfig) error { return errTODO }

// PortHandle is an attached port.
type PortHandle struct{}

// ID is the port's switch-unique number.
func (h *PortHandle) ID() uint64 { return 0 }

// Done is closed when the port has been detached (its Read or Write failed,
// or Close was called) and its goroutines have returned.
func (h *PortHandle) Done() <-chan struct{} { return nil }

// Err is why the port was detached (nil when closed by Close or the switch).
func (h *PortHandle) Err() error { return nil }

// Close detaches the port, closes it and waits for its goroutines.
func (h *PortHandle) Close() error { return errTODO }

// Attach starts switching frames of p within pc.Fence. The switch reads p
// until Read fails, then detaches and closes it and flushes its MACs.
func (s *Switch) Attach(p Port, pc PortConfig) (*PortHandle, error) { return nil, errTODO }

// AttachTrunk connects the uplink. At most one trunk.
func (s *Switch) AttachTrunk(t Trunk) error { return errTODO }

// FlushHost forgets every MAC learned from the remote host with this outer
// MAC (a dead peer), in every fence, and returns how many were removed.
func (s *Switch) FlushHost(host MAC) int { return 0 }

// LocalFences returns the IDs of fences that have at least one local port,
// ascending (for hellos).
func (s *Switch) LocalFences() []uint32 { return nil }

// Close detaches and closes every port and the trunk and waits for them.
func (s *Switch) Close() error { return errTODO }
