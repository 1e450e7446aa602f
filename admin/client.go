package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Client calls the admin API of a running corral over its unix socket:
// one method per route, decoding into the API's types. Its methods are
// safe for concurrent use.
type Client struct {
	path   string       // the socket
	hc     *http.Client // requests, with a timeout
	stream *http.Client // captures, which last
}

// clientTimeout bounds a request that is not a capture.
const clientTimeout = 30 * time.Second

// maxAnswer bounds the body of an answer the client reads.
const maxAnswer = 64 << 20

// NewClient returns a client of the admin socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{
		path:   path,
		hc:     &http.Client{Timeout: clientTimeout, Transport: tr},
		stream: &http.Client{Transport: tr},
	}
}

// Addr is the socket's address, "unix://PATH".
func (c *Client) Addr() string { return "unix://" + c.path }

// Status calls GET /v1/status.
func (c *Client) Status(ctx context.Context) (StatusResponse, error) {
	var v StatusResponse
	return v, c.call(ctx, http.MethodGet, "/v1/status", nil, &v)
}

// Fences calls GET /v1/fences.
func (c *Client) Fences(ctx context.Context) ([]FenceStatus, error) {
	var v []FenceStatus
	return v, c.call(ctx, http.MethodGet, "/v1/fences", nil, &v)
}

// Ports calls GET /v1/ports.
func (c *Client) Ports(ctx context.Context) ([]PortStatus, error) {
	var v []PortStatus
	return v, c.call(ctx, http.MethodGet, "/v1/ports", nil, &v)
}

// FDBPage calls GET /v1/fdb for one page: of fence (a name or ID; ""
// every fence), at most limit entries (0: the server's default), after
// the cursor after ("": from the start; else the Next of the previous
// page).
func (c *Client) FDBPage(ctx context.Context, fence string, limit int, after string) (FDBPage, error) {
	q := url.Values{}
	if fence != "" {
		q.Set("fence", fence)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if after != "" {
		q.Set("after", after)
	}
	path := "/v1/fdb"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var v FDBPage
	return v, c.call(ctx, http.MethodGet, path, nil, &v)
}

// FDBPages calls FDBPage from the start and then with each page's Next,
// passing every page to fn, until the last page, an error, or fn's error.
func (c *Client) FDBPages(ctx context.Context, fence string, limit int, fn func(FDBPage) error) error {
	after := ""
	for {
		p, err := c.FDBPage(ctx, fence, limit, after)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		if p.Next == "" {
			return nil
		}
		if p.Next == after {
			return fmt.Errorf("admin /v1/fdb: the cursor %q does not advance", after)
		}
		after = p.Next
	}
}

// FDB reads every page of GET /v1/fdb (of fence, or of every fence when
// fence is "") and returns the bridge tables, one element per fence. It
// holds the whole listing: for big tables, use FDBPages.
func (c *Client) FDB(ctx context.Context, fence string) ([]FenceFDB, error) {
	out := []FenceFDB{}
	err := c.FDBPages(ctx, fence, MaxFDBLimit, func(p FDBPage) error {
		out = MergeFDB(out, p.Fences)
		return nil
	})
	return out, err
}

// MergeFDB appends the fences of a page to out, joining a fence that
// continues from the previous page.
func MergeFDB(out, page []FenceFDB) []FenceFDB {
	for _, f := range page {
		if n := len(out); n > 0 && out[n-1].Fence == f.Fence {
			out[n-1].Entries = append(out[n-1].Entries, f.Entries...)
			continue
		}
		out = append(out, f)
	}
	return out
}

// Peers calls GET /v1/peers.
func (c *Client) Peers(ctx context.Context) (PeersResponse, error) {
	var v PeersResponse
	err := c.call(ctx, http.MethodGet, "/v1/peers", nil, &v)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return v, fmt.Errorf("%w: %s", ErrNoUplink, se.Msg)
	}
	return v, err
}

