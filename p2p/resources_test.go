package p2p

import (
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// These tests drive the resource manager directly: the limits are what
// docs/security.md says they are, including the ones the loopback-only
// integration tests cannot reach (per-IP limits do not apply to loopback).

func newTestRM(t *testing.T) network.ResourceManager {
	t.Helper()
	rm, err := newResourceManager(Config{StreamsPerPeer: DefaultStreamsPerPeer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rm.Close() })
	return rm
}

// openConn opens an inbound connection scope from ip and, when p is set,
// attaches it to p as an admitted connection would be.
func openConn(t *testing.T, rm network.ResourceManager, ip string, port int, p peer.ID) error {
	t.Helper()
	scope, err := rm.OpenConnection(network.DirInbound, true, ma.StringCast(fmt.Sprintf("/ip4/%s/tcp/%d", ip, port)))
	if err != nil {
		return err
	}
	t.Cleanup(scope.Done)
	if p == "" {
		return nil
	}
	return scope.SetPeer(p)
}

func testPeer(i int) peer.ID { return peer.ID(fmt.Sprintf("peer-%d", i)) }

func TestResourceLimitConnsPerIP(t *testing.T) {
	rm := newTestRM(t)
	for i := range limitConnsPerIP {
		if err := openConn(t, rm, "10.0.0.1", 1000+i, testPeer(i)); err != nil {
			t.Fatalf("connection %d from one IP: %v", i+1, err)
		}
	}
	if openConn(t, rm, "10.0.0.1", 2000, testPeer(100)) == nil {
		t.Fatalf("connection %d from one IP admitted", limitConnsPerIP+1)
	}
	if err := openConn(t, rm, "10.0.0.2", 1000, testPeer(101)); err != nil {
		t.Fatalf("another IP: %v", err)
	}
	// Loopback is exempt: many local nodes share 127.0.0.1.
	for i := range 4 * limitConnsPerIP {
		if err := openConn(t, rm, "127.0.0.1", 1000+i, testPeer(200+i)); err != nil {
			t.Fatalf("loopback connection %d: %v", i+1, err)
		}
	}
}

func TestResourceLimitConnsPerPeer(t *testing.T) {
	rm := newTestRM(t)
	p := testPeer(1)
	for i := range limitPeerConns {
		if err := openConn(t, rm, fmt.Sprintf("10.0.1.%d", i+1), 1000, p); err != nil {
			t.Fatalf("connection %d of one peer: %v", i+1, err)
		}
	}
	if openConn(t, rm, "10.0.1.100", 1000, p) == nil {
		t.Fatalf("connection %d of one peer admitted", limitPeerConns+1)
	}
}

// TestResourceLimitTransient: connections that never become a peer's (a
// stranger's, still in the handshake) are few.
func TestResourceLimitTransient(t *testing.T) {
	rm := newTestRM(t)
	for i := range limitTransientConns {
		if err := openConn(t, rm, fmt.Sprintf("10.0.2.%d", i+1), 1000, ""); err != nil {
			t.Fatalf("handshake %d: %v", i+1, err)
		}
	}
	if openConn(t, rm, "10.0.3.1", 1000, "") == nil {
		t.Fatalf("handshake %d admitted", limitTransientConns+1)
	}
}

// TestResourceLimitMessageStreams: the resource manager admits more message
// streams than StreamsPerPeer, so that the node sees (and charges) a flood's
// extra streams, but not without bound.
func TestResourceLimitMessageStreams(t *testing.T) {
	rm := newTestRM(t)
	p := testPeer(1)
	if err := openConn(t, rm, "10.0.4.1", 1000, p); err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for range 4 * DefaultStreamsPerPeer {
		s, err := rm.OpenStream(p, network.DirInbound)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Done)
		if s.SetProtocol(ProtocolID) != nil {
			break
		}
		admitted++
	}
	if admitted <= DefaultStreamsPerPeer || admitted >= 4*DefaultStreamsPerPeer {
		t.Fatalf("%d inbound message streams admitted, want more than %d and a limit", admitted, DefaultStreamsPerPeer)
	}
}
