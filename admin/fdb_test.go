package admin

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
	"github.com/corralnet/corral/uplink"
)

// pagingServer is a server over fences 1 "a" (n entries, local), 5 "e"
// (none) and 9 "i" (3 entries on remote host 02:fe:0c:01:00:02, which
// the uplink names "hostb").
func pagingServer(t *testing.T, n int) *Server {
	t.Helper()
	f := &fakeSwitch{
		st:  vswitch.Status{Fences: []vswitch.FenceStatus{{ID: 1, Name: "a"}, {ID: 5, Name: "e"}, {ID: 9, Name: "i"}}},
		fdb: map[uint32][]vswitch.FDBEntry{},
	}
	for i := 0; i < n; i++ {
		f.fdb[1] = append(f.fdb[1], vswitch.FDBEntry{MAC: fmt.Sprintf("0a:00:00:00:%02x:%02x", i>>8, i&0xff), Port: 7, PortName: "p"})
	}
	for i := 0; i < 3; i++ {
		f.fdb[9] = append(f.fdb[9], vswitch.FDBEntry{MAC: fmt.Sprintf("0e:00:00:00:00:%02x", i), Host: "02:fe:0c:01:00:02"})
	}
	up := fakeUplink{st: uplink.Status{Peers: []uplink.PeerStatus{{OuterMAC: "02:fe:0c:01:00:02", Name: "hostb"}}}}
	s, err := New(Config{Switch: f, Uplink: up})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFDBPaging: GET /v1/fdb answers pages of at most limit entries (by
// fence ID, then MAC) with the cursor of the next; following the cursors
// lists every entry once, for one fence or all, whatever the limit.
func TestFDBPaging(t *testing.T) {
	const n = 2500
	c := serveClient(t, pagingServer(t, n))
	ctx := context.Background()

	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("a 0a:00:00:00:%02x:%02x", i>>8, i&0xff))
	}
	for i := 0; i < 3; i++ {
		want = append(want, fmt.Sprintf("i 0e:00:00:00:00:%02x hostb", i))
	}
	for _, tc := range []struct {
		fence string
		limit int
		want  []string
		pages int
	}{
		{"", 0, want, 3},            // default 1000: 1000, 1000, 500 of a + e + 3 of i
		{"", 1000, want, 3},         //
		{"", 2500, want, 2},         // a fills the first page exactly: the next starts at e
		{"", 7, want, 358},          // 2503 / 7, rounded up
		{"", 10000, want, 1},        //
		{"a", 1000, want[:n], 3},    //
		{"1", 2499, want[:n], 2},    //
		{"i", 2, want[n:], 2},       //
		{"e", 5, nil, 1},            //
		{"0x9", 10000, want[n:], 1}, //
	} {
		t.Run(fmt.Sprintf("fence=%s limit=%d", tc.fence, tc.limit), func(t *testing.T) {
			var got []string
			pages := 0
			err := c.FDBPages(ctx, tc.fence, tc.limit, func(p FDBPage) error {
				pages++
				entries := 0
				for _, f := range p.Fences {
					for _, e := range f.Entries {
						got = append(got, strings.TrimSpace(f.Name+" "+e.MAC+" "+e.HostName))
						entries++
					}
				}
				if lim := tc.limit; lim == 0 && entries > DefaultFDBLimit || lim > 0 && entries > lim {
					return fmt.Errorf("page %d: %d entries", pages, entries)
				}
				if p.Next != "" && tc.fence != "" && strings.Contains(p.Next, "/") {
					return fmt.Errorf("page %d: next %q with fence=", pages, p.Next)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || pages != tc.pages {
				t.Errorf("%d pages (want %d), %d entries (want %d)", pages, tc.pages, len(got), len(tc.want))
			}
		})
	}
	// The client's FDB merges the pages into one table per fence.
	all, err := c.FDB(ctx, "")
	if err != nil || len(all) != 3 || len(all[0].Entries) != n || len(all[1].Entries) != 0 || len(all[2].Entries) != 3 {
		t.Errorf("FDB: %d fences, %v", len(all), err)
	}
	// A cursor of a fence that has gone resumes at the next fence.
	p, err := c.FDBPage(ctx, "", 10, "4/0a:00:00:00:00:01")
	if err != nil || len(p.Fences) == 0 || p.Fences[0].Name != "e" {
		t.Errorf("after a gone fence: %+v, %v", p, err)
	}
	for _, q := range []string{"limit=0", "limit=10001", "limit=x", "after=zz", "after=1", "fence=a&after=1/0a:00:00:00:00:01"} {
		if err := c.call(ctx, "GET", "/v1/fdb?"+q, nil, &p); err == nil || !strings.Contains(err.Error(), "admin: ") {
			t.Errorf("%s: %v, want a 400", q, err)
		}
	}
}
