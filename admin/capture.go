package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corralnet/corral/pcap"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// GET /v1/capture (DESIGN.md section 7): a pcap stream (link type
// Ethernet, microsecond timestamps) of the frames of one capture point,
// flushed frame by frame, until the client goes away, ?count=N frames were
// written, ?seconds=S (a decimal number) passed, or the server shuts down.
// ?snaplen=N keeps at most N bytes per frame (default: whole frames).
// Errors before the stream starts are JSON [ErrorResponse]s.
//
// The capture points are the inner frames of one fence (?fence=ID or
// name) or of one port (?port=ID or name), and the uplink's outer frames
// (?uplink=1, corral capture --uplink): every datagram or raw frame
// received and sent, sealed as it is on the wire (no key and no
// plaintext of a sealed frame ever reaches a capture). Each is a
// [captureSource] chosen by [Server.selectCapture], with the same
// stream, bounds and trailers.

// Trailers of a GET /v1/capture answer: frames written and frames dropped
// because the stream was slow. Sent only when the server ends the capture
// (a bound was reached or corral shuts down).
const (
	TrailerFrames  = "Corral-Capture-Frames"
	TrailerDropped = "Corral-Capture-Dropped"
)

// CaptureRequest is the query of GET /v1/capture.
type CaptureRequest struct {
	Fence   string  // fence name or ID; exactly one of Fence, Port and Uplink
	Port    string  // port ID or name
	Uplink  bool    // the uplink's outer frames
	Count   uint64  // stop after Count frames; 0: no limit
	Seconds float64 // stop after Seconds; 0: no limit
	Snaplen int     // bytes kept per frame; 0: whole frames
}

// Query returns the request's query string.
func (c CaptureRequest) Query() string {
	v := url.Values{}
	if c.Fence != "" {
		v.Set("fence", c.Fence)
	}
	if c.Port != "" {
		v.Set("port", c.Port)
	}
	if c.Uplink {
		v.Set("uplink", "1")
	}
	if c.Count > 0 {
		v.Set("count", strconv.FormatUint(c.Count, 10))
	}
	if c.Seconds > 0 {
		v.Set("seconds", strconv.FormatFloat(c.Seconds, 'f', -1, 64))
	}
	if c.Snaplen > 0 {
		v.Set("snaplen", strconv.Itoa(c.Snaplen))
	}
	return v.Encode()
}

// captureSource is a running capture; *vswitch.Capture implements it.
type captureSource interface {
	// Read returns the next frame; it blocks until there is one, ctx is
	// done, or the capture ended.
	Read(ctx context.Context) (vswitch.CapturedFrame, error)
	// Dropped is how many frames were dropped because the reader was slow.
	Dropped() uint64
	Close() error
}

// captureOpener starts a capture with a snaplen; what names the capture
// point in the file name ("fence-NAME", "port-ID").
type captureOpener struct {
	open func(snaplen int) (captureSource, error)
	what string
}

var errNotFound = errors.New("not found")

// selectCapture resolves ?fence=, ?port= or ?uplink= (exactly one).
func (s *Server) selectCapture(fence, port, up string) (captureOpener, error) {
	switchCapture := func(sel vswitch.CaptureSelector) func(int) (captureSource, error) {
		return func(snaplen int) (captureSource, error) { return s.sw.Capture(sel, snaplen) }
	}
	n := 0
	for _, v := range []string{fence, port, up} {
		if v != "" {
			n++
		}
	}
	switch {
	case n != 1:
		return captureOpener{}, errors.New("give exactly one of fence=, port= and uplink=")
	case up != "":
		if on, err := strconv.ParseBool(up); err != nil || !on {
			return captureOpener{}, fmt.Errorf("uplink=%q: want uplink=1", up)
		}
		if s.up == nil {
			return captureOpener{}, fmt.Errorf("%w: no uplink configured (uplink.udp.listen or uplink.raw.interface)", errNotFound)
		}
		return captureOpener{what: "uplink", open: func(snaplen int) (captureSource, error) {
			c, err := s.up.Capture(snaplen)
			if err != nil {
				return nil, err
			}
			return uplinkCapture{c}, nil
		}}, nil
	case fence != "":
		st := s.sw.Status()
		f, ok := findFence(st.Fences, fence)
		if !ok {
			return captureOpener{}, fmt.Errorf("%w: no fence %q", errNotFound, fence)
		}
		return captureOpener{open: switchCapture(vswitch.CaptureSelector{Fence: f.ID}), what: "fence-" + f.Name}, nil
	default:
		id, err := strconv.ParseUint(strings.TrimSpace(port), 0, 64)
		for _, p := range s.sw.Status().Ports {
			if (err == nil && p.ID == id) || p.Name == port {
				return captureOpener{open: switchCapture(vswitch.CaptureSelector{Port: p.ID}), what: "port-" + strconv.FormatUint(p.ID, 10)}, nil
			}
		}
		return captureOpener{}, fmt.Errorf("%w: no port %q", errNotFound, port)
	}
}

func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	point, err := s.selectCapture(q.Get("fence"), q.Get("port"), q.Get("uplink"))
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	count, err := uintParam(q.Get("count"), "count")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	snaplen, err := uintParam(q.Get("snaplen"), "snaplen")
	if err != nil || snaplen > vswitch.MaxFrameSize {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("snaplen %q: want 0 … %d", q.Get("snaplen"), vswitch.MaxFrameSize))
		return
	}
	var limit time.Duration
	if s := q.Get("seconds"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 || f > 1e6 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("seconds %q: want a positive number", s))
			return
		}
		limit = time.Duration(f * float64(time.Second))
	}
	if snaplen == 0 {
		snaplen = vswitch.DefaultSnaplen
	}
	c, err := point.open(int(snaplen))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	defer c.Close()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if limit > 0 {
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.stream(ctx, w, c, point.what, uint32(snaplen), count)
}

// stream writes the frames of c as a pcap stream until ctx is done, c
// ends or count frames (0: no limit) were written, then the trailers.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, c captureSource, what string, snaplen uint32, count uint64) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "corral-"+what+".pcap"))
	w.Header().Set("Trailer", TrailerFrames+", "+TrailerDropped)
	w.WriteHeader(http.StatusOK)
	pw, err := pcap.NewWriter(w, snaplen, pcap.LinkTypeEthernet)
	if err != nil || rc.Flush() != nil {
		return
	}
	var n uint64
	for count == 0 || n < count {
		fr, err := c.Read(ctx)
		if err != nil {
			break
		}
		if pw.WritePacket(fr.Time, fr.Len, fr.Data) != nil || rc.Flush() != nil {
			return // the client went away
		}
		n++
	}
	w.Header().Set(TrailerFrames, strconv.FormatUint(n, 10))
	w.Header().Set(TrailerDropped, strconv.FormatUint(c.Dropped(), 10))
}

// uplinkCapture adapts a capture of the uplink to captureSource.
type uplinkCapture struct{ c *uplink.Capture }

func (u uplinkCapture) Read(ctx context.Context) (vswitch.CapturedFrame, error) {
	f, err := u.c.Read(ctx)
	return vswitch.CapturedFrame{Data: f.Data, Len: f.Len, Time: f.Time}, err
}
func (u uplinkCapture) Dropped() uint64 { return u.c.Dropped() }
func (u uplinkCapture) Close() error    { return u.c.Close() }

// countParam reads the query parameter name, 1 … max (def when absent).
func countParam(q url.Values, name string, def, max int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("%s %q: want 1 … %d", name, v, max)
	}
	return n, nil
}

func uintParam(s, name string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a non-negative integer", name, s)
	}
	return v, nil
}
