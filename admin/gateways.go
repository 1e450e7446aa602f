package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"syscall"

	vswitch "github.com/corralnet/corral/switch"
)

// The gateways' routes: GET /v1/gateways, and the port forwards at run
// time, GET/POST/DELETE /v1/forwards. Forwards added at run time live
// until they are removed or corral stops; the configuration is not
// rewritten.

// Gateways are the fences' gateways as the server sees them. cmd/corral
// implements it over its gateways (package stack, which admin does not
// import). Its methods are safe for concurrent use.
type Gateways interface {
	// Gateway returns the gateway that serves fence id here, nil when
	// none does.
	Gateway(fence uint32) Gateway
	// Configured reports whether fence id has a gateway in the
	// configuration; one that is configured and not served was yielded to
	// a peer (DESIGN.md section 6).
	Configured(fence uint32) bool
	// YieldedTo returns the outer MAC of the peer that serves the gateway
	// of fence id in this host's stead, "" when there is none.
	YieldedTo(fence uint32) string
	// Served lists the fences whose gateway runs here now.
	Served() []uint32
}

// Gateway is one running gateway. Its methods are safe for concurrent
// use.
type Gateway interface {
	// Status returns the gateway's addresses, leases and counters; the
	// server fills in Fence, Name and Forwards.
	Status() GatewayStatus
	// Forwards lists the running forwards (Fence empty).
	Forwards() []Forward
	// AddForward starts a forward and returns it as running (a listen
	// port 0 bound to a free port). Its errors wrap [ErrForwardExists],
	// [ErrForwardConflict], [ErrInvalidForward] or [ErrGatewayClosed], or
	// the listen socket's error (syscall.EADDRINUSE …).
	AddForward(f ForwardSpec) (Forward, error)
	// RemoveForward stops the forward of f.Proto on f.Listen with f.SNI
	// or f.Host. An unknown forward is an error wrapping
	// [ErrForwardNotFound].
	RemoveForward(f ForwardSpec) error
}

// Errors a [Gateway] wraps, answered with a status each.
var (
	ErrForwardExists = errors.New("the fence already forwards the listen address") // 409
	// ErrForwardConflict is wrapped as "…: REASON" (409, REASON names
	// the fence that has the route).
	ErrForwardConflict = errors.New("another fence forwards the listen address")
	ErrForwardNotFound = errors.New("no such forward")              // 404
	ErrGatewayClosed   = errors.New("the gateway is shutting down") // 503
	// ErrInvalidForward is wrapped as "invalid forward: REASON"; the
	// answer (400) carries REASON.
	ErrInvalidForward = errors.New("invalid forward")
)

// ForwardSpec is a checked [Forward]: what a [Gateway] adds or removes.
type ForwardSpec struct {
	Proto  string         // "tcp" or "udp"
	Listen netip.AddrPort // host address
	Target netip.AddrPort // address in the fence; invalid when removing
	SNI    string         // TLS server name, lower case, no trailing dot; "" for none
	Host   string         // HTTP host, lower case, no trailing dot or port; "" for none
}

// Route formats s's route: "tcp 127.0.0.1:8443", with " sni NAME" or
// " host NAME".
func (s ForwardSpec) Route() string {
	r := s.Proto + " " + s.Listen.String()
	switch {
	case s.SNI != "":
		r += " sni " + s.SNI
	case s.Host != "":
		r += " host " + s.Host
	}
	return r
}