// Gateways calls GET /v1/gateways: the gateway of fence, of every fence
// when fence is "".
func (c *Client) Gateways(ctx context.Context, fence string) ([]GatewayStatus, error) {
	var v []GatewayStatus
	return v, c.call(ctx, http.MethodGet, withFence("/v1/gateways", fence), nil, &v)
}

// Forwards calls GET /v1/forwards: the forwards of fence, of every fence
// with a gateway when fence is "".
func (c *Client) Forwards(ctx context.Context, fence string) ([]FenceForwards, error) {
	var v []FenceForwards
	return v, c.call(ctx, http.MethodGet, withFence("/v1/forwards", fence), nil, &v)
}

// AddForward calls POST /v1/forwards and returns the forward as running.
func (c *Client) AddForward(ctx context.Context, f Forward) (Forward, error) {
	var v Forward
	return v, c.call(ctx, http.MethodPost, "/v1/forwards", f, &v)
}

// RemoveForward calls DELETE /v1/forwards (f.Target is not needed).
func (c *Client) RemoveForward(ctx context.Context, f Forward) (Forward, error) {
	var v Forward
	return v, c.call(ctx, http.MethodDelete, "/v1/forwards", f, &v)
}

// CaptureStream is the answer of GET /v1/capture: a pcap stream. Read it
// to its end, then Summary tells how it ended. Close it when done.
type CaptureStream struct {
	resp *http.Response
}

// Read reads the pcap stream.
func (s *CaptureStream) Read(p []byte) (int, error) { return s.resp.Body.Read(p) }

// Close ends the stream.
func (s *CaptureStream) Close() error { return s.resp.Body.Close() }

// Summary returns the frames written and dropped, from the trailers; ok
// is false when the server did not end the stream (it was cut, or is
// still being read).
func (s *CaptureStream) Summary() (frames, dropped uint64, ok bool) {
	fr, err1 := strconv.ParseUint(s.resp.Trailer.Get(TrailerFrames), 10, 64)
	dr, err2 := strconv.ParseUint(s.resp.Trailer.Get(TrailerDropped), 10, 64)
	return fr, dr, err1 == nil && err2 == nil
}

// Capture calls GET /v1/capture. The stream lasts until a bound of req,
// until the server stops, or until ctx is done; no timeout applies.
func (c *Client) Capture(ctx context.Context, req CaptureRequest) (*CaptureStream, error) {
	path := "/v1/capture?" + req.Query()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://corral"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.stream.Do(hreq)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, answerError(path, resp, body)
	}
	return &CaptureStream{resp: resp}, nil
}

func withFence(path, fence string) string {
	if fence == "" {
		return path
	}
	return path + "?fence=" + url.QueryEscape(fence)
}

// call sends a request with body (nil: none) as JSON and decodes a 2xx
// answer into out; other answers are errors carrying the server's message.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://corral"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("admin %s: %w", c.Addr(), err)
	}
	if resp.StatusCode/100 != 2 {
		return answerError(path, resp, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin %s: %w", path, err)
	}
	return nil
}

// transportError explains a failed request: no socket means no corral.
func (c *Client) transportError(err error) error {
	if _, serr := os.Stat(c.path); serr != nil {
		return fmt.Errorf("no corral running at %s (%v)", c.Addr(), serr)
	}
	return fmt.Errorf("admin %s: %w", c.Addr(), err)
}

// answerError is the error of an answer that is not a success.
func answerError(path string, resp *http.Response, body []byte) error {
	var e ErrorResponse
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return &StatusError{Code: resp.StatusCode, Msg: e.Error, text: "admin: " + e.Error}
	}
	msg := fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
	return &StatusError{Code: resp.StatusCode, Msg: msg, text: fmt.Sprintf("admin %s: %s", path, msg)}
}

// StatusError is an error answer of the API: its HTTP status and message
// (the ErrorResponse's, else the status line and body).
type StatusError struct {
	Code int
	Msg  string
	text string
}

func (e *StatusError) Error() string { return e.text }
