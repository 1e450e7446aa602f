package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// parseRaw reads yaml as corral run --config would.
func parseRaw(t *testing.T, yaml string) (*fileConfig, *Config, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("corral", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse([]string{"--config", f}); err != nil {
		t.Fatal(err)
	}
	return loadConfigRaw(fs)
}

// TestReloadPlan: the diff of two configurations, fence by fence, and
// what a reload refuses.
func TestReloadPlan(t *testing.T) {
	const base = `fences:
  - {name: a, id: 1, listen: ["unix:///tmp/x/a.sock"]}
  - {name: b, id: 2, listen: ["unix:///tmp/x/b.sock"], gateway: {enabled: true, forwards: [{proto: tcp, listen: "127.0.0.1:2222", target: "10.0.2.15:22"}]}}
  - {name: c, id: 3, dial: ["tcp://127.0.0.1:9"]}
`
	oldRaw, oldCfg, err := parseRaw(t, base)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		want       string // the plan, or the error
	}{
		{"same", base, ""},
		{"add and remove", `fences:
  - {name: a, id: 1, listen: ["unix:///tmp/x/a.sock"]}
  - {name: b, id: 2, listen: ["unix:///tmp/x/b.sock"], gateway: {enabled: true, forwards: [{proto: tcp, listen: "127.0.0.1:2222", target: "10.0.2.15:22"}]}}
  - {name: d, id: 4, listen: ["unix:///tmp/x/d.sock"]}
`, "add d; remove c"},
		{"listen, forwards, dials", `fences:
  - {name: a, id: 1, listen: ["unix:///tmp/x/a2.sock", "tcp://127.0.0.1:7000"]}
  - {name: b, id: 2, listen: ["unix:///tmp/x/b.sock"], gateway: {enabled: true, forwards: [{proto: tcp, listen: "127.0.0.1:2223", target: "10.0.2.15:22"}]}}
  - {name: c, id: 3, dial: ["tcp://127.0.0.1:10"]}
`, "change a +listen 2 -listen 1; change b +fwd 1 -fwd 1; change c dials"},
		{"gateway settings", `fences:
  - {name: a, id: 1, listen: ["unix:///tmp/x/a.sock"], gateway: {enabled: true}}
  - {name: b, id: 2, listen: ["unix:///tmp/x/b.sock"], gateway: {enabled: true, subnet: 10.0.9.0/24}}
  - {name: c, id: 3, dial: ["tcp://127.0.0.1:9"]}
`, "change a gateway added/removed; change b gateway"},
		{"name", strings.Replace(base, "name: a", "name: z", 1), "fences[0].name: cannot change at run time"},
		{"max_macs", strings.Replace(base, "name: a, id: 1", "name: a, id: 1, max_macs: 5", 1), "cannot change at run time"},
		{"host", base + "host: {name: other}\n", "host.name cannot change at run time"},
		{"admin", base + `admin: {listen: "unix:///tmp/x/other.sock"}` + "\n", "admin.listen cannot change at run time"},
		{"uplink", base + `uplink: {udp: {listen: "127.0.0.1:7000"}}` + "\n", "uplink.udp.listen cannot change at run time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, cfg, err := parseRaw(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if key := fixedKeyChanged(oldRaw, raw); key != "" {
				got = key + " cannot change at run time"
			} else if p, err := planReload(oldCfg.Fences, cfg.Fences); err != nil {
				got = err.Error()
			} else {
				got = planString(p)
			}
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// An invalid configuration is refused before any plan.
	if _, _, err := parseRaw(t, "fences: [{name: a, id: 0}]\n"); err == nil {
		t.Error("an invalid configuration validated")
	}
}

func planString(p reloadPlan) string {
	var parts []string
	for _, f := range p.add {
		parts = append(parts, "add "+f.Name)
	}
	for _, f := range p.remove {
		parts = append(parts, "remove "+f.Name)
	}
	for _, c := range p.change {
		s := "change " + c.new.Name
		if n := len(c.listenAdd); n > 0 {
			s += " +listen " + itoa(n)
		}
		if n := len(c.listenRemove); n > 0 {
			s += " -listen " + itoa(n)
		}
		if n := len(c.forwardAdd); n > 0 {
			s += " +fwd " + itoa(n)
		}
		if n := len(c.forwardRemove); n > 0 {
			s += " -fwd " + itoa(n)
		}
		if c.dials {
			s += " dials"
		}
		if c.gateway {
			s += " gateway"
		}
		if c.gatewayAddRemove {
			s += " gateway added/removed"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func itoa(n int) string { return strconv.Itoa(n) }