// ParseForward checks f's protocol and addresses; the target is required
// when withTarget. Its errors are meant for users (the CLI shows them as
// usage errors, the server answers them with 400).
func ParseForward(f Forward, withTarget bool) (ForwardSpec, error) {
	bad := func(format string, args ...any) error {
		return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
	}
	s := ForwardSpec{Proto: strings.ToLower(strings.TrimSpace(f.Proto))}
	if s.Proto != "tcp" && s.Proto != "udp" {
		return s, bad("proto %q: want tcp or udp", f.Proto)
	}
	var err error
	if s.Listen, err = netip.ParseAddrPort(strings.TrimSpace(f.Listen)); err != nil || s.Listen.Addr().Zone() != "" {
		return s, bad("listen %q: want IP:port", f.Listen)
	}
	s.Listen = netip.AddrPortFrom(s.Listen.Addr().Unmap(), s.Listen.Port())
	s.SNI, s.Host = normName(f.SNI), normName(f.Host)
	switch {
	case s.SNI != "" && s.Host != "":
		return s, bad("sni %q and host %q: give one of them", f.SNI, f.Host)
	case (s.SNI != "" || s.Host != "") && s.Proto != "tcp":
		return s, bad("sni and host need proto tcp (they name TLS and HTTP connections)")
	case s.SNI != "" && !validName(s.SNI):
		return s, bad("sni %q: want a DNS name (letters, digits, '-', '_' between dots; no wildcard or port)", f.SNI)
	case s.Host != "" && !validName(s.Host) && !validAddr(s.Host):
		return s, bad("host %q: want a DNS name or an IP address, without a port", f.Host)
	}
	if !withTarget {
		return s, nil
	}
	if s.Target, err = netip.ParseAddrPort(strings.TrimSpace(f.Target)); err != nil || s.Target.Port() == 0 || s.Target.Addr().Zone() != "" {
		return s, bad("target %q: want IP:port", f.Target)
	}
	s.Target = netip.AddrPortFrom(s.Target.Addr().Unmap(), s.Target.Port())
	if t := s.Target.Addr(); t.IsUnspecified() || t.IsMulticast() || t.IsLoopback() {
		return s, bad("target %q: want a unicast address inside the fence", f.Target)
	}
	return s, nil
}

// normName lower-cases a DNS name and drops one trailing dot.
func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// validName reports whether s (normalized) is a DNS name as forwards match
// it: labels of 1 to 63 letters, digits, '-' or '_', 253 bytes in all.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// Forward returns s in the API's form (Fence empty; Target empty when
// invalid).
func (s ForwardSpec) Forward() Forward {
	f := Forward{Proto: s.Proto, Listen: s.Listen.String(), SNI: s.SNI, Host: s.Host}
	if s.Target.IsValid() {
		f.Target = s.Target.String()
	}
	return f
}

// noGateways is Config.Gateways when nil.
type noGateways struct{}

func (noGateways) Gateway(uint32) Gateway  { return nil }
func (noGateways) Configured(uint32) bool  { return false }
func (noGateways) YieldedTo(uint32) string { return "" }
func (noGateways) Served() []uint32        { return nil }

// fence finds a fence by name or ID for the gateway routes.
func (s *Server) fence(want string) (vswitch.FenceStatus, error) {
	if strings.TrimSpace(want) == "" {
		return vswitch.FenceStatus{}, &apiError{http.StatusBadRequest, "missing fence"}
	}
	f, ok := findFence(s.sw.Status().Fences, want)
	if !ok {
		return f, &apiError{http.StatusNotFound, fmt.Sprintf("no fence %q", strings.TrimSpace(want))}
	}
	return f, nil
}

// gateway finds the gateway of the fence named want.
func (s *Server) gateway(want string) (vswitch.FenceStatus, Gateway, error) {
	f, err := s.fence(want)
	if err != nil {
		return f, nil, err
	}
	g := s.gws.Gateway(f.ID)
	switch {
	case g == nil && s.gws.Configured(f.ID):
		peer := s.gws.YieldedTo(f.ID)
		if peer == "" {
			peer = "-"
		}
		return f, nil, &apiError{http.StatusConflict, fmt.Sprintf("fence %q: its gateway is not served here: yielded to peer %s, which serves it too (see corral peers)", f.Name, peer)}
	case g == nil:
		return f, nil, &apiError{http.StatusConflict, fmt.Sprintf("fence %q has no gateway (fences[].gateway.enabled is false)", f.Name)}
	}
	return f, g, nil
}

// eachGateway calls fn for the gateway of the fence ?fence= names, or for
// every gateway running here (in fence ID order).
func (s *Server) eachGateway(r *http.Request, fn func(vswitch.FenceStatus, Gateway)) error {
	if want := r.URL.Query().Get("fence"); want != "" {
		f, g, err := s.gateway(want)
		if err != nil {
			return err
		}
		fn(f, g)
		return nil
	}
	for _, f := range s.sw.Status().Fences {
		if g := s.gws.Gateway(f.ID); g != nil {
			fn(f, g)
		}
	}
	return nil
}

// forwardsOf lists g's forwards; never nil.
func forwardsOf(g Gateway) []Forward {
	out := []Forward{}
	for _, fw := range g.Forwards() {
		fw.Fence = ""
		out = append(out, fw)
	}
	return out
}

