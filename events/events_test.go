package events

import (
	"sync"
	"testing"
	"time"
)

func TestBusDelivers(t *testing.T) {
	b := New()
	b.Publish(Event{Kind: PortAttach}) // nobody listens: dropped silently
	if b.Published() != 0 {
		t.Fatalf("published %d without subscribers", b.Published())
	}
	s1, s2 := b.Subscribe(4), b.Subscribe(4)
	defer s1.Close()
	b.Publish(Event{Kind: PortAttach, Port: "p"})
	for _, s := range []*Sub{s1, s2} {
		select {
		case e := <-s.C:
			if e.Kind != PortAttach || e.Port != "p" || e.Time.IsZero() {
				t.Fatalf("got %+v", e)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
	}
	s2.Close()
	s2.Close()
	if n := b.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers after Close, want 1", n)
	}
	b.Publish(Event{Kind: PortDetach})
	select {
	case e := <-s2.C:
		t.Fatalf("closed subscriber got %+v", e)
	default:
	}
}

// A slow subscriber loses events, counted; Publish never blocks and the
// other subscribers get everything.
func TestBusSlowSubscriber(t *testing.T) {
	b := New()
	slow := b.Subscribe(2)
	fast := b.Subscribe(1000)
	defer slow.Close()
	defer fast.Close()
	done := make(chan struct{})
	go func() {
		for i := 0; i < 500; i++ {
			b.Publish(Event{Kind: MACMove})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	if got := len(fast.C); got != 500 {
		t.Fatalf("fast subscriber got %d, want 500", got)
	}
	if slow.Dropped() != 498 || len(slow.C) != 2 {
		t.Fatalf("slow subscriber: %d buffered, %d dropped; want 2 and 498", len(slow.C), slow.Dropped())
	}
}

func TestBusConcurrent(t *testing.T) {
	b := New()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				b.Publish(Event{Kind: PeerUp})
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				s := b.Subscribe(1)
				s.Close()
			}
		}()
	}
	wg.Wait()
	if b.Subscribers() != 0 {
		t.Fatalf("%d subscribers left", b.Subscribers())
	}
}

func TestNilBus(t *testing.T) {
	var b *Bus
	if b.Active() {
		t.Fatal("nil bus active")
	}
	b.Publish(Event{Kind: PortAttach})
}

func TestPublishNoSubscriberAllocs(t *testing.T) {
	b := New()
	if n := testing.AllocsPerRun(100, func() { b.Publish(Event{Kind: MACMove}) }); n != 0 {
		t.Fatalf("%v allocations per Publish without subscribers", n)
	}
}
