package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/corralnet/corral/attach"
)

// examplePath is the sample configuration, relative to this package.
var examplePath = filepath.Join("..", "..", "contrib", "examples", "corral.yaml")

// TestExampleConfig: contrib/examples/corral.yaml loads through the real
// configuration path (parseArgs with --config), validates, uses every
// attachment scheme, and expands $XDG_RUNTIME_DIR.
func TestExampleConfig(t *testing.T) {
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	fs := pflag.NewFlagSet("corral", pflag.ContinueOnError)
	addConfigFlags(fs)
	cfg, err := parseArgs(fs, []string{"--config", examplePath})
	if err != nil {
		t.Fatalf("%s: %v", examplePath, err)
	}
	schemes := map[attach.Scheme]bool{}
	for _, f := range cfg.Fences {
		for _, a := range append(append([]attach.Addr(nil), f.Listen...), f.Dial...) {
			schemes[a.Scheme] = true
			if strings.Contains(a.Target, "$") {
				t.Errorf("fence %s: %q not expanded", f.Name, a.Target)
			}
		}
	}
	for _, s := range []attach.Scheme{attach.Unix, attach.TCP, attach.Unixgram, attach.UDP, attach.Unixpacket, attach.Vsock} {
		if !schemes[s] {
			t.Errorf("the sample uses no %s:// address", s)
		}
	}
	if got, want := cfg.Fences[0].Listen[0].Target, filepath.Join(rt, "corral", "lab.sock"); got != want {
		t.Errorf("lab.sock at %q, want %q", got, want)
	}
	if got, want := cfg.Admin.Target, filepath.Join(rt, "corral", "admin.sock"); got != want {
		t.Errorf("admin socket at %q, want %q", got, want)
	}
	g := cfg.Fences[0].Gateway
	if g == nil || g.Socks != netip.MustParseAddrPort("127.0.0.1:1080") || len(g.DNSRecords) != 2 || len(cfg.Fences[0].Forwards) != 2 {
		t.Errorf("fence lab's gateway: %+v", g)
	}
}

// TestREADMESample: the README's sample configuration is exactly
// contrib/examples/corral.yaml.
func TestREADMESample(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	// The sample is the ```yaml block after the line that names the file.
	_, after, ok := bytes.Cut(readme, []byte("`contrib/examples/corral.yaml`"))
	if !ok {
		t.Fatal("README.md does not name contrib/examples/corral.yaml")
	}
	_, block, ok := bytes.Cut(after, []byte("```yaml\n"))
	if !ok {
		t.Fatal("README.md: no ```yaml block after contrib/examples/corral.yaml")
	}
	block, _, ok = bytes.Cut(block, []byte("```\n"))
	if !ok {
		t.Fatal("README.md: the sample's block does not end")
	}
	if !bytes.Equal(block, example) {
		t.Fatalf("the README's sample differs from %s: make them the same file", examplePath)
	}
}

// TestHelpNamesReference: --help points to the configuration reference
// the repository ships, not to a design file it does not.
func TestHelpNamesReference(t *testing.T) {
	var out, errb bytes.Buffer
	if code := execute(t.Context(), []string{"--help"}, strings.NewReader(""), &out, &errb); code != exitOK {
		t.Fatalf("--help: exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(out.String(), "docs/configuration.md") || strings.Contains(out.String(), "DESIGN") {
		t.Fatalf("--help:\n%s", out.String())
	}
	if _, err := os.Stat(referencePath); err != nil {
		t.Fatal(err)
	}
}
