package admin

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// GET /v1/health: the liveness probe. The admin socket answers only once
// everything configured runs (corral serves it last), so any answer means
// a running switch; the body says how long and with how much.

// HealthResponse is the body of GET /v1/health.
type HealthResponse struct {
	Status        string  `json:"status"` // "ok"
	Version       string  `json:"version,omitempty"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Fences        int     `json:"fences"`
	Ports         int     `json:"ports"`
	// Uplink is true when an uplink is configured.
	Uplink bool `json:"uplink"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	st := s.sw.Status()
	writeJSON(w, http.StatusOK, HealthResponse{
		Status: "ok", Version: s.version, UptimeSeconds: time.Since(s.started).Seconds(),
		Fences: len(st.Fences), Ports: len(st.Ports), Uplink: s.up != nil,
	})
}

// Health calls GET /v1/health.
func (c *Client) Health(ctx context.Context) (HealthResponse, error) {
	var v HealthResponse
	return v, c.call(ctx, http.MethodGet, "/v1/health", nil, &v)
}

// ErrNoUplink is the error of [Client.Peers] when the running corral has
// no uplink (GET /v1/peers answers 404).
var ErrNoUplink = errors.New("no uplink configured")
