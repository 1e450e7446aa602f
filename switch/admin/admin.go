package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// Switch is what the server reads; *vswitch.Switch implements it.
type Switch interface {
	Status() vswitch.Status
	FDB(fence uint32) []vswitch.FDBEntry
}

// Config configures a [Server].
type Config struct {
	Switch  Switch       // required
	Version string       // shown in /v1/status
	Logger  *slog.Logger // nil: discard
}

// Errors.
var (
	ErrNoSwitch    = errors.New("admin: Config.Switch is nil")
	ErrSocketInUse = errors.New("admin: socket in use by a running process")
)

// StatusResponse is the body of GET /v1/status.
type StatusResponse struct {
	vswitch.Status
	Version string    `json:"version,omitempty"`
	Started time.Time `json:"started"`
}

// FenceFDB is one fence's bridge table in GET /v1/fdb.
type FenceFDB struct {
	Fence   uint32             `json:"fence"`
	Name    string             `json:"name"`
	Entries []vswitch.FDBEntry `json:"entries"`
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Server serves the admin API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	srv     *http.Server
	started time.Time
}

// New returns a server with the /v1 routes registered.
func New(cfg Config) (*Server, error) {
	if cfg.Switch == nil {
		return nil, ErrNoSwitch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), started: time.Now()}
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/fences", s.fences)
	s.mux.HandleFunc("GET /v1/ports", s.ports)
	s.mux.HandleFunc("GET /v1/fdb", s.fdb)
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handle registers an extra route (e.g. "GET /v1/peers"). Call it before
// Serve.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

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

// Shutdown stops the server, closing its listeners (which removes the
// socket file) and waiting for active requests until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

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
	st := s.cfg.Switch.Status()
	if st.Fences == nil {
		st.Fences = []vswitch.FenceStatus{}
	}
	if st.Ports == nil {
		st.Ports = []vswitch.PortStatus{}
	}
	WriteJSON(w, http.StatusOK, StatusResponse{
		Status:  st,
		Version: s.cfg.Version,
		Started: s.started,
	})
}

func (s *Server) fences(w http.ResponseWriter, r *http.Request) {
	f := s.cfg.Switch.Status().Fences
	if f == nil {
		f = []vswitch.FenceStatus{}
	}
	WriteJSON(w, http.StatusOK, f)
}

func (s *Server) ports(w http.ResponseWriter, r *http.Request) {
	p := s.cfg.Switch.Status().Ports
	if p == nil {
		p = []vswitch.PortStatus{}
	}
	WriteJSON(w, http.StatusOK, p)
}

func (s *Server) fdb(w http.ResponseWriter, r *http.Request) {
	fences := s.cfg.Switch.Status().Fences
	want := r.URL.Query().Get("fence")
	out := []FenceFDB{}
	for _, f := range fences {
		if want != "" && !fenceMatches(f, want) {
			continue
		}
		e := s.cfg.Switch.FDB(f.ID)
		if e == nil {
			e = []vswitch.FDBEntry{}
		}
		out = append(out, FenceFDB{Fence: f.ID, Name: f.Name, Entries: e})
	}
	if want != "" && len(out) == 0 {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("no fence %q", want))
		return
	}
	WriteJSON(w, http.StatusOK, out)
}

// fenceMatches reports whether want names f by name, decimal or 0x ID.
func fenceMatches(f vswitch.FenceStatus, want string) bool {
	if f.Name == want {
		return true
	}
	id, err := strconv.ParseUint(strings.TrimSpace(want), 0, 32)
	return err == nil && uint32(id) == f.ID
}

// WriteJSON writes v as an indented JSON body with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

// WriteError writes an ErrorResponse.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, ErrorResponse{Error: msg})
}
