package admin

import (
	"context"
	"fmt"
	"net/http"
)

// The attachment lines: GET /v1/attach[?fence=F] lists, per fence, the
// addresses VMs attach to, as the running switch bound them (a tcp port 0
// as the port it got, paths expanded), each with ready-to-paste command
// lines for the clients that speak its framing: QEMU's -netdev, vfkit,
// krunkit, Lima, User Mode Linux, corral plug. `corral attach-lines`
// prints them.

// Attachments are the fences' addresses as the server sees them.
// cmd/corral implements it over its listeners and dialers; it is safe for
// concurrent use.
type Attachments interface {
	// Attachments lists every fence, in configuration order, with its
	// addresses and their lines.
	Attachments() []FenceAttach
}

// FenceAttach is one fence in GET /v1/attach.
type FenceAttach struct {
	Fence uint32       `json:"fence"`
	Name  string       `json:"name"`
	Addrs []AttachAddr `json:"addrs"`
}

// AttachAddr is one address of a fence.
type AttachAddr struct {
	// Addr is the address as bound or dialed: "unix:///run/user/1000/corral/lab.sock".
	Addr string `json:"addr"`
	// Dial is true when corral dials Addr: the client listens there.
	Dial bool `json:"dial,omitempty"`
	// Lines are the clients' command lines; empty when no known client
	// speaks the address's framing that way (stdio, a dialed datagram
	// socket).
	Lines []AttachLine `json:"lines"`
}

// AttachLine is one client's command line for an address.
type AttachLine struct {
	// Client names the client and form: "qemu", "qemu-reconnect",
	// "qemu-socket", "lima", "vfkit", "krunkit", "uml", "plug", "guest".
	Client string `json:"client"`
	// Line is what to paste: the arguments that attach the VM (for QEMU
	// its -netdev and -device), shell-quoted where needed.
	Line string `json:"line"`
	// Note says what to know before using it, "" when nothing.
	Note string `json:"note,omitempty"`
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	out := []FenceAttach{}
	if s.att != nil {
		out = s.att.Attachments()
	}
	if want := r.URL.Query().Get("fence"); want != "" {
		f, ok := findFence(s.sw.Status().Fences, want)
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no fence %q", want))
			return
		}
		one := []FenceAttach{{Fence: f.ID, Name: f.Name, Addrs: []AttachAddr{}}}
		for _, fa := range out {
			if fa.Fence == f.ID {
				one[0] = fa
			}
		}
		out = one
	}
	writeJSON(w, http.StatusOK, out)
}

// Attach calls GET /v1/attach; fence "" means every fence.
func (c *Client) Attach(ctx context.Context, fence string) ([]FenceAttach, error) {
	var v []FenceAttach
	return v, c.call(ctx, http.MethodGet, withFence("/v1/attach", fence), nil, &v)
}
