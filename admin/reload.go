package admin

import (
	"context"
	"net/http"
)

// POST /v1/reload: read the configuration file again and apply what
// changed (see cmd/corral/reload.go). An invalid configuration, or one
// that changes what cannot change at run time, is refused with 400 and
// the running one kept.

// ReloadResponse is the body of POST /v1/reload: what was applied.
type ReloadResponse struct {
	// Changes lists what changed, one line each ("fence b added", …);
	// empty when nothing did.
	Changes []string `json:"changes"`
}

func (s *Server) reloadConfig(w http.ResponseWriter, r *http.Request) {
	if s.reload == nil {
		writeError(w, http.StatusNotFound, "reload is not available")
		return
	}
	resp, err := s.reload(r.Context())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if resp.Changes == nil {
		resp.Changes = []string{}
	}
	writeJSON(w, http.StatusOK, resp)
}

// Reload calls POST /v1/reload.
func (c *Client) Reload(ctx context.Context) (ReloadResponse, error) {
	var v ReloadResponse
	return v, c.call(ctx, http.MethodPost, "/v1/reload", struct{}{}, &v)
}
