package admin

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/events"
)

// TestEventsStream: GET /v1/events streams the bus's events as JSON lines,
// filtered by kind; a reader whose buffer overflowed gets events_lost.
func TestEventsStream(t *testing.T) {
	bus := events.New()
	s, err := New(Config{Switch: newFake(), Events: bus})
	if err != nil {
		t.Fatal(err)
	}
	c := serveClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan events.Event, 100)
	errc := make(chan error, 1)
	go func() {
		errc <- c.Events(ctx, []string{"port_attach", "lease_granted"}, func(e events.Event) error {
			got <- e
			if e.Kind == events.LeaseGranted {
				return io.EOF
			}
			return nil
		})
	}()
	// Publish until the subscription is there.
	deadline := time.Now().Add(30 * time.Second)
	for bus.Subscribers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no subscriber")
		}
		time.Sleep(time.Millisecond)
	}
	bus.Publish(events.Event{Kind: events.PortDetach, Port: "filtered out"})
	bus.Publish(events.Event{Kind: events.PortAttach, Port: "p1", Fence: 1, FenceName: "a"})
	bus.Publish(events.Event{Kind: events.LeaseGranted, MAC: "52:54:00:00:00:01", IP: "10.0.2.15"})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	close(got)
	var kinds []string
	for e := range got {
		kinds = append(kinds, string(e.Kind)+":"+e.Port+e.IP)
	}
	if strings.Join(kinds, " ") != "port_attach:p1 lease_granted:10.0.2.15" {
		t.Fatalf("got %v", kinds)
	}
}

func TestEventsNoBusAndReload(t *testing.T) {
	s, err := New(Config{Switch: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	c := serveClient(t, s)
	var se *StatusError
	if err := c.Events(context.Background(), nil, func(events.Event) error { return nil }); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("events without a bus: %v", err)
	}
	if _, err := c.Reload(context.Background()); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("reload without a reloader: %v", err)
	}

	s2, _ := New(Config{Switch: newFake(), Reload: func(context.Context) (ReloadResponse, error) {
		return ReloadResponse{}, errors.New("reload: host.name cannot change at run time")
	}})
	if _, err := serveClient(t, s2).Reload(context.Background()); !errors.As(err, &se) || se.Code != 400 || !strings.Contains(err.Error(), "host.name") {
		t.Errorf("refused reload: %v", err)
	}
	s3, _ := New(Config{Switch: newFake(), Reload: func(context.Context) (ReloadResponse, error) {
		return ReloadResponse{Changes: []string{"fence c (3) added"}}, nil
	}})
	if r, err := serveClient(t, s3).Reload(context.Background()); err != nil || len(r.Changes) != 1 {
		t.Errorf("reload: %+v, %v", r, err)
	}
}
