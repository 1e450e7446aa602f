package admin

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type fakeAttachments []FenceAttach

func (f fakeAttachments) Attachments() []FenceAttach { return f }

// attachClient serves s on a unix socket and returns a client of it.
func attachClient(t *testing.T, s *Server) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "corral-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "a.sock")
	ln, err := Listen(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return NewClient(path)
}

func TestAttach(t *testing.T) {
	blue := FenceAttach{Fence: 1, Name: "blue", Addrs: []AttachAddr{{
		Addr:  "unix:///run/blue.sock",
		Lines: []AttachLine{{Client: "qemu", Line: "-netdev stream,id=n0,server=off,addr.type=unix,addr.path=/run/blue.sock", Note: "n"}},
	}}}
	s, err := New(Config{Switch: richSwitch(), Attachments: fakeAttachments{blue}})
	if err != nil {
		t.Fatal(err)
	}
	c := attachClient(t, s)
	ctx := context.Background()
	for _, tc := range []struct {
		fence string
		want  []FenceAttach
	}{
		{"", []FenceAttach{blue}},
		{"blue", []FenceAttach{blue}},
		{"1", []FenceAttach{blue}},
		// A fence without addresses is listed with none.
		{"0x20", []FenceAttach{{Fence: 0x20, Name: "red", Addrs: []AttachAddr{}}}},
	} {
		got, err := c.Attach(ctx, tc.fence)
		if err != nil {
			t.Fatalf("fence %q: %v", tc.fence, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("fence %q: got %+v, want %+v", tc.fence, got, tc.want)
		}
	}
	if _, err := c.Attach(ctx, "green"); err == nil || !strings.Contains(err.Error(), `no fence "green"`) {
		t.Errorf("unknown fence: got %v", err)
	}

	s, err = New(Config{Switch: richSwitch()})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := attachClient(t, s).Attach(ctx, ""); err != nil || got == nil || len(got) != 0 {
		t.Errorf("without Attachments: got %#v, %v; want an empty list", got, err)
	}
}
