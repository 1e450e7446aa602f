package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/stack"
	"github.com/corralnet/corral/switch/admin"
)

// Port forwards at run time (issue 4 item 6, DESIGN.md section 7):
//
//	GET    /v1/forwards[?fence=F]                 → []fenceForwards
//	POST   /v1/forwards {fence, proto, listen, target} → 201 forwardJSON
//	DELETE /v1/forwards {fence, proto, listen} or ?fence=&proto=&listen=
//
// and `corral forward add|ls|rm`. Forwards added at run time live until
// they are removed or corral stops; the configuration is not rewritten.

// forwardJSON is one port forward in the admin API.
type forwardJSON struct {
	Fence  string `json:"fence,omitempty"` // requests: fence name or ID
	Proto  string `json:"proto"`
	Listen string `json:"listen"`
	Target string `json:"target,omitempty"`
}

// fenceForwards is one fence's forwards in GET /v1/forwards.
type fenceForwards struct {
	Fence    uint32        `json:"fence"`
	Name     string        `json:"name"`
	Forwards []forwardJSON `json:"forwards"`
}

func init() {
	runHooks = append(runHooks, func(rt *instance) error {
		if rt.admin != nil {
			gatewayRoutes(rt.admin, rt.cfg.Fences, rt.gateways)
		}
		return nil
	})
	registerCommand(func(c *cli) *cobra.Command { return c.newForwardCmd() })
}

// gatewayRoutes registers /v1/forwards and /v1/gateways on srv. gws holds
// the gateways (fences without one, or whose gateway was yielded to a peer,
// have none).
func gatewayRoutes(srv *admin.Server, fences []Fence, gws *gatewaySet) {
	gr := &gatewayAPI{fences: fences, gws: gws}
	srv.Handle("GET /v1/forwards", http.HandlerFunc(gr.listForwards))
	srv.Handle("POST /v1/forwards", http.HandlerFunc(gr.addForward))
	srv.Handle("DELETE /v1/forwards", http.HandlerFunc(gr.removeForward))
	srv.Handle("GET /v1/gateways", http.HandlerFunc(gr.gateways))
}

type gatewayAPI struct {
	fences []Fence
	gws    *gatewaySet
}

// apiError is an error with the HTTP status it is answered with.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func writeAPIError(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		admin.WriteError(w, ae.code, ae.msg)
		return
	}
	admin.WriteError(w, http.StatusInternalServerError, err.Error())
}

// fence finds a fence by name or ID (decimal or 0x).
func (gr *gatewayAPI) fence(want string) (Fence, error) {
	want = strings.TrimSpace(want)
	if want == "" {
		return Fence{}, &apiError{http.StatusBadRequest, "missing fence"}
	}
	for _, f := range gr.fences {
		if f.Name == want {
			return f, nil
		}
	}
	if id, err := strconv.ParseUint(want, 0, 32); err == nil {
		for _, f := range gr.fences {
			if f.ID == uint32(id) {
				return f, nil
			}
		}
	}
	return Fence{}, &apiError{http.StatusNotFound, fmt.Sprintf("no fence %q", want)}
}

// gateway finds the gateway of the fence named want.
func (gr *gatewayAPI) gateway(want string) (Fence, *stack.Gateway, error) {
	f, err := gr.fence(want)
	if err != nil {
		return f, nil, err
	}
	g := gr.gws.get(f.ID)
	if g == nil && f.Gateway != nil {
		return f, nil, &apiError{http.StatusConflict, fmt.Sprintf("fence %q: its gateway is not served here: yielded to peer %s, which serves it too (see corral peers)",
			f.Name, orDash(gr.gws.yieldedTo(f.ID)))}
	}
	if g == nil {
		return f, nil, &apiError{http.StatusConflict,
			fmt.Sprintf("fence %q has no gateway (fences[].gateway.enabled is false)", f.Name)}
	}
	return f, g, nil
}

func toForwardJSON(f stack.Forward) forwardJSON {
	return forwardJSON{Proto: f.Proto, Listen: f.Listen.String(), Target: f.Target.String()}
}

