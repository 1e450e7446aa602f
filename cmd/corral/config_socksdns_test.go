package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestSocksAndDNSRecordsConfig: gateway.socks and gateway.dns.records
// (issue 11), wired and checked with the key at fault.
func TestSocksAndDNSRecordsConfig(t *testing.T) {
	gw := func(s string) string { return "fences: [{name: a, id: 1, gateway: {enabled: true, " + s + "}}]\n" }
	bad := []struct{ name, yaml, want string }{
		{"socks without host", gw(`socks: ":1080"`), `config: fences[0].gateway.socks: ":1080": no host would listen on every interface`},
		{"socks hostname", gw(`socks: "localhost:1080"`), `config: fences[0].gateway.socks: "localhost:1080": want IP:port`},
		{"socks garbage", gw(`socks: "x"`), `config: fences[0].gateway.socks: "x"`},
		{"socks on a forward", gw(`socks: "127.0.0.1:2222", forwards: [{listen: "127.0.0.1:2222", target: "10.0.2.15:22"}]`),
			"config: fences[0].gateway.forwards[0].listen: tcp 127.0.0.1:2222 already used by fences[0].gateway.socks"},
		{"socks on a tcp listener", `fences:
  - {name: a, id: 1, listen: ["tcp://127.0.0.1:7400"]}
  - {name: b, id: 2, gateway: {enabled: true, socks: "127.0.0.1:7400"}}
`, `config: fences[1].gateway.socks: "127.0.0.1:7400" already used by fences[0].listen[0]`},
		{"two fences one socks", `fences:
  - {name: a, id: 1, gateway: {enabled: true, socks: "127.0.0.1:1080"}}
  - {name: b, id: 2, gateway: {enabled: true, socks: "127.0.0.1:1080"}}
`, `config: fences[1].gateway.socks: "127.0.0.1:1080" already used by fences[0].gateway.socks`},
		{"record type", gw(`dns: {records: [{name: db, type: NS, data: [x]}]}`), `config: fences[0].gateway.dns.records[0]: type "NS": want one of A, AAAA, CNAME, TXT`},
		{"record data", gw(`dns: {records: [{name: db, type: A, data: ["10.0.2.50", "fd00::1"]}]}`),
			`config: fences[0].gateway.dns.records[0]: data[1] "fd00::1": not an IPv4 address`},
		{"record name", gw(`dns: {records: [{name: "a b", type: A, data: ["10.0.2.50"]}]}`), `config: fences[0].gateway.dns.records[0]: name: "a b": not a domain name`},
		{"record ttl", gw(`dns: {records: [{name: db, type: A, data: ["10.0.2.50"], ttl: soon}]}`), `config: fences[0].gateway.dns.records[0].ttl: "soon"`},
		{"record no data", gw(`dns: {records: [{name: db, type: A}]}`), `config: fences[0].gateway.dns.records[0]: data: missing`},
		{"cname beside a", gw(`dns: {records: [{name: db, type: A, data: ["10.0.2.50"]}, {name: db, type: CNAME, data: [www]}]}`),
			`config: fences[0].gateway.dns.records: records[1]: db.corral.internal: a name with a CNAME can hold no other record`},
		{"record unknown key", gw(`dns: {records: [{name: db, type: A, value: x}]}`), `config: fences[0].gateway.dns.records[0].value: unknown key`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !isConfigError(err) {
				t.Fatalf("got %v, want a ConfigError containing %q", err, tc.want)
			}
		})
	}

	c, err := parse(t, `fences:
  - name: a
    id: 1
    gateway:
      enabled: true
      domain: lab.test
      socks: "1080"
      dns:
        records:
          - {name: db, type: a, data: ["10.0.2.50", "10.0.2.51"], ttl: 300}
          - {name: www, type: CNAME, data: [db]}
          - {name: db, type: TXT, data: ["v=1"], ttl: 5m}
  - {name: b, id: 2, gateway: {enabled: true, socks: "[::1]:1081"}}
  - {name: c, id: 3, gateway: {enabled: true, socks: "192.0.2.1:1082"}}
`)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Fences[0].Gateway
	if g.Socks != netip.MustParseAddrPort("127.0.0.1:1080") {
		t.Errorf("bare port: socks %v, want 127.0.0.1:1080", g.Socks)
	}
	if s := c.Fences[1].Gateway.Socks; s != netip.MustParseAddrPort("[::1]:1081") {
		t.Errorf("socks %v", s)
	}
	if s := c.Fences[2].Gateway.Socks; s != netip.MustParseAddrPort("192.0.2.1:1082") {
		t.Errorf("an explicit non-loopback address: socks %v", s)
	}
	if len(g.DNSRecords) != 3 || g.DNSRecords[0].TTL != 300*time.Second || g.DNSRecords[2].TTL != 5*time.Minute ||
		g.DNSRecords[1].Data[0] != "db" || g.DNSRecords[0].Type != "a" {
		t.Errorf("records %+v", g.DNSRecords)
	}
}