func (s *Server) gateways(w http.ResponseWriter, r *http.Request) {
	out := []GatewayStatus{}
	err := s.eachGateway(r, func(f vswitch.FenceStatus, g Gateway) {
		gs := g.Status()
		gs.Fence, gs.Name, gs.Forwards = f.ID, f.Name, forwardsOf(g)
		if gs.Leases == nil {
			gs.Leases = []Lease{}
		}
		for _, m := range []*map[string]uint64{&gs.Stats.TCPRefusals, &gs.Stats.UDPRefusals, &gs.Stats.ICMPRefusals} {
			if *m == nil {
				*m = map[string]uint64{}
			}
		}
		out = append(out, gs)
	})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listForwards(w http.ResponseWriter, r *http.Request) {
	out := []FenceForwards{}
	err := s.eachGateway(r, func(f vswitch.FenceStatus, g Gateway) {
		out = append(out, FenceForwards{Fence: f.ID, Name: f.Name, Forwards: forwardsOf(g)})
	})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// readForward decodes a forward from the request body, or from the query
// when the body is empty.
func readForward(r *http.Request) (Forward, error) {
	var f Forward
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return f, &apiError{http.StatusBadRequest, err.Error()}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		q := r.URL.Query()
		return Forward{Fence: q.Get("fence"), Proto: q.Get("proto"), Listen: q.Get("listen"), Target: q.Get("target"),
			SNI: q.Get("sni"), Host: q.Get("host")}, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, &apiError{http.StatusBadRequest, "body: " + err.Error()}
	}
	return f, nil
}

// forwardRequest reads a POST or DELETE /v1/forwards request: its body,
// the fence's gateway, and the forward (with a target when withTarget).
func (s *Server) forwardRequest(r *http.Request, withTarget bool) (vswitch.FenceStatus, Gateway, ForwardSpec, error) {
	fr, err := readForward(r)
	if err != nil {
		return vswitch.FenceStatus{}, nil, ForwardSpec{}, err
	}
	f, g, err := s.gateway(fr.Fence)
	if err != nil {
		return vswitch.FenceStatus{}, nil, ForwardSpec{}, err
	}
	spec, err := ParseForward(fr, withTarget)
	return f, g, spec, err
}

func (s *Server) addForward(w http.ResponseWriter, r *http.Request) {
	f, g, spec, err := s.forwardRequest(r, true)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	added, err := g.AddForward(spec)
	if err != nil {
		writeAPIError(w, forwardError(spec, err))
		return
	}
	added.Fence = f.Name
	writeJSON(w, http.StatusCreated, added)
}

func (s *Server) removeForward(w http.ResponseWriter, r *http.Request) {
	f, g, spec, err := s.forwardRequest(r, false)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if err := g.RemoveForward(spec); err != nil {
		if errors.Is(err, ErrForwardNotFound) {
			err = &apiError{http.StatusNotFound, fmt.Sprintf("fence %q has no forward on %s", f.Name, spec.Route())}
		}
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Forward{Fence: f.Name, Proto: spec.Proto, Listen: spec.Listen.String(), SNI: spec.SNI, Host: spec.Host})
}

// forwardError turns a Gateway's error into an answer a user can act on.
func forwardError(fw ForwardSpec, err error) error {
	switch {
	case errors.Is(err, ErrForwardExists):
		return &apiError{http.StatusConflict, fmt.Sprintf("listen address %s in use: this fence already forwards it", fw.Route())}
	case errors.Is(err, ErrForwardConflict):
		return &apiError{http.StatusConflict, fmt.Sprintf("listen address %s in use: %s", fw.Route(), strings.TrimPrefix(err.Error(), ErrForwardConflict.Error()+": "))}
	case errors.Is(err, syscall.EADDRINUSE):
		return &apiError{http.StatusConflict, fmt.Sprintf("listen address %s %s in use (by another forward or process)", fw.Proto, fw.Listen)}
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return &apiError{http.StatusBadRequest, fmt.Sprintf("listen address %s %s is not an address of this host", fw.Proto, fw.Listen)}
	case errors.Is(err, syscall.EACCES):
		return &apiError{http.StatusForbidden, fmt.Sprintf("listen address %s %s: permission denied (ports below 1024 need privileges)", fw.Proto, fw.Listen)}
	case errors.Is(err, ErrInvalidForward):
		return &apiError{http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalidForward.Error()+": ")}
	case errors.Is(err, ErrGatewayClosed):
		return &apiError{http.StatusServiceUnavailable, ErrGatewayClosed.Error()}
	}
	return err
}
