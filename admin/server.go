package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corralnet/corral/events"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// Switch is the switch as the server reads it; *vswitch.Switch implements
// it.
type Switch interface {
	// Status returns a snapshot of the fences, ports and trunk.
	Status() vswitch.Status
	// FDBPage returns up to limit entries of a fence's bridge table with
	// MACs above *after (all when nil), by MAC, whether more follow, and
	// ok false for an unknown fence.
	FDBPage(fence uint32, after *vswitch.MAC, limit int) (entries []vswitch.FDBEntry, more, ok bool)
	// Capture starts a capture of one fence or one port.
	Capture(sel vswitch.CaptureSelector, snaplen int) (*vswitch.Capture, error)
}

// Uplink is the uplink as the server reads it; *uplink.Uplink implements
// it.
type Uplink interface {
	Status() uplink.Status
	// Capture starts a capture of the outer frames (GET
	// /v1/capture?uplink=1).
	Capture(snaplen int) (*uplink.Capture, error)
}

// Gossip is the gossip control plane as the server reads it (GET
// /v1/peers); cmd adapts *gossip.Node.
type Gossip interface {
	Status() GossipStatus
}

// Config configures a [Server].
type Config struct {
	Switch Switch // required
	// Uplink is nil without an uplink: GET /v1/peers answers 404.
	Uplink Uplink
	// Gossip is nil without uplink.gossip.
	Gossip Gossip
	// Gateways are the fences' gateways; nil: no fence has one.
	Gateways Gateways
	Version  string       // shown in GET /v1/status
	Logger   *slog.Logger // nil: discard

	// Attachments are the fences' addresses and their command lines
	// (GET /v1/attach); nil: none.
	Attachments Attachments

	// Listeners returns the fences' listeners and their counters for GET
	// /v1/status; nil: none.
	Listeners func() []ListenerStatus
	// Events is the event bus GET /v1/events streams; nil: 404.
	Events *events.Bus
	// Reload applies the configuration file again (POST /v1/reload);
	// nil: 404.
	Reload func(context.Context) (ReloadResponse, error)
}

// Errors of [New] and [Listen].
var (
	ErrNoSwitch    = errors.New("admin: Config.Switch is nil")
	ErrSocketInUse = errors.New("admin: socket in use by a running process")
)

// Server serves the admin API. Its routes are registered by [New], all
// of them; see the package doc.
type Server struct {
	sw       Switch
	up       Uplink // nil: none
	gossip   Gossip // nil: none
	gws      Gateways
	att      Attachments // nil: none
	lns      func() []ListenerStatus
	version  string
	mux      *http.ServeMux
	srv      *http.Server
	started  time.Time
	stop     chan struct{} // closed by Shutdown: ends the captures
	stopOnce sync.Once
	bus      *events.Bus                                   // nil: none
	reload   func(context.Context) (ReloadResponse, error) // nil: none
}