// parseForward checks a request's forward; target is required when
// withTarget.
func parseForward(fj forwardJSON, withTarget bool) (stack.Forward, error) {
	bad := func(format string, args ...any) error {
		return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
	}
	f := stack.Forward{Proto: strings.ToLower(strings.TrimSpace(fj.Proto))}
	if f.Proto != "tcp" && f.Proto != "udp" {
		return f, bad("proto %q: want tcp or udp", fj.Proto)
	}
	var err error
	if f.Listen, err = netip.ParseAddrPort(strings.TrimSpace(fj.Listen)); err != nil {
		return f, bad("listen %q: want IP:port", fj.Listen)
	}
	if !withTarget {
		return f, nil
	}
	if f.Target, err = netip.ParseAddrPort(strings.TrimSpace(fj.Target)); err != nil || f.Target.Port() == 0 || f.Target.Addr().Zone() != "" {
		return f, bad("target %q: want IP:port", fj.Target)
	}
	return f, nil
}

func (gr *gatewayAPI) listForwards(w http.ResponseWriter, r *http.Request) {
	out := []fenceForwards{}
	if want := r.URL.Query().Get("fence"); want != "" {
		f, g, err := gr.gateway(want)
		if err != nil {
			writeAPIError(w, err)
			return
		}
		out = append(out, fenceForwardsOf(f, g))
	} else {
		for _, f := range gr.fences {
			if g := gr.gws.get(f.ID); g != nil {
				out = append(out, fenceForwardsOf(f, g))
			}
		}
	}
	admin.WriteJSON(w, http.StatusOK, out)
}

func fenceForwardsOf(f Fence, g *stack.Gateway) fenceForwards {
	ff := fenceForwards{Fence: f.ID, Name: f.Name, Forwards: []forwardJSON{}}
	for _, fw := range g.Forwards() {
		ff.Forwards = append(ff.Forwards, toForwardJSON(fw))
	}
	return ff
}

// readForward decodes a forward from the request body, or from the query
// when the body is empty.
func readForward(r *http.Request) (forwardJSON, error) {
	var fj forwardJSON
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return fj, &apiError{http.StatusBadRequest, err.Error()}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		q := r.URL.Query()
		return forwardJSON{Fence: q.Get("fence"), Proto: q.Get("proto"), Listen: q.Get("listen"), Target: q.Get("target")}, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fj); err != nil {
		return fj, &apiError{http.StatusBadRequest, "body: " + err.Error()}
	}
	return fj, nil
}

// forwardRequest reads a POST or DELETE /v1/forwards request: its body,
// the fence's gateway, and the forward (with a target when withTarget).
func (gr *gatewayAPI) forwardRequest(r *http.Request, withTarget bool) (Fence, *stack.Gateway, stack.Forward, error) {
	fj, err := readForward(r)
	if err != nil {
		return Fence{}, nil, stack.Forward{}, err
	}
	f, g, err := gr.gateway(fj.Fence)
	if err != nil {
		return Fence{}, nil, stack.Forward{}, err
	}
	fw, err := parseForward(fj, withTarget)
	return f, g, fw, err
}

func (gr *gatewayAPI) addForward(w http.ResponseWriter, r *http.Request) {
	f, g, fw, err := gr.forwardRequest(r, true)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if err := g.AddForward(fw); err != nil {
		writeAPIError(w, forwardError(fw, err))
		return
	}
	// The forward as running (a listen port 0 got a free port).
	added := toForwardJSON(fw)
	if fw.Listen.Port() == 0 {
		for _, x := range g.Forwards() {
			if x.Proto == fw.Proto && x.Listen.Addr() == fw.Listen.Addr() && x.Target == fw.Target {
				added = toForwardJSON(x)
			}
		}
	}
	added.Fence = f.Name
	admin.WriteJSON(w, http.StatusCreated, added)
}

func (gr *gatewayAPI) removeForward(w http.ResponseWriter, r *http.Request) {
	f, g, fw, err := gr.forwardRequest(r, false)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if err := g.RemoveForward(fw); err != nil {
		if errors.Is(err, stack.ErrForwardNotFound) {
			writeAPIError(w, &apiError{http.StatusNotFound,
				fmt.Sprintf("fence %q has no forward on %s %s", f.Name, fw.Proto, fw.Listen)})
			return
		}
		writeAPIError(w, err)
		return
	}
	admin.WriteJSON(w, http.StatusOK, forwardJSON{Fence: f.Name, Proto: fw.Proto, Listen: fw.Listen.String()})
}

