package admin

import (
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// TestForwardRoutes drives /v1/forwards and /v1/gateways against fake
// gateways: every answer a user can get, by status and message.
func TestForwardRoutes(t *testing.T) {
	gws := richGateways()
	delete(gws.gws, 0x20) // red: configured, yielded to h2
	gws.yielded = map[uint32]string{0x20: "02:fe:0c:01:00:02"}
	sw := richSwitch()
	sw.st.Fences = append(sw.st.Fences, richSwitch().st.Fences[1])
	sw.st.Fences[2].ID, sw.st.Fences[2].Name = 3, "plain" // no gateway
	s, err := New(Config{Switch: sw, Gateways: gws})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string // in the body
	}{
		{"add", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8080","target":"10.0.2.15:80"}`, 201, `"listen": "127.0.0.1:8080"`},
		{"add port 0", "POST", "/v1/forwards", `{"fence":"1","proto":"UDP","listen":"127.0.0.1:0","target":"10.0.2.15:53"}`, 201, `"listen": "127.0.0.1:40000"`},
		{"add again", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8080","target":"10.0.2.16:80"}`, 409, "listen address tcp 127.0.0.1:8080 in use: this fence already forwards it"},
		{"in use", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:1","target":"10.0.2.15:80"}`, 409, "in use (by another forward or process)"},
		{"not here", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"192.0.2.1:2","target":"10.0.2.15:80"}`, 400, "is not an address of this host"},
		{"privileged", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:3","target":"10.0.2.15:80"}`, 403, "permission denied"},
		{"invalid", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:4","target":"[fd00::15]:80"}`, 400, `"error": "forward target [fd00::15]:80: IPv6 is off"`},
		{"closing", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:5","target":"10.0.2.15:80"}`, 503, "the gateway is shutting down"},
		{"other error", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:6","target":"10.0.2.15:80"}`, 500, "disk on fire"},
		{"add sni", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","target":"10.0.2.15:443","sni":"Lab-A.Test."}`, 201, `"sni": "lab-a.test"`},
		{"add host same listen", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","target":"10.0.2.15:80","host":"lab-a.test"}`, 201, `"host": "lab-a.test"`},
		{"add sni again", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","target":"10.0.2.15:443","sni":"lab-a.test"}`, 409, "listen address tcp 127.0.0.1:8443 sni lab-a.test in use: this fence already forwards it"},
		{"other fence's", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8","target":"10.0.2.15:443","sni":"lab-b.test"}`, 409, "listen address tcp 127.0.0.1:8 sni lab-b.test in use: fence red forwards it"},
		{"sni and host", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","target":"10.0.2.15:443","sni":"a.test","host":"a.test"}`, 400, "give one of them"},
		{"udp sni", "POST", "/v1/forwards", `{"fence":"blue","proto":"udp","listen":"127.0.0.1:8443","target":"10.0.2.15:443","sni":"a.test"}`, 400, "need proto tcp"},
		{"bad sni", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","target":"10.0.2.15:443","sni":"a b"}`, 400, `sni \"a b\": want a DNS name`},
		{"host with port", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","target":"10.0.2.15:443","host":"a.test:80"}`, 400, "without a port"},
		{"loopback target", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","target":"127.0.0.1:443"}`, 400, "want a unicast address inside the fence"},
		{"rm sni by query", "DELETE", "/v1/forwards?fence=blue&proto=tcp&listen=127.0.0.1:8443&sni=lab-a.test", "", 200, `"sni": "lab-a.test"`},
		{"rm host", "DELETE", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","host":"LAB-A.test"}`, 200, `"host": "lab-a.test"`},
		{"rm host again", "DELETE", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8443","host":"lab-a.test"}`, 404, `fence \"blue\" has no forward on tcp 127.0.0.1:8443 host lab-a.test`},
		{"bad proto", "POST", "/v1/forwards", `{"fence":"blue","proto":"sctp","listen":"127.0.0.1:7","target":"10.0.2.15:80"}`, 400, `proto \"sctp\": want tcp or udp`},
		{"bad target", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:7","target":"10.0.2.15"}`, 400, `target \"10.0.2.15\": want IP:port`},
		{"unknown field", "POST", "/v1/forwards", `{"fence":"blue","x":1}`, 400, "unknown field"},
		{"not json", "POST", "/v1/forwards", `{`, 400, "body:"},
		{"no fence", "POST", "/v1/forwards", `{"proto":"tcp","listen":"127.0.0.1:7","target":"10.0.2.15:80"}`, 400, "missing fence"},
		{"unknown fence", "POST", "/v1/forwards", `{"fence":" nope ","proto":"tcp","listen":"127.0.0.1:7","target":"10.0.2.15:80"}`, 404, `no fence \"nope\"`},
		{"no gateway", "POST", "/v1/forwards", `{"fence":"plain","proto":"tcp","listen":"127.0.0.1:7","target":"10.0.2.15:80"}`, 409, `fence \"plain\" has no gateway (fences[].gateway.enabled is false)`},
		{"yielded", "POST", "/v1/forwards", `{"fence":"red","proto":"tcp","listen":"127.0.0.1:7","target":"10.0.3.15:80"}`, 409, `fence \"red\": its gateway is not served here: yielded to peer 02:fe:0c:01:00:02`},
		{"ls", "GET", "/v1/forwards", "", 200, `"listen": "127.0.0.1:40000"`},
		{"ls fence", "GET", "/v1/forwards?fence=0x1", "", 200, `"127.0.0.1:8080"`},
		{"ls yielded", "GET", "/v1/forwards?fence=red", "", 409, "yielded to peer"},
		{"rm by query", "DELETE", "/v1/forwards?fence=blue&proto=tcp&listen=127.0.0.1:8080", "", 200, `"fence": "blue"`},
		{"rm again by body", "DELETE", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:8080"}`, 404, `fence \"blue\" has no forward on tcp 127.0.0.1:8080`},
		{"gateways", "GET", "/v1/gateways", "", 200, `"name": "blue"`},
		{"gateways no gateway", "GET", "/v1/gateways?fence=plain", "", 409, "has no gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("got %d %s, want %d with %s", rec.Code, rec.Body, tc.code, tc.want)
			}
			if tc.code >= 400 {
				var e ErrorResponse
				if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
					t.Errorf("error body %s lacks an error message", rec.Body)
				}
			}
		})
	}
	// Only served gateways are listed, in fence ID order.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/gateways", nil))
	var gs []GatewayStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &gs); err != nil || len(gs) != 1 || gs[0].Fence != 1 || gs[0].Name != "blue" || len(gs[0].Forwards) != 2 {
		t.Errorf("gateways: %v %+v", err, gs)
	}
}

// FuzzParseForward: ParseForward never panics and what it accepts
// round-trips through the API's form.
func FuzzParseForward(f *testing.F) {
	f.Add("tcp", "127.0.0.1:2222", "10.0.2.15:22")
	f.Add("UDP", "[::1]:53", "[fd63:6f72:7261::15]:53")
	f.Add("tcp", "127.0.0.1:0", "10.0.2.15:0")
	f.Add("sctp", "x", "")
	f.Add("tcp", "[fe80::1%eth0]:22", "[fe80::2%eth0]:22")
	f.Fuzz(func(t *testing.T, proto, listen, target string) {
		s, err := ParseForward(Forward{Proto: proto, Listen: listen, Target: target, SNI: target, Host: listen}, true)
		if err == nil && s.SNI != "" && s.Host != "" {
			t.Fatalf("accepted both sni and host: %+v", s)
		}
		s, err = ParseForward(Forward{Proto: proto, Listen: listen, Target: target}, true)
		if err != nil {
			return
		}
		if s.Proto != "tcp" && s.Proto != "udp" || !s.Listen.IsValid() || !s.Target.IsValid() || s.Target.Port() == 0 {
			t.Fatalf("accepted %+v", s)
		}
		again, err := ParseForward(s.Forward(), true)
		if err != nil || again != s {
			t.Fatalf("round trip of %+v: got %+v, %v", s, again, err)
		}
		if r, err := ParseForward(Forward{Proto: proto, Listen: listen}, false); err != nil || r.Target != (netip.AddrPort{}) {
			t.Fatalf("without target: %+v, %v", r, err)
		}
	})
}
