package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/uplink"
)

// writeSecret writes a secret file of the given mode: 32 bytes of b, as
// hex when hexa.
func writeSecret(t *testing.T, dir, name string, b byte, hexa bool, mode os.FileMode) string {
	t.Helper()
	key := bytes.Repeat([]byte{b}, 32)
	data := key
	if hexa {
		data = []byte(hex.EncodeToString(key) + "\n")
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// idCollision returns a byte b != a whose repeated secret has a's key ID.
func idCollision(t *testing.T, a byte) byte {
	t.Helper()
	want := fence.KeyID(bytes.Repeat([]byte{a}, 32))
	for b := 0; b < 256; b++ {
		if byte(b) != a && fence.KeyID(bytes.Repeat([]byte{byte(b)}, 32)) == want {
			return byte(b)
		}
	}
	t.Skip("no key ID collision among 256 secrets") // never happens: checked once by hand
	return 0
}

func TestSealConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeSecret(t, dir, "good.key", 1, true, 0o600)
	raw := writeSecret(t, dir, "raw.key", 2, false, 0o400)
	other := writeSecret(t, dir, "other.key", 3, true, 0o600)
	world := writeSecret(t, dir, "world.key", 4, true, 0o644)
	group := writeSecret(t, dir, "group.key", 5, true, 0o640)
	same := writeSecret(t, dir, "same.key", 1, false, 0o600)
	clash := writeSecret(t, dir, "clash.key", idCollision(t, 1), true, 0o600)
	empty := filepath.Join(dir, "empty.key")
	os.WriteFile(empty, []byte("\n"), 0o600)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("00112233"), 0o600)
	badHex := filepath.Join(dir, "badhex.key")
	os.WriteFile(badHex, []byte(strings.Repeat("zz", 32)), 0o600)

	const up = "uplink: {udp: {listen: \"127.0.0.1:7407\", peers: [\"127.0.0.1:7408\"]}, seal: {mode: required, secret_file: %q%s}}\n"
	fences := "state_dir: " + strconv.Quote(filepath.Join(dir, "state")) + "\nfences: [{name: a, id: 1%s}, {name: b, id: 2, gateway: {enabled: true}}]\n"
	cfgYAML := func(seal, fenceExtra string) string {
		return fmt.Sprintf(fences, fenceExtra) + fmt.Sprintf(up, good, seal)
	}
	t.Run("good", func(t *testing.T) {
		for _, tc := range []struct {
			name, yaml string
			keys       int // fence keys, all fences and fence 0
			cipher     uplink.Cipher
		}{
			{"hex secret", cfgYAML("", ""), 3, uplink.CipherAESGCM},
			{"raw secret mode 0400, chacha", fmt.Sprintf(fences, "") + fmt.Sprintf(up, raw, ", cipher: chacha20-poly1305"), 3, uplink.CipherChaCha20Poly1305},
			{"previous secret", cfgYAML(", previous_secret_file: "+strconv.Quote(other), ""), 6, uplink.CipherAESGCM},
			{"previous secret empty: none", cfgYAML(", previous_secret_file: "+strconv.Quote(empty), ""), 3, uplink.CipherAESGCM},
			{"fence key file", cfgYAML("", ", key_file: "+strconv.Quote(raw)), 3, uplink.CipherAESGCM},
			{"fence key rotation", cfgYAML("", ", key_file: "+strconv.Quote(raw)+", previous_key_file: "+strconv.Quote(other)), 4, uplink.CipherAESGCM},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, err := parse(t, tc.yaml)
				if err != nil {
					t.Fatal(err)
				}
				s := c.Uplink.Seal
				if s == nil || len(s.Keys) != tc.keys || s.Cipher != tc.cipher || c.Seal == nil {
					t.Fatalf("seal %+v, want %d keys, cipher %v", s, tc.keys, tc.cipher)
				}
				sends := map[uint32]uint8{}
				for _, k := range s.Keys {
					if !k.ReceiveOnly {
						sends[k.Fence] = k.ID
					}
				}
				if len(sends) != 3 {
					t.Errorf("send keys for fences %v, want 0, 1, 2", sends)
				}
				// The gateway advertises an MTU 25 bytes smaller than unsealed (1440).
				if g := c.Fences[1].Gateway; g.MTU != 1415 {
					t.Errorf("gateway MTU %d, want 1415", g.MTU)
				}
			})
		}
		c, _ := parse(t, cfgYAML("", ", key_file: "+strconv.Quote(raw)))
		for _, k := range c.Uplink.Seal.Keys {
			want := fence.KeyID(bytes.Repeat([]byte{1}, 32))
			if k.Fence == 1 {
				want = fence.KeyID(bytes.Repeat([]byte{2}, 32))
			}
			if k.ID != want {
				t.Errorf("fence %d: key ID %#x, want %#x", k.Fence, k.ID, want)
			}
		}
	})
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"bad mode", cfgYAML("", "") + "\n" + "", ""},
		{"mode", fmt.Sprintf(fences, "") + "uplink: {udp: {listen: \"127.0.0.1:7407\"}, seal: {mode: sometimes}}\n", `uplink.seal.mode: "sometimes": want off or required`},
		{"no secret", fmt.Sprintf(fences, "") + "uplink: {udp: {listen: \"127.0.0.1:7407\"}, seal: {mode: required}}\n", "uplink.seal.secret_file: required"},
		{"missing file", fmt.Sprintf(fences, "") + fmt.Sprintf(up, filepath.Join(dir, "nope"), ""), "uplink.seal.secret_file: open"},
		{"world readable", fmt.Sprintf(fences, "") + fmt.Sprintf(up, world, ""), "uplink.seal.secret_file: " + world + ": mode 0644"},
		{"group readable", fmt.Sprintf(fences, "") + fmt.Sprintf(up, group, ""), "mode 0640"},
		{"short", fmt.Sprintf(fences, "") + fmt.Sprintf(up, short, ""), "want 32 bytes, or 64 hex digits"},
		{"empty secret", fmt.Sprintf(fences, "") + fmt.Sprintf(up, empty, ""), "uplink.seal.secret_file: " + empty + ": want 32 bytes"},
		{"bad hex", fmt.Sprintf(fences, "") + fmt.Sprintf(up, badHex, ""), "uplink.seal.secret_file: " + badHex + ": want 32 bytes"},
		{"cipher", cfgYAML(", cipher: des", ""), `uplink.seal.cipher: "des"`},
		{"previous bad mode", cfgYAML(", previous_secret_file: "+strconv.Quote(world), ""), "uplink.seal.previous_secret_file:"},
		{"previous same secret", cfgYAML(", previous_secret_file: "+strconv.Quote(same), ""), "uplink.seal.previous_secret_file: holds the same secret"},
		{"previous same key ID", cfgYAML(", previous_secret_file: "+strconv.Quote(clash), ""), "uplink.seal.previous_secret_file: has the same key ID"},
		{"fence key bad mode", cfgYAML("", ", key_file: "+strconv.Quote(world)), "fences[0].key_file:"},
		{"fence previous without key", cfgYAML("", ", previous_key_file: "+strconv.Quote(other)), "fences[0].previous_key_file: set without"},
		{"key file while off", fmt.Sprintf(fences, ", key_file: "+strconv.Quote(raw)), "fences[0].key_file: set while uplink.seal.mode is off"},
		{"seal keys while off", fmt.Sprintf(fences, "") + "uplink: {seal: {mode: off, secret_file: x}}\n", "uplink.seal.mode:"},
		{"no uplink", fmt.Sprintf(fences, "") + "uplink: {seal: {mode: required, secret_file: " + strconv.Quote(good) + "}}\n", "uplink.seal.mode: required, but no uplink"},
		{"learn peers without udp", fmt.Sprintf(fences, "") + "uplink: {udp: {learn_peers: true}}\n", "uplink.udp.learn_peers: needs uplink.udp.listen"},
		{"max macs per host", fmt.Sprintf(fences, "") + "uplink: {max_macs_per_host: 0}\n", "uplink.max_macs_per_host: 0 out of range"},
	} {
		if tc.want == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !isConfigError(err) {
				t.Fatalf("got %v, want a ConfigError containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), hex.EncodeToString(bytes.Repeat([]byte{1}, 32))) {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
	t.Run("learn peers and max macs", func(t *testing.T) {
		c, err := parse(t, fmt.Sprintf(fences, "")+"uplink: {max_macs_per_host: 100, udp: {listen: \"127.0.0.1:7407\", learn_peers: true}}\n")
		if err != nil {
			t.Fatal(err)
		}
		if !c.Uplink.LearnPeers || c.Switch.MaxHostMACs != 100 || c.Uplink.Seal != nil {
			t.Fatalf("LearnPeers %v, MaxHostMACs %d, Seal %v", c.Uplink.LearnPeers, c.Switch.MaxHostMACs, c.Uplink.Seal)
		}
	})
	t.Run("exit status 2", func(t *testing.T) {
		p := filepath.Join(dir, "c.yaml")
		os.WriteFile(p, []byte(fmt.Sprintf(fences, "")+fmt.Sprintf(up, world, "")), 0o600)
		code, _, errOut := runCLI(t, "run", "--config", p)
		if code != 2 || !strings.Contains(errOut, "uplink.seal.secret_file") {
			t.Fatalf("exit %d, stderr %q; want 2 naming uplink.seal.secret_file", code, errOut)
		}
	})
}

func TestGuestMTUSealed(t *testing.T) {
	keys := []fence.FenceKey{{Fence: 0}}
	for _, tc := range []struct {
		c    uplink.Config
		want int
	}{
		{uplink.Config{UDPListen: netip.MustParseAddrPort("0.0.0.0:7407")}, 1415},
		{uplink.Config{UDPListen: netip.MustParseAddrPort("[::]:7407")}, 1395},
		{uplink.Config{RawInterface: "eth0"}, 1457},
		{uplink.Config{RawInterface: "eth0", MTU: 9000}, 8957},
	} {
		tc.c.Seal = &uplink.SealConfig{Keys: keys}
		if got := guestMTU(tc.c); got != tc.want {
			t.Errorf("guestMTU(%+v) = %d, want %d", tc.c, got, tc.want)
		}
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "keygen")
	secret, err := hex.DecodeString(strings.TrimSpace(out))
	if code != 0 || err != nil || len(secret) != 32 || !strings.Contains(errOut, fmt.Sprintf("key ID %#02x", fence.KeyID(secret))) {
		t.Fatalf("keygen to stdout: exit %d, %q, %q", code, out, errOut)
	}
	if strings.Contains(errOut, strings.TrimSpace(out)) {
		t.Fatal("the secret went to stderr too")
	}
	p := filepath.Join(dir, "k")
	if code, _, errOut := runCLI(t, "keygen", p); code != 0 || strings.Contains(errOut, hex.EncodeToString(secret)) {
		t.Fatalf("keygen FILE: exit %d, %q", code, errOut)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", st.Mode(), err)
	}
	first, _ := os.ReadFile(p)
	if k, err := readSecret("x", p); err != nil || len(k) != 32 {
		t.Fatalf("readSecret(keygen's file) = %d bytes, %v", len(k), err)
	}
	if code, _, errOut := runCLI(t, "keygen", p); code != 2 || !strings.Contains(errOut, "exists; use --force") {
		t.Fatalf("keygen over an existing file: exit %d, %q", code, errOut)
	}
	if again, _ := os.ReadFile(p); !bytes.Equal(again, first) {
		t.Fatal("the existing file changed")
	}
	os.Chmod(p, 0o644)
	if code, _, _ := runCLI(t, "keygen", "--force", p); code != 0 {
		t.Fatalf("keygen --force: exit %d", code)
	}
	if again, _ := os.ReadFile(p); bytes.Equal(again, first) {
		t.Fatal("--force did not write a new secret")
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after --force %v, want 0600", st.Mode())
	}
	if code, _, _ := runCLI(t, "keygen", "a", "b"); code != 2 {
		t.Fatalf("keygen a b: exit %d, want 2", code)
	}
}

func TestSealCounter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	now := time.Unix(1_000_000, 0)
	c, start, limit, err := openSealCounter(dir, 1, 0x2c2, now)
	if err != nil {
		t.Fatal(err)
	}
	if start != uint64(now.UnixNano()) || limit != start+counterBlock {
		t.Fatalf("first start %d limit %d", start, limit)
	}
	// The limit is on disk before a counter is used.
	if b, _ := os.ReadFile(counterPath(dir, 1, 0x2c2)); strings.TrimSpace(string(b)) != strconv.FormatUint(limit, 10) {
		t.Fatalf("file %q, want %d", b, limit)
	}
	if st, _ := os.Stat(counterPath(dir, 1, 0x2c2)); st.Mode().Perm() != 0o600 {
		t.Fatalf("counter file mode %v", st.Mode())
	}
	l2, err := c.reserve(start + 100)
	if err != nil || l2 != limit+counterBlock {
		t.Fatalf("reserve = %d, %v; want %d", l2, err, limit+counterBlock)
	}
	// A restart with the clock set back starts above the stored limit.
	_, start2, _, err := openSealCounter(dir, 1, 0x2c2, now.Add(-time.Hour))
	if err != nil || start2 != l2 {
		t.Fatalf("restart: start %d, %v; want %d (the stored limit)", start2, err, l2)
	}
	// Another host ID has its own file.
	_, start3, _, err := openSealCounter(dir, 1, 0x2c3, now)
	if err != nil || start3 != uint64(now.UnixNano()) {
		t.Fatalf("other host: start %d, %v", start3, err)
	}
	os.WriteFile(counterPath(dir, 1, 0x2c2), []byte("garbage"), 0o600)
	if _, _, _, err := openSealCounter(dir, 1, 0x2c2, now); err == nil {
		t.Fatal("a damaged counter file was accepted")
	}
}

// TestRunSealedReload runs a sealed corral, rotates its secret with
// SIGHUP's reloadKeys (new secret receive-only, then sending) and checks
// that the keys change, a bad file keeps the running keys, and no secret
// shows in logs or the admin API.
func TestRunSealedReload(t *testing.T) {
	dir := shortDir(t)
	cur := writeSecret(t, dir, "cur.key", 0x11, true, 0o600)
	next := writeSecret(t, dir, "next.key", 0x22, true, 0o600)
	link := filepath.Join(dir, "install.key")
	prevLink := filepath.Join(dir, "previous.key")
	if err := os.Symlink(cur, link); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	yaml := `host: {name: h1, id: 7}
state_dir: "` + dir + `/state"
uplink: {hello_interval: 100ms, udp: {listen: "127.0.0.1:` + strconv.Itoa(port) + `", peers: ["127.0.0.1:9"]},
  seal: {mode: required, secret_file: "` + link + `", previous_secret_file: "` + prevLink + `"}}
fences:
  - {name: a, id: 1, listen: ["unix://` + dir + `/a.sock"]}
admin: {listen: "unix://` + dir + `/admin.sock"}
`
	// Round 1 of a rotation: the new secret is the receive-only one.
	if err := os.Symlink(next, prevLink); err != nil {
		t.Fatal(err)
	}
	logs, stop := startRun(t, yaml)
	adminSock := filepath.Join(dir, "admin.sock")
	peers := func() admin.PeersResponse {
		code, out, errOut := runCLI(t, "peers", "--json", "--admin", adminSock)
		if code != 0 {
			t.Fatalf("peers: %d %s", code, errOut)
		}
		var st admin.PeersResponse
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"11111111", "22222222"} {
			if strings.Contains(out, s) {
				t.Fatalf("the admin API shows a secret:\n%s", out)
			}
		}
		return st
	}
	idCur, idNext := fence.KeyID(bytes.Repeat([]byte{0x11}, 32)), fence.KeyID(bytes.Repeat([]byte{0x22}, 32))
	st := peers()
	if st.Seal == nil || len(st.Seal.Keys) != 2 || *st.Seal.Keys[1].SendKeyID != idCur || len(st.Seal.Keys[1].KeyIDs) != 2 {
		t.Fatalf("seal at start: %+v", st.Seal)
	}
	if st.Seal.CounterLimit <= st.Seal.Counter {
		t.Fatalf("counter %d, limit %d", st.Seal.Counter, st.Seal.CounterLimit)
	}
	// Round 2: swap the files and reload, as an operator does: SIGHUP
	// (runSwitch handles it; the test binary is the corral process).
	os.Remove(link)
	os.Remove(prevLink)
	os.Symlink(next, link)
	os.Symlink(cur, prevLink)
	hup := func(want string, n int) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(logs.String(), want) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after SIGHUP:\n%s", want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	hup("SIGHUP: uplink keys reloaded", 1)
	st = peers()
	if *st.Seal.Keys[1].SendKeyID != idNext || st.Seal.KeyChanges != 1 {
		t.Fatalf("seal after reload: %+v", st.Seal)
	}
	// A bad file: the running keys stay.
	os.Chmod(cur, 0o644)
	hup("SIGHUP: keys not reloaded", 1)
	if l := logs.String(); !strings.Contains(l, "uplink.seal.previous_secret_file: "+prevLink+": mode 0644") {
		t.Fatalf("the failed reload does not name the key and file:\n%s", l)
	}
	if st = peers(); *st.Seal.Keys[1].SendKeyID != idNext || st.Seal.KeyChanges != 1 {
		t.Fatalf("seal after a failed reload: %+v", st.Seal)
	}
	code, out, _ := runCLI(t, "peers", "--admin", adminSock)
	if code != 0 || !strings.Contains(out, "sealed (aes-256-gcm)") {
		t.Fatalf("corral peers:\n%s", out)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"1111111111", "2222222222"} {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("the log shows a secret:\n%s", logs.String())
		}
	}
}
