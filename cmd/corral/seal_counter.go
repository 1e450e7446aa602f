package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The send counter of a sealed uplink is a nonce: a (key, counter) pair
// must never be used twice, across restarts too (DESIGN.md 3.6). A
// counter that starts at the clock alone is only as good as the clock
// (a host whose clock steps back after a restart would reuse nonces). So,
// as WireGuard-style implementations do with persistent nonces, corral
// keeps a reserved high-water mark in the state directory, per
// installation and host ID: before a counter is used, a limit above it
// is written and synced; at start the counter begins above the stored
// limit (and above the clock: a lost state directory falls back to it),
// and the uplink asks for the next block (counterBlock counters) while
// ReserveMargin of the current one remain. A crash loses at most the
// rest of a block: 2^32 of 2^64 counters.

// counterBlock is how many counters one reservation covers.
const counterBlock = 1 << 32

// sealCounter is the on-disk high-water mark of one host's send counter.
type sealCounter struct {
	path string

	mu    sync.Mutex // mu serializes reservations
	limit uint64     // the limit on disk
}

// counterPath is the file of host hostID of installation inst in dir.
func counterPath(dir string, inst uint8, hostID uint16) string {
	return filepath.Join(dir, fmt.Sprintf("seal-counter-%02x-%04x", inst, hostID))
}

// openSealCounter reads the stored limit (none: 0), picks the first
// counter (above the stored limit and the clock, now), reserves a block
// above it on disk and returns the counter to start from and the limit.
func openSealCounter(dir string, inst uint8, hostID uint16, now time.Time) (c *sealCounter, start, limit uint64, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, 0, fmt.Errorf("seal counter: %w", err)
	}
	c = &sealCounter{path: counterPath(dir, inst, hostID)}
	stored, err := c.read()
	if err != nil {
		return nil, 0, 0, err
	}
	start = stored
	if ns := now.UnixNano(); ns > 0 {
		start = max(stored, uint64(ns))
	}
	if start > ^uint64(0)-2*counterBlock {
		return nil, 0, 0, fmt.Errorf("seal counter %s: %d is too close to 2^64; generate a new secret and remove the file", c.path, stored)
	}
	if limit, err = c.reserve(start); err != nil {
		return nil, 0, 0, err
	}
	return c, start, limit, nil
}

// read returns the stored limit, 0 when there is no file.
func (c *sealCounter) read() (uint64, error) {
	b, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("seal counter: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("seal counter %s: not a number; if the state directory was damaged, remove the file (the clock then sets the counter)", c.path)
	}
	return v, nil
}

// reserve writes a limit of counter + counterBlock (never lower than the
// one on disk) and syncs it before returning it. It is the uplink's
// SealConfig.Reserve.
func (c *sealCounter) reserve(counter uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := max(counter, c.limit) + counterBlock
	if limit < counter { // wrapped
		return 0, fmt.Errorf("seal counter %s: exhausted; generate a new secret", c.path)
	}
	tmp := c.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("seal counter: %w", err)
	}
	_, werr := fmt.Fprintf(f, "%d\n", limit)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("seal counter %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return 0, fmt.Errorf("seal counter: %w", err)
	}
	if d, err := os.Open(filepath.Dir(c.path)); err == nil {
		_ = d.Sync() // the rename itself
		d.Close()
	}
	c.limit = limit
	return limit, nil
}
