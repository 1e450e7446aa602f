package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	vswitch "github.com/corralnet/corral/switch"
)

// Capturer is what the capture route needs; *vswitch.Switch implements it.
type Capturer interface {
	Status() vswitch.Status
	Capture(sel vswitch.CaptureSelector, snaplen int) (*vswitch.Capture, error)
}

// Trailers of a GET /v1/capture response: frames written and frames the
// switch dropped because the stream was slow. Sent only when the server
// ends the capture (a bound was reached or corral shuts down).
const (
	TrailerFrames  = "Corral-Capture-Frames"
	TrailerDropped = "Corral-Capture-Dropped"
)

// CaptureHandler serves GET /v1/capture: a pcap stream (link type
// Ethernet, microsecond timestamps) of the inner frames of one fence
// (?fence=ID or name) or one port (?port=ID or name), flushed frame by
// frame, until the client goes away, ?count=N frames were written,
// ?seconds=S (a decimal number) passed, or stop is closed (corral shuts
// down). ?snaplen=N keeps at most N bytes per frame (default: whole
// frames). Errors before the stream starts are JSON [ErrorResponse]s.
func CaptureHandler(sw Capturer, stop <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		sel, what, err := captureSelector(sw.Status(), q.Get("fence"), q.Get("port"))
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, errNotFound) {
				code = http.StatusNotFound
			}
			WriteError(w, code, err.Error())
			return
		}
		count, err := uintParam(q.Get("count"), "count")
		if err != nil {
			WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		snaplen, err := uintParam(q.Get("snaplen"), "snaplen")
		if err != nil || snaplen > vswitch.MaxFrameSize {
			WriteError(w, http.StatusBadRequest, fmt.Sprintf("snaplen %q: want 0 … %d", q.Get("snaplen"), vswitch.MaxFrameSize))
			return
		}
		var limit time.Duration
		if s := q.Get("seconds"); s != "" {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f <= 0 || f > 1e6 {
				WriteError(w, http.StatusBadRequest, fmt.Sprintf("seconds %q: want a positive number", s))
				return
			}
			limit = time.Duration(f * float64(time.Second))
		}
		if snaplen == 0 {
			snaplen = vswitch.DefaultSnaplen
		}
		c, err := sw.Capture(sel, int(snaplen))
		if err != nil {
			WriteError(w, http.StatusNotFound, err.Error())
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
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()

		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "corral-"+what+".pcap"))
		w.Header().Set("Trailer", TrailerFrames+", "+TrailerDropped)
		w.WriteHeader(http.StatusOK)
		pw := pcapgo.NewWriter(w)
		if err := pw.WriteFileHeader(uint32(snaplen), layers.LinkTypeEthernet); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		var n uint64
		for count == 0 || n < count {
			fr, err := c.Read(ctx)
			if err != nil {
				break
			}
			ci := gopacket.CaptureInfo{Timestamp: fr.Time, CaptureLength: len(fr.Data), Length: fr.Len}
			if pw.WritePacket(ci, fr.Data) != nil || rc.Flush() != nil {
				return // the client went away
			}
			n++
		}
		w.Header().Set(TrailerFrames, strconv.FormatUint(n, 10))
		w.Header().Set(TrailerDropped, strconv.FormatUint(c.Dropped(), 10))
	})
}

var errNotFound = errors.New("not found")

// captureSelector resolves ?fence= or ?port= (exactly one) against st;
// what names the selection for the file name.
func captureSelector(st vswitch.Status, fence, port string) (vswitch.CaptureSelector, string, error) {
	switch {
	case (fence == "") == (port == ""):
		return vswitch.CaptureSelector{}, "", errors.New("give exactly one of fence= and port=")
	case fence != "":
		for _, f := range st.Fences {
			if fenceMatches(f, fence) {
				return vswitch.CaptureSelector{Fence: f.ID}, "fence-" + f.Name, nil
			}
		}
		return vswitch.CaptureSelector{}, "", fmt.Errorf("%w: no fence %q", errNotFound, fence)
	default:
		id, err := strconv.ParseUint(strings.TrimSpace(port), 0, 64)
		for _, p := range st.Ports {
			if (err == nil && p.ID == id) || p.Name == port {
				return vswitch.CaptureSelector{Port: p.ID}, "port-" + strconv.FormatUint(p.ID, 10), nil
			}
		}
		return vswitch.CaptureSelector{}, "", fmt.Errorf("%w: no port %q", errNotFound, port)
	}
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