// forwardError turns an AddForward error into an answer a user can act on.
func forwardError(fw stack.Forward, err error) error {
	switch {
	case errors.Is(err, stack.ErrForwardExists):
		return &apiError{http.StatusConflict, fmt.Sprintf("listen address %s %s in use: this fence already forwards it", fw.Proto, fw.Listen)}
	case errors.Is(err, syscall.EADDRINUSE):
		return &apiError{http.StatusConflict, fmt.Sprintf("listen address %s %s in use (by another forward or process)", fw.Proto, fw.Listen)}
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return &apiError{http.StatusBadRequest, fmt.Sprintf("listen address %s %s is not an address of this host", fw.Proto, fw.Listen)}
	case errors.Is(err, syscall.EACCES):
		return &apiError{http.StatusForbidden, fmt.Sprintf("listen address %s %s: permission denied (ports below 1024 need privileges)", fw.Proto, fw.Listen)}
	case errors.Is(err, stack.ErrInvalidConfig):
		return &apiError{http.StatusBadRequest, strings.TrimPrefix(err.Error(), stack.ErrInvalidConfig.Error()+": ")}
	case errors.Is(err, stack.ErrClosed):
		return &apiError{http.StatusServiceUnavailable, "the gateway is shutting down"}
	}
	return err
}

// The CLI.

func (c *cli) newForwardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "Add, list and remove port forwards of a running switch's gateways",
		Args:  noArgs, // an unknown subcommand is a usage error
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add FENCE PROTO LISTEN TARGET",
		Short: "Forward host address LISTEN (IP:port) into fence FENCE's TARGET (IP:port)",
		Example: `  corral forward add default tcp 127.0.0.1:2222 10.0.2.15:22
  corral forward add lab2 udp 127.0.0.1:5353 10.0.2.15:53`,
		Args: exactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			fj := forwardJSON{Fence: args[0], Proto: args[1], Listen: args[2], Target: args[3]}
			if _, err := parseForward(fj, true); err != nil {
				return usageError{err}
			}
			var added forwardJSON
			return c.send(cmd, http.MethodPost, "/v1/forwards", fj, &added, func(w io.Writer) {
				fmt.Fprintf(w, "fence %s: forwarding %s %s -> %s\n", added.Fence, added.Proto, added.Listen, added.Target)
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "ls [FENCE]",
		Short: "List the port forwards of one fence or of every fence with a gateway",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("forward ls takes at most one FENCE, got %d", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/forwards"
			if len(args) == 1 {
				path += "?fence=" + url.QueryEscape(args[0])
			}
			var ffs []fenceForwards
			return c.query(cmd, path, &ffs, func(w io.Writer) { printForwards(w, ffs) })
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "rm FENCE PROTO LISTEN",
		Aliases: []string{"remove", "del"},
		Short:   "Remove fence FENCE's forward of host address LISTEN",
		Example: "  corral forward rm default tcp 127.0.0.1:2222",
		Args:    exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			fj := forwardJSON{Fence: args[0], Proto: args[1], Listen: args[2]}
			if _, err := parseForward(fj, false); err != nil {
				return usageError{err}
			}
			var removed forwardJSON
			return c.send(cmd, http.MethodDelete, "/v1/forwards", fj, &removed, func(w io.Writer) {
				fmt.Fprintf(w, "fence %s: removed %s %s\n", removed.Fence, removed.Proto, removed.Listen)
			})
		},
	})
	return cmd
}

// exactArgs is cobra.ExactArgs as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d arguments, got %d (usage: %s)", cmd.CommandPath(), n, len(args), cmd.UseLine())}
		}
		return nil
	}
}

func printForwards(w io.Writer, ffs []fenceForwards) {
	fmt.Fprintln(w, "FENCE\tPROTO\tLISTEN\tTARGET")
	for _, ff := range ffs {
		for _, f := range ff.Forwards {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", ff.Name, f.Proto, f.Listen, f.Target)
		}
	}
}
