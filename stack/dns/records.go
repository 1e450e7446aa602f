package dns

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultRecordTTL is the TTL of a static record whose TTL is 0.
const DefaultRecordTTL = 60 * time.Second

// MaxRecordTTL is the largest TTL a record may carry (RFC 2181 section 8:
// 2^31 - 1 seconds).
const MaxRecordTTL = math.MaxInt32 * time.Second

// maxTXTString is the longest character-string of a TXT record (RFC 1035
// section 3.3); longer texts are split into several strings of one record.
const maxTXTString = 255

// ErrInvalidRecord wraps every error of [Record.Validate] and
// [ValidateRecords].
var ErrInvalidRecord = errors.New("dns: invalid record")

// RecordTypes are the record types a [Record] may have.
var RecordTypes = []string{"A", "AAAA", "CNAME", "TXT", "PTR", "SRV", "MX"}

// Record is one static resource record set of a fence's zone
// (gateway.dns.records): every Data entry becomes one resource record of
// Type at Name.
type Record struct {
	// Name is the owner. A single label ("db") is a name under the
	// server's domain (db.corral.internal); any other name is absolute,
	// with or without the trailing dot ("api.lab.test").
	Name string
	// Type is one of RecordTypes, case-insensitive.
	Type string
	// Data holds one entry per resource record:
	//   A, AAAA: an address of that family;
	//   CNAME: the target name (exactly one entry);
	//   PTR: a name;
	//   TXT: the text (split into 255-byte strings when longer);
	//   SRV: "priority weight port target";
	//   MX: "preference exchange".
	// Names in data follow the rule of Name: one label is under the domain.
	Data []string
	// TTL of the answers; 0 means DefaultRecordTTL.
	TTL time.Duration
}

// Validate checks one record on its own (types, data, names, TTL).
func (r Record) Validate() error {
	if _, err := r.rrs(DefaultDomain + "."); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	return nil
}

// DefaultDomain is the domain [New] uses when Config.Domain is "".
const DefaultDomain = "corral.internal"

// ValidateRecords checks records as a set under domain ("" means
// DefaultDomain): each record, and that a name holding a CNAME holds
// nothing else (RFC 1034 section 3.6.2).
func ValidateRecords(domain string, records []Record) error {
	_, err := buildRecords(fqdn(domainOrDefault(domain)), records)
	return err
}

func domainOrDefault(d string) string {
	d = strings.Trim(strings.ToLower(d), ".")
	if d == "" {
		return DefaultDomain
	}
	return d
}

// buildRecords turns records into resource records by owner (lower-case,
// fully qualified).
func buildRecords(domain string, records []Record) (map[string][]mdns.RR, error) {
	out := make(map[string][]mdns.RR)
	for i, r := range records {
		rrs, err := r.rrs(domain)
		if err != nil {
			return nil, fmt.Errorf("%w: records[%d]: %v", ErrInvalidRecord, i, err)
		}
		owner := rrs[0].Header().Name
		prev := out[owner]
		for _, p := range prev {
			pt, nt := p.Header().Rrtype, rrs[0].Header().Rrtype
			if pt == mdns.TypeCNAME || nt == mdns.TypeCNAME {
				return nil, fmt.Errorf("%w: records[%d]: %s: a name with a CNAME can hold no other record", ErrInvalidRecord, i, strings.TrimSuffix(owner, "."))
			}
		}
		out[owner] = append(prev, rrs...)
	}
	return out, nil
}

// qualify makes a name of a record absolute: a single label goes under
// domain (fully qualified, with the dot); anything else is taken as
// absolute. The result is lower case with a trailing dot.
func qualify(name, domain string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || n == "." {
		return "", fmt.Errorf("missing name")
	}
	if !strings.Contains(n, ".") {
		n += "." + domain
	}
	n = fqdn(n)
	// IsDomainName also refuses labels over 63 bytes and names over 255.
	if _, ok := mdns.IsDomainName(n); !ok || strings.Contains(n, "..") || strings.ContainsAny(n, " \t*\\@") {
		return "", fmt.Errorf("%q: not a domain name", name)
	}
	return n, nil
}

func fqdn(n string) string {
	if strings.HasSuffix(n, ".") {
		return n
	}
	return n + "."
}

