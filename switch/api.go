package vswitch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the switch API.
var (
	// ErrClosed is returned by calls on a closed [Switch].
	ErrClosed = errors.New("vswitch: switch closed")
	// ErrUnknownFence is returned by [Switch.Attach] for a fence that was not added.
	ErrUnknownFence = errors.New("vswitch: unknown fence")
	// ErrFenceExists is returned by [Switch.AddFence] for a duplicate ID or name.
	ErrFenceExists = errors.New("vswitch: fence exists")
	// ErrBadFenceID is returned by [Switch.AddFence] for fence ID 0: the
	// zero value of [PortConfig.Fence] and [FenceConfig.ID] means "not
	// set", so no fence can have it. (The range of IDs the wire carries,
	// DESIGN.md section 1, is checked where the configuration is read.)
	ErrBadFenceID = errors.New("vswitch: fence ID 0")
	// ErrTrunkAttached is returned by [Switch.AttachTrunk] when a trunk is already attached.
	ErrTrunkAttached = errors.New("vswitch: a trunk is already attached")
	// ErrBadBatchSize is returned by Attach and AttachTrunk when BatchSize() < 1.
	ErrBadBatchSize = errors.New("vswitch: batch size must be at least 1")
	// ErrPortLimit is wrapped by the [*PortLimitError] Attach returns when
	// the fence already has Config.MaxFencePorts ports.
	ErrPortLimit = errors.New("vswitch: fence port limit reached")
)

// DefaultMaxFencePorts is how many local ports one fence may have
// (limits.ports_per_fence).
const DefaultMaxFencePorts = 4096

// PortLimitError is the error of an Attach refused because the fence has
// its maximum number of ports. It wraps [ErrPortLimit].
type PortLimitError struct {
	Fence uint32
	Max   int
}

// Error implements error.
func (e *PortLimitError) Error() string {
	return fmt.Sprintf("vswitch: fence %d has its maximum of %d ports", e.Fence, e.Max)
}

// Unwrap returns [ErrPortLimit].
func (e *PortLimitError) Unwrap() error { return ErrPortLimit }

// maxBatch bounds the batch a port may ask for: the most frames the switch
// passes to one Write (IOV_MAX, the most one writev takes).
const maxBatch = 1024

// maxReadBatch bounds the buffers a reader passes to one Read: each is a
// [BufSize] (64 KiB + 64) buffer, because the frozen [Port] contract says
// every Read buffer must hold a maximum frame. A reader therefore holds at
// most 64 × 65600 B ≈ 4.2 MiB. Write batches are not bounded by this (a
// queued 64-byte frame sits in a 2 KiB buffer), so a port with a large
// BatchSize still gets large writes.
const maxReadBatch = 64

// Transmit queue bounds. A queue holds at most QueueLen frames, and its
// frames' buffers take at most QueueBytes bytes of memory (an empty queue
// takes any frame); a frame that does not fit is dropped and counted
// (queue_full). A frame of up to 1984 bytes sits in a 2 KiB pool buffer
// and counts 2048 bytes, a larger one in a 64 KiB buffer and counts 65600.
// So the defaults hold 4096 frames of up to 1984 bytes, which lets one
// 256 KiB stream read of 64-byte frames (3855 frames) queue whole behind a
// busy writer, or 127 larger frames; a stuck port pins at most 8 MiB of
// buffers, plus its ring of 40 bytes per frame slot (160 KiB). The trunk's
// queue is four times as large. These replace the first bound (512 frames) as
// the switch's default: with 512 frames, a fast sender to a fast receiver
// lost most of every burst of small frames.
const (
	DefaultQueueFrames = 4096
	DefaultQueueBytes  = DefaultQueueFrames * smallBufSize
)

// DefaultMaxQueuedBytes bounds the buffer bytes queued for all ports and
// the trunk together (Config.MaxQueuedBytes, limits.max_queued_bytes):
// 256 MiB, the per-port bound of 32 stuck ports. It is checked before each
// queue's own bound; a frame beyond it is dropped and counted
// (global_queue_full).
const DefaultMaxQueuedBytes = 256 << 20

// DefaultBUMRate is each port's storm control (FenceConfig.BUMRate):
// broadcast, multicast and unknown-unicast frames per second.
const DefaultBUMRate = 20000

