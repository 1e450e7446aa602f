package main

import (
	"log/slog"

	"github.com/corralnet/corral/stack"
	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// startGateway starts fence f's gateway and attaches it to the switch like
// any port.
func startGateway(rt *instance, f Fence, log *slog.Logger) error {
	sc := *f.Gateway
	sc.Logger = log.With("component", "gateway") // the gateway adds the fence
	gw, err := stack.New(sc)
	if err != nil {
		return err
	}
	h, err := rt.sw.Attach(gw, vswitch.PortConfig{Name: "gateway:" + f.Name, Fence: f.ID})
	if err != nil {
		gw.Close()
		return err
	}
	if rt.gateways == nil {
		rt.gateways = map[uint32]*stack.Gateway{}
	}
	rt.gateways[f.ID] = gw
	rt.onClose(h.Close)
	return nil
}

// startUplink starts the uplink and attaches it to the switch as its trunk.
func startUplink(rt *instance) error {
	uc := rt.cfg.Uplink
	uc.Logger = rt.log.With("component", "uplink")
	uc.LocalFences = rt.sw.LocalFences
	uc.GatewayFences = rt.gatewayFences
	uc.OnPeerDown = func(h [6]byte) { rt.sw.FlushHost(vswitch.MAC(h)) }
	u, err := uplink.New(uc)
	if err != nil {
		return err
	}
	if err := rt.sw.AttachTrunk(u); err != nil {
		u.Close()
		return err
	}
	rt.uplink = u
	return nil
}

// gatewayFences lists the fences whose gateway runs here (for hellos).
func (rt *instance) gatewayFences() []uint32 {
	var ids []uint32
	for _, f := range rt.cfg.Fences {
		if f.Gateway != nil {
			ids = append(ids, f.ID)
		}
	}
	return ids
}