// rrs builds the resource records of r under domain (fully qualified).
func (r Record) rrs(domain string) ([]mdns.RR, error) {
	bad := fmt.Errorf
	owner, err := qualify(r.Name, domain)
	if err != nil {
		return nil, bad("name: %v", err)
	}
	typ := strings.ToUpper(strings.TrimSpace(r.Type))
	rrtype, ok := mdns.StringToType[typ]
	if !ok || !supportedType(typ) {
		return nil, bad("type %q: want one of %s", r.Type, strings.Join(RecordTypes, ", "))
	}
	if r.TTL < 0 || r.TTL > MaxRecordTTL || r.TTL%time.Second != 0 {
		return nil, bad("ttl %v: want whole seconds up to %v", r.TTL, MaxRecordTTL)
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultRecordTTL
	}
	if len(r.Data) == 0 {
		return nil, bad("data: missing")
	}
	if rrtype == mdns.TypeCNAME && len(r.Data) != 1 {
		return nil, bad("data: a CNAME has exactly one target, not %d", len(r.Data))
	}
	hdr := mdns.RR_Header{Name: owner, Rrtype: rrtype, Class: mdns.ClassINET, Ttl: uint32(ttl / time.Second)}
	var out []mdns.RR
	for k, d := range r.Data {
		rr, err := parseData(hdr, d, domain)
		if err != nil {
			return nil, bad("data[%d] %q: %v", k, d, err)
		}
		out = append(out, rr)
	}
	return out, nil
}

func supportedType(t string) bool {
	for _, s := range RecordTypes {
		if s == t {
			return true
		}
	}
	return false
}

// parseData builds one resource record of hdr's type from its data.
func parseData(hdr mdns.RR_Header, d, domain string) (mdns.RR, error) {
	switch hdr.Rrtype {
	case mdns.TypeA, mdns.TypeAAAA:
		ip, err := netip.ParseAddr(strings.TrimSpace(d))
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("not an IP address")
		}
		if hdr.Rrtype == mdns.TypeA {
			if !ip.Unmap().Is4() {
				return nil, fmt.Errorf("not an IPv4 address")
			}
			return &mdns.A{Hdr: hdr, A: ip.Unmap().AsSlice()}, nil
		}
		if !ip.Is6() || ip.Is4In6() {
			return nil, fmt.Errorf("not an IPv6 address")
		}
		return &mdns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()}, nil
	case mdns.TypeCNAME, mdns.TypePTR:
		n, err := qualify(d, strings.TrimSuffix(domain, "."))
		if err != nil {
			return nil, err
		}
		if hdr.Rrtype == mdns.TypeCNAME {
			if n == hdr.Name {
				return nil, fmt.Errorf("a CNAME to itself")
			}
			return &mdns.CNAME{Hdr: hdr, Target: n}, nil
		}
		return &mdns.PTR{Hdr: hdr, Ptr: n}, nil
	case mdns.TypeTXT:
		if len(d) > 4096 {
			return nil, fmt.Errorf("text longer than 4096 bytes")
		}
		var txt []string
		for len(d) > maxTXTString {
			txt = append(txt, d[:maxTXTString])
			d = d[maxTXTString:]
		}
		return &mdns.TXT{Hdr: hdr, Txt: append(txt, d)}, nil
	case mdns.TypeSRV:
		f := strings.Fields(d)
		if len(f) != 4 {
			return nil, fmt.Errorf(`want "priority weight port target"`)
		}
		var v [3]uint16
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%q: want a number 0..65535", f[i])
			}
			v[i] = uint16(n)
		}
		t, err := qualify(f[3], strings.TrimSuffix(domain, "."))
		if err != nil {
			return nil, err
		}
		return &mdns.SRV{Hdr: hdr, Priority: v[0], Weight: v[1], Port: v[2], Target: t}, nil
	case mdns.TypeMX:
		f := strings.Fields(d)
		if len(f) != 2 {
			return nil, fmt.Errorf(`want "preference exchange"`)
		}
		p, err := strconv.ParseUint(f[0], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%q: want a number 0..65535", f[0])
		}
		x, err := qualify(f[1], strings.TrimSuffix(domain, "."))
		if err != nil {
			return nil, err
		}
		return &mdns.MX{Hdr: hdr, Preference: uint16(p), Mx: x}, nil
	}
	return nil, fmt.Errorf("unsupported type")
}