// New returns a server with every route of the API registered.
func New(cfg Config) (*Server, error) {
	if cfg.Switch == nil {
		return nil, ErrNoSwitch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gateways == nil {
		cfg.Gateways = noGateways{}
	}
	s := &Server{
		sw: cfg.Switch, up: cfg.Uplink, gossip: cfg.Gossip, gws: cfg.Gateways, att: cfg.Attachments, lns: cfg.Listeners, version: cfg.Version,
		mux: http.NewServeMux(), started: time.Now(), stop: make(chan struct{}),
		bus: cfg.Events, reload: cfg.Reload,
	}
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/fences", s.fences)
	s.mux.HandleFunc("GET /v1/ports", s.ports)
	s.mux.HandleFunc("GET /v1/fdb", s.fdb)
	s.mux.HandleFunc("GET /v1/capture", s.capture)
	s.mux.HandleFunc("GET /v1/peers", s.peers)
	s.mux.HandleFunc("GET /v1/gateways", s.gateways)
	s.mux.HandleFunc("GET /v1/forwards", s.listForwards)
	s.mux.HandleFunc("POST /v1/forwards", s.addForward)
	s.mux.HandleFunc("DELETE /v1/forwards", s.removeForward)
	s.mux.HandleFunc("GET /v1/attach", s.attach)
	s.mux.HandleFunc("GET /v1/health", s.health)
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("POST /v1/reload", s.reloadConfig)
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler returns the server's handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves ln until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown ends the running captures, stops the server, closing its
// listeners (which removes the socket file), and waits for active
// requests until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	return s.srv.Shutdown(ctx)
}

// Listen creates the unix socket path with the given mode (0 means 0600),
// creating its directory with mode 0700 when missing. A stale socket file
// (nobody accepting) is replaced; a live one is ErrSocketInUse. Closing the
// listener removes the file.
func Listen(path string, mode fs.FileMode) (*net.UnixListener, error) {
	if mode == 0 {
		mode = 0o600
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&fs.ModeSocket != 0 {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrSocketInUse, path)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(path)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := statusOf(s.sw.Status())
	st.Version, st.Started = s.version, s.started
	if s.lns != nil {
		st.Listeners = s.lns()
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) fences(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, fencesOf(s.sw.Status().Fences))
}

func (s *Server) ports(w http.ResponseWriter, r *http.Request) {
	st := s.sw.Status()
	writeJSON(w, http.StatusOK, portsOf(st.Ports, st.Fences))
}

// Pages of GET /v1/fdb: limit entries by default, at most maxFDBLimit.
const (
	DefaultFDBLimit = 1000
	MaxFDBLimit     = 10000
)

// fdb answers one page of the bridge tables: of one fence (fence=F), else
// of every fence by ID; in each fence by MAC. The page holds at most
// limit entries; Next, when set, is the after= of the next page: a MAC
// with fence=, else "ID/MAC" (or "ID/": from the start of fence ID). The
// server never holds more than a page.
func (s *Server) fdb(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := countParam(q, "limit", DefaultFDBLimit, MaxFDBLimit)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	fences := s.sw.Status().Fences // by ID
	single := q.Get("fence") != ""
	if single {
		f, ok := findFence(fences, q.Get("fence"))
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no fence %q", q.Get("fence")))
			return
		}
		fences = []vswitch.FenceStatus{f}
	}
	var after *vswitch.MAC
	if v := q.Get("after"); v != "" {
		macStr := v
		if !single {
			id, rest, ok := strings.Cut(v, "/")
			n, err := strconv.ParseUint(id, 10, 32)
			if !ok || err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("after %q: want FENCEID/MAC without fence=", v))
				return
			}
			i := 0 // from fence n on (it may have gone)
			for i < len(fences) && fences[i].ID < uint32(n) {
				i++
			}
			if i < len(fences) && fences[i].ID != uint32(n) {
				rest = "" // fence n is gone: the next one from its start
			}
			fences, macStr = fences[i:], rest
		}
		if macStr != "" {
			m, err := vswitch.ParseMAC(macStr)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("after %q: %v", v, err))
				return
			}
			after = &m
		}
	}
	hosts := s.hostNames()
	page := FDBPage{Fences: []FenceFDB{}}
	left := limit
	for i, f := range fences {
		es, more, ok := s.sw.FDBPage(f.ID, after, left)
		after = nil
		if !ok {
			continue // removed meanwhile
		}
		page.Fences = append(page.Fences, FenceFDB{Fence: f.ID, Name: f.Name, Entries: fdbOf(es, hosts)})
		left -= len(es)
		if more && len(es) > 0 {
			page.Next = es[len(es)-1].MAC
			if !single {
				page.Next = fmt.Sprintf("%d/%s", f.ID, page.Next)
			}
			break
		}
		if left <= 0 {
			if i+1 < len(fences) {
				page.Next = fmt.Sprintf("%d/", fences[i+1].ID)
			}
			break
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// hostNames maps remote hosts' outer MACs to the names their hellos
// carry (nil without an uplink).
func (s *Server) hostNames() map[string]string {
	if s.up == nil {
		return nil
	}
	var m map[string]string
	for _, p := range s.up.Status().Peers {
		if p.Name != "" {
			if m == nil {
				m = make(map[string]string)
			}
			m[p.OuterMAC] = p.Name
		}
	}
	return m
}

// findFence finds the fence want names: by name, else by ID (decimal or
// 0x hex). Every route that takes a fence uses it.
func findFence(fences []vswitch.FenceStatus, want string) (vswitch.FenceStatus, bool) {
	want = strings.TrimSpace(want)
	for _, f := range fences {
		if f.Name == want {
			return f, true
		}
	}
	if id, err := strconv.ParseUint(want, 0, 32); err == nil {
		for _, f := range fences {
			if f.ID == uint32(id) {
				return f, true
			}
		}
	}
	return vswitch.FenceStatus{}, false
}

// apiError is an error with the HTTP status it is answered with.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// writeAPIError answers err: its status for an *apiError, else 500.
func writeAPIError(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.code, ae.msg)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

// EncodeJSON writes v as the API writes its bodies: indented JSON and a
// newline.
func EncodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSON writes v as the body of an answer with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = EncodeJSON(w, v) // the client went away; nothing to do
}

// writeError writes an ErrorResponse.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg})
}