// Config configures a [Switch]. The zero value of every field means its default.
type Config struct {
	AgingTime    time.Duration // 0: DefaultAgingTime
	MaxPortMACs  int           // 0: DefaultMaxPortMACs
	MaxFenceMACs int           // 0: DefaultMaxFenceMACs
	MaxHostMACs  int           // entries per fence pointing at one remote host; 0: DefaultMaxHostMACs
	QueueLen     int           // transmit queue bound in frames; 0: DefaultQueueFrames
	QueueBytes   int           // transmit queue bound in buffer bytes; 0: DefaultQueueBytes
	// MaxQueuedBytes bounds the buffer bytes of all transmit queues
	// together; 0: DefaultMaxQueuedBytes.
	MaxQueuedBytes int64
	// MaxFencePorts bounds the local ports of one fence; 0:
	// DefaultMaxFencePorts. Attach refuses more with a *PortLimitError.
	MaxFencePorts int
	Logger        *slog.Logger // nil: discard
	// Now is the clock used for learning and aging (nil: time.Now). Tests
	// inject a fake clock here. It is called once per batch, not per frame.
	Now func() time.Time
	// OnMACMove, when set, is called when a MAC moves to another port or
	// host, with the fence's table locked: it must return at once (cmd
	// hands it to the event bus, which never blocks).
	OnMACMove func(MACMove)
}

// MACMove is a MAC that moved from one place to another.
type MACMove struct {
	Fence    uint32
	MAC      MAC
	From, To Place
}

// Place is where a bridge table entry points: a local port (Port, its
// name) or a remote host (Host, its outer MAC).
type Place struct {
	Port string
	Host MAC
}

// FenceConfig describes one fence.
type FenceConfig struct {
	ID      uint32 // not 0; the configuration keeps it in the wire range 1 … 0xFFFFFE
	Name    string
	MaxMACs int // 0: Config.MaxFenceMACs
	// BUMRate is storm control: the broadcast, multicast and
	// unknown-unicast frames per second each local port of the fence may
	// send (a token bucket with a burst of a tenth of a second's worth);
	// the excess is dropped and counted (storm). 0: DefaultBUMRate;
	// negative: unlimited. Frames from the trunk are not limited here:
	// each remote host limits its own ports.
	BUMRate int
}

// PortConfig describes one port when it is attached.
type PortConfig struct {
	Name       string // shown in logs and the admin API, e.g. "unix:/run/x.sock#3"
	Fence      uint32
	PinMAC     MAC // non-zero: only frames with this source MAC are accepted
	MaxMACs    int // 0: Config.MaxPortMACs
	QueueLen   int // 0: Config.QueueLen
	QueueBytes int // 0: Config.QueueBytes
}

// Switch is the switch core. Its methods are safe for concurrent use.
type Switch struct {
	cfg   Config
	log   *slog.Logger
	clock func() time.Time

	pool *bufPool // the shared pool (buf.go)

	budget queueBudget // bytes queued in all transmit queues (queue.go)

	// fences is an immutable snapshot (copy-on-write under mu), loaded once
	// per batch by trunk readers.
	fences atomic.Pointer[map[uint32]*fence]
	// trunk is the attached trunk, nil when none; loaded once per batch.
	trunk atomic.Pointer[trunk]

	mu sync.Mutex // mu guards the following fields
	// +checklocks:mu
	ports map[uint64]*port
	// +checklocks:mu
	nextID uint64
	// +checklocks:mu
	closed bool
	// portsRefused counts, per fence ID, the ports Attach refused because
	// the fence was full (MaxFencePorts).
	// +checklocks:mu
	portsRefused map[uint32]uint64

	stop chan struct{}  // closed by Close; stops the janitor
	wg   sync.WaitGroup // every goroutine the switch started
}

