package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
)

// TestOpsNoUplinkHealthProbe (issue 11 item 7): `corral peers` without an
// uplink says so and exits 0; `corral health` exits 0 on a running corral
// and 1 without one; a second corral probing a live fence socket fails
// with "in use" and the running switch attaches no port for the probe.
func TestOpsNoUplinkHealthProbe(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "a.sock")
	conf := func(d string) string {
		return `state_dir: "` + d + `/state"
fences:
  - {name: a, id: 1, listen: ["unix://` + sock + `"]}
admin: {listen: "unix://` + d + `/admin.sock"}
`
	}
	logs, _ := startRun(t, conf(dir))
	adminSock := filepath.Join(dir, "admin.sock")

	code, out, errOut := runCLI(t, "peers", "--admin", adminSock)
	if code != 0 || !strings.Contains(out, "no uplink configured") {
		t.Errorf("corral peers without an uplink: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "peers", "--json", "--admin", adminSock)
	var np struct {
		Uplink *bool             `json:"uplink"`
		Peers  []json.RawMessage `json:"peers"`
	}
	if err := json.Unmarshal([]byte(out), &np); code != 0 || err != nil || np.Uplink == nil || *np.Uplink || np.Peers == nil {
		t.Errorf("corral peers --json without an uplink: exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
	}

	code, out, errOut = runCLI(t, "health", "--admin", adminSock)
	if code != 0 || !strings.HasPrefix(out, "ok: corral") || !strings.Contains(out, "1 fences, 0 ports") {
		t.Errorf("corral health: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "health", "--json", "--admin", adminSock)
	var h admin.HealthResponse
	if err := json.Unmarshal([]byte(out), &h); code != 0 || err != nil || h.Status != "ok" || h.Uplink {
		t.Errorf("corral health --json: exit %d, %v, %+v, stderr %q", code, err, h, errOut)
	}
	code, _, errOut = runCLI(t, "health", "--admin", filepath.Join(dir, "none.sock"))
	if code != 1 || !strings.Contains(errOut, "no corral running") {
		t.Errorf("corral health without a corral: exit %d, stderr %q", code, errOut)
	}

	// A second corral of another instance on the same fence socket.
	dir2 := shortDir(t)
	cfgFile := filepath.Join(dir2, "c.yaml")
	if err := os.WriteFile(cfgFile, []byte(conf(dir2)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(t, "", "--config", cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	err = runSwitch(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if !errors.Is(err, attach.ErrInUse) {
		t.Fatalf("second corral on a live socket: %v, want attach.ErrInUse", err)
	}
	waitFor(t, "the probe's debug line", func() bool {
		return strings.Contains(logs.String(), "a liveness probe")
	})
	if l := logs.String(); strings.Contains(l, "port attached") || strings.Contains(l, "port detached") {
		t.Fatalf("the probe made a port:\n%s", l)
	}
}
