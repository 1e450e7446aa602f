package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/corralnet/corral/attach"
)

// State per instance (issue 11 item 3). Everything corral keeps between
// runs — today the gateways' DHCP leases, leases-<fence ID>.json — lives
// in the instance's own directory under state_dir, never shared with
// another corral:
//
//	<state_dir>/<escaped admin socket path>-<8 hex digits>/   with an admin socket
//	<state_dir>/host-<host.name>/                             without one
//
// The admin socket is what already tells two running corrals apart (two
// processes cannot serve one socket), so two unchanged copies of a lab in
// two processes, each with its own $XDG_RUNTIME_DIR, keep apart state and
// hand out the same addresses, and a new instance starts from an empty
// lease table (10.0.2.15 first). The directory holds a lock file, flocked
// for the life of the process: a second corral of the same instance stops
// at start, before it touches any socket, with an error naming the first.

// stateLockFile is the name of the lock file in an instance directory.
const stateLockFile = "lock"

// instanceState names the state directory of an instance under root: key
// says what identifies the instance (for messages), dir is the directory.
// admin is the admin socket (Scheme "" when there is none); hostName is
// host.name, or the machine's hostname.
func instanceState(root string, admin attach.Addr, hostName string) (key, dir string) {
	if admin.Scheme != "" {
		p := filepath.Clean(admin.Target)
		sum := sha256.Sum256([]byte(p))
		name := escapeStateName(strings.TrimPrefix(p, "/"))
		const maxReadable = 64 // the path's tail, for people; the hash keeps it unique
		if len(name) > maxReadable {
			name = strings.TrimLeft(name[len(name)-maxReadable:], "-")
		}
		return "admin " + admin.String(), filepath.Join(root, name+"-"+hex.EncodeToString(sum[:4]))
	}
	return "host.name " + hostName, filepath.Join(root, "host-"+escapeStateName(hostName))
}

// escapeStateName makes a file name of s: '/' becomes '-', bytes other
// than letters, digits, '.', '_' and '-' become '_', and a leading '.'
// becomes '_' (no hidden or dot-dot names).
func escapeStateName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c == '/':
			b[i] = '-'
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[0] == '.' {
		b[0] = '_'
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// configHostName is host.name, else the machine's hostname (as the uplink
// takes it), else "localhost".
func configHostName(raw *fileConfig) string {
	if raw.Host.Name != "" {
		return raw.Host.Name
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// StateInUseError is returned when another process holds the instance's
// state directory. corral exits with status 1.
type StateInUseError struct {
	Dir   string // the instance's state directory
	Owner string // what the holder wrote in the lock file: "pid 123, admin unix:///…"
	Key   string // what identifies this instance
}

func (e *StateInUseError) Error() string {
	owner := e.Owner
	if owner == "" {
		owner = "a process that wrote nothing yet"
	}
	return fmt.Sprintf("state directory %s is in use by another corral (%s); this corral's state is keyed by its %s: stop the other one, or give this one another admin.listen (or host.name without an admin socket) or state_dir",
		e.Dir, owner, e.Key)
}

// errStateLockUnsupported is returned where the OS has no flock.
var errStateLockUnsupported = errors.New("state: no file locking on this OS")

// lockInstance creates the instance's state directory (mode 0700) and
// takes its lock for the life of the process; release drops it. Without
// a state directory (no state_dir and no home) there is nothing to lock.
func lockInstance(cfg *Config, log *slog.Logger) (release func(), err error) {
	if cfg.InstanceDir == "" {
		log.Warn("no state directory (set state_dir or XDG_STATE_HOME): leases are not kept across restarts")
		return func() {}, nil
	}
	if err := os.MkdirAll(cfg.InstanceDir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w (state_dir, or $XDG_STATE_HOME, must name a directory corral can write)", err)
	}
	path := filepath.Join(cfg.InstanceDir, stateLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state: lock %s: %w", path, err)
	}
	if !held {
		owner, _ := os.ReadFile(path)
		f.Close()
		var lines []string
		for l := range strings.SplitSeq(string(owner), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		return nil, &StateInUseError{Dir: cfg.InstanceDir, Owner: strings.Join(lines, ", "), Key: cfg.InstanceKey}
	}
	// Who holds it, for the error of the next one. The lock is the flock,
	// not this text: a crashed holder's lock is gone with its process.
	info := "pid " + strconv.Itoa(os.Getpid()) + "\n" + cfg.InstanceKey + "\n"
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
	}
	log.Info("instance state", "dir", cfg.InstanceDir, "key", cfg.InstanceKey)
	return func() { f.Close() }, nil
}