// New returns a switch with no fences. It starts the aging janitor;
// [Switch.Close] stops it.
func New(cfg Config) (*Switch, error) {
	if cfg.AgingTime < 0 || cfg.MaxPortMACs < 0 || cfg.MaxFenceMACs < 0 || cfg.MaxHostMACs < 0 || cfg.QueueLen < 0 || cfg.QueueBytes < 0 || cfg.MaxQueuedBytes < 0 || cfg.MaxFencePorts < 0 {
		return nil, fmt.Errorf("vswitch: negative value in Config")
	}
	if cfg.AgingTime == 0 {
		cfg.AgingTime = DefaultAgingTime
	}
	if cfg.MaxPortMACs == 0 {
		cfg.MaxPortMACs = DefaultMaxPortMACs
	}
	if cfg.MaxFenceMACs == 0 {
		cfg.MaxFenceMACs = DefaultMaxFenceMACs
	}
	if cfg.MaxHostMACs == 0 {
		cfg.MaxHostMACs = DefaultMaxHostMACs
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultQueueFrames
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.MaxQueuedBytes == 0 {
		cfg.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if cfg.MaxFencePorts == 0 {
		cfg.MaxFencePorts = DefaultMaxFencePorts
	}
	s := &Switch{
		cfg:          cfg,
		log:          cfg.Logger,
		clock:        cfg.Now,
		pool:         &sharedPool,
		ports:        make(map[uint64]*port),
		portsRefused: make(map[uint32]uint64),
		stop:         make(chan struct{}),
	}
	s.budget.max = cfg.MaxQueuedBytes
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	empty := map[uint32]*fence{}
	s.fences.Store(&empty)
	s.wg.Add(1)
	go s.janitor()
	return s, nil
}

func (s *Switch) nowNanos() int64 { return s.clock().UnixNano() }

func (s *Switch) debug() bool { return s.log.Enabled(context.Background(), slog.LevelDebug) }

// AddFence adds a fence. IDs and names are unique; the ID is not 0.
func (s *Switch) AddFence(fc FenceConfig) error {
	if fc.ID == 0 {
		return fmt.Errorf("%w (name %q)", ErrBadFenceID, fc.Name)
	}
	if fc.MaxMACs < 0 {
		return fmt.Errorf("vswitch: fence %d: negative MaxMACs", fc.ID)
	}
	if fc.BUMRate > MaxBUMRate {
		return fmt.Errorf("vswitch: fence %d: BUMRate %d above %d", fc.ID, fc.BUMRate, MaxBUMRate)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	old := *s.fences.Load()
	for _, f := range old {
		if f.id == fc.ID || (fc.Name != "" && f.name == fc.Name) {
			return fmt.Errorf("%w: id %d name %q", ErrFenceExists, fc.ID, fc.Name)
		}
	}
	f := newFence(fc.ID, fc.Name, cmp.Or(fc.MaxMACs, s.cfg.MaxFenceMACs))
	f.maxHostMACs = s.cfg.MaxHostMACs
	switch {
	case fc.BUMRate == 0:
		f.bumRate = DefaultBUMRate
	case fc.BUMRate > 0:
		f.bumRate = int64(fc.BUMRate)
	}
	m := make(map[uint32]*fence, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[fc.ID] = f
	s.fences.Store(&m)
	return nil
}

func (s *Switch) fence(id uint32) *fence { return (*s.fences.Load())[id] }

// PortHandle is an attached port.
type PortHandle struct{ p *port }

// ID is the port's switch-unique number (never 0).
func (h *PortHandle) ID() uint64 { return h.p.id }

// Done is closed when the port has been detached (its Read or Write failed,
// or Close was called) and its goroutines have returned.
func (h *PortHandle) Done() <-chan struct{} { return h.p.done }

// Announced is closed when the port is announced: at once, or for a
// [Settler] when it settled as a client. It is never closed for a port
// that ended as a liveness probe.
func (h *PortHandle) Announced() <-chan struct{} { return h.p.ann.ch }

// Err is why the port was detached (nil when closed by Close or the switch).
// It is meaningful once Done is closed.
func (h *PortHandle) Err() error {
	select {
	case <-h.p.done:
		return h.p.err
	default:
		return nil
	}
}

// Close detaches the port, closes it and waits for its goroutines.
func (h *PortHandle) Close() error {
	h.p.fail(nil)
	<-h.p.done
	return nil
}

// Attach starts switching frames of p within pc.Fence. The switch reads p
// until Read fails, then detaches and closes it and flushes its MACs. From
// now on the switch owns p: it calls Read and Write from its own goroutines
// and Close when the port is detached.
func (s *Switch) Attach(p Port, pc PortConfig) (*PortHandle, error) {
	ps, err := s.attach(p, pc, true)
	if err != nil {
		return nil, err
	}
	if ps.settler != nil {
		go ps.announceWhenSettled()
	}
	go ps.writeLoop()
	go ps.readLoop()
	return &PortHandle{p: ps}, nil
}

// attach registers a port. With start, it counts the port's two goroutines
// in s.wg (under s.mu, so that Close waits for them) and the caller must
// start them; without, tests drive the port directly.
func (s *Switch) attach(p Port, pc PortConfig, start bool) (*port, error) {
	if p == nil {
		return nil, errors.New("vswitch: nil port")
	}
	batch := p.BatchSize()
	if batch < 1 {
		return nil, ErrBadBatchSize
	}
	batch = min(batch, maxBatch)
	if pc.MaxMACs < 0 || pc.QueueLen < 0 || pc.QueueBytes < 0 {
		return nil, fmt.Errorf("vswitch: port %q: negative limit", pc.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	f := s.fence(pc.Fence)
	if f == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownFence, pc.Fence)
	}
	// f.ports changes only under s.mu, so this count is exact.
	if len(*f.ports.Load()) >= s.cfg.MaxFencePorts {
		s.portsRefused[f.id]++
		if n := s.portsRefused[f.id]; n&(n-1) == 0 { // 1, 2, 4, 8 …: rate-limited
			s.log.Warn("port refused: fence full", "name", pc.Name, "fence", f.id, "max_ports", s.cfg.MaxFencePorts, "refused", n)
		}
		return nil, &PortLimitError{Fence: f.id, Max: s.cfg.MaxFencePorts}
	}
	s.nextID++
	ps := &port{
		s:          s,
		id:         s.nextID,
		name:       pc.Name,
		fence:      f,
		p:          p,
		pin:        pc.PinMAC,
		maxMACs:    int64(cmp.Or(pc.MaxMACs, s.cfg.MaxPortMACs)),
		batch:      batch,
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	ps.q.init(cmp.Or(pc.QueueLen, s.cfg.QueueLen), cmp.Or(pc.QueueBytes, s.cfg.QueueBytes), &ps.drops, &s.budget)
	ps.q.port = ps
	ps.q.tw, _ = p.(TryWriter)
	s.ports[ps.id] = ps
	f.addPort(ps)
	ps.ann.ch = make(chan struct{})
	if st, ok := p.(Settler); ok && start && st.Settled() != nil {
		ps.settler = st // announced when it settles (announceWhenSettled)
	}
	if start {
		s.wg.Add(2)
		if ps.settler != nil {
			s.wg.Add(1)
		}
	}
	if ps.settler == nil {
		ps.ann.mu.Lock()
		ps.ann.announceLocked(ps)
		ps.ann.mu.Unlock()
	}
	return ps, nil
}

// detachPort removes p from the switch and its fence and flushes its MACs.
func (s *Switch) detachPort(p *port) {
	s.mu.Lock()
	delete(s.ports, p.id)
	p.fence.removePort(p)
	s.mu.Unlock()
	p.fence.flushPort(p)
}

// AttachTrunk connects the uplink. At most one trunk. The switch owns t
// from now on and closes it when a call on it fails or the switch closes.
func (s *Switch) AttachTrunk(t Trunk) error {
	if t == nil {
		return errors.New("vswitch: nil trunk")
	}
	batch := t.BatchSize()
	if batch < 1 {
		return ErrBadBatchSize
	}
	tr, err := s.attachTrunk(t, min(batch, maxBatch), true)
	if err != nil {
		return err
	}
	go tr.writeLoop()
	go tr.readLoop()
	return nil
}

// attachTrunk registers the trunk; start is as for attach.
func (s *Switch) attachTrunk(t Trunk, batch int, start bool) (*trunk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.trunk.Load() != nil {
		return nil, ErrTrunkAttached
	}
	tr := &trunk{s: s, t: t, batch: batch, done: make(chan struct{}), writerDone: make(chan struct{})}
	tr.q.init(4*s.cfg.QueueLen, 4*s.cfg.QueueBytes, &tr.drops, &s.budget)
	s.trunk.Store(tr)
	if start {
		s.wg.Add(2)
	}
	s.log.Info("trunk attached")
	return tr, nil
}

// FlushHost forgets every MAC learned from the remote host with this outer
// MAC (a dead peer), in every fence, and returns how many were removed.
func (s *Switch) FlushHost(host MAC) int {
	n := 0
	for _, f := range *s.fences.Load() {
		n += f.flushHost(host)
	}
	if n > 0 {
		s.log.Debug("flushed host", "host", host, "macs", n)
	}
	return n
}

// NumPorts returns how many ports are attached (all fences).
func (s *Switch) NumPorts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ports)
}

// LocalFences returns the IDs of fences that have at least one local port,
// ascending (for hellos).
func (s *Switch) LocalFences() []uint32 {
	var ids []uint32
	for id, f := range *s.fences.Load() {
		if len(*f.ports.Load()) > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Close detaches and closes every port and the trunk and waits for every
// goroutine of the switch. It is safe to call more than once.
func (s *Switch) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	ports := make([]*port, 0, len(s.ports))
	for _, p := range s.ports {
		ports = append(ports, p)
	}
	s.mu.Unlock()
	for _, p := range ports {
		p.fail(nil)
	}
	if tr := s.trunk.Load(); tr != nil {
		tr.fail(nil)
	}
	close(s.stop)
	s.wg.Wait()
	return nil
}

// isClosedErr reports whether err is the error a port returns after Close.
func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }
