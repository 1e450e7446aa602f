package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/corralnet/corral/events"
)

// GET /v1/events[?kind=K,K…][&buffer=N]: the event stream, one JSON
// object (events.Event) per line, from the moment of the request until
// the client goes away or the server stops. A client too slow to read
// loses events rather than slowing corral: it gets
// {"kind":"events_lost","detail":"N"} once it catches up.

// EventsLost is the kind of the line that reports events a slow client
// lost.
const EventsLost events.Kind = "events_lost"

// maxEventBuffer bounds the buffer a client may ask for.
const maxEventBuffer = 1 << 16

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.bus == nil {
		writeError(w, http.StatusNotFound, "no event bus")
		return
	}
	q := r.URL.Query()
	buf, err := countParam(q, "buffer", 0, maxEventBuffer)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var kinds map[events.Kind]bool
	if v := q.Get("kind"); v != "" {
		kinds = map[events.Kind]bool{}
		for _, k := range strings.Split(v, ",") {
			kinds[events.Kind(strings.TrimSpace(k))] = true
		}
	}
	sub := s.bus.Subscribe(buf)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	var reported uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case e := <-sub.C:
			if d := sub.Dropped(); d > reported {
				lost := events.Event{Time: e.Time, Kind: EventsLost, Detail: strconv.FormatUint(d-reported, 10)}
				reported = d
				if enc.Encode(lost) != nil {
					return
				}
			}
			if kinds != nil && !kinds[e.Kind] {
				continue
			}
			if enc.Encode(e) != nil {
				return
			}
			if fl != nil && len(sub.C) == 0 {
				fl.Flush()
			}
		}
	}
}

// Events calls GET /v1/events and calls fn with every event until fn
// returns an error (returned, io.EOF as nil), ctx is done or the server
// ends the stream. kinds, when not empty, selects the kinds.
func (c *Client) Events(ctx context.Context, kinds []string, fn func(events.Event) error) error {
	path := "/v1/events"
	if len(kinds) > 0 {
		path += "?kind=" + strings.Join(kinds, ",")
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://corral"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.stream.Do(hreq)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return answerError(path, resp, body)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("admin %s: %w", path, err)
		}
		if err := fn(e); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// EncodeJSONLine writes v as one line of JSON, as GET /v1/events does.
func EncodeJSONLine(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }
