package main

import (
	"path/filepath"
	"testing"
)

// Operators behind NAT, across real network namespaces: a public network
// with a member relay, and two private networks, each behind its own NAT
// (iptables MASQUERADE). The "public" addresses (11.15.0.0/24) exist only
// inside the namespaces the test makes; they are public-looking on purpose,
// because go-libp2p punches holes to public addresses only.
//
//	relay      11.15.0.1  --+
//	stranger   11.15.0.4  --+-- bridge (public)
//	nat-a      11.15.0.2  --+-- 10.1.0.1 -- a 10.1.0.2
//	nat-b      11.15.0.3  --+-- 10.2.0.1 -- b 10.2.0.2
//
// a and b cannot dial each other; both hold a reservation on the relay and
// reach each other through it. Then, with hole punching on, their relayed
// connection is upgraded to a direct one, and killing the relay leaves it
// working.

const (
	labRelayIP = "11.15.0.1"
	labPort    = "4001"
)

// relayLab is the network of the test, its keys and allowlists.
type relayLab struct {
	*netLab
	dir                        string
	relay, hostA, hostB, stray string // namespaces
	keyR, keyA, keyB, keyS     string
	idR, idA, idB, idS         string
	listR, listA, listB, listS string
}

func newRelayLab(t *testing.T) *relayLab {
	t.Helper()
	l := &relayLab{netLab: newNetLab(t), dir: t.TempDir()}
	l.relay = l.ns("relay")
	l.public(l.relay, labRelayIP+"/24")
	l.stray = l.ns("stranger")
	l.public(l.stray, "11.15.0.4/24")
	natA, natB := l.ns("nat-a"), l.ns("nat-b")
	l.hostA, l.hostB = l.ns("a"), l.ns("b")
	l.natted(natA, l.hostA, "11.15.0.2/24", "10.1.0.1/24", "10.1.0.2/24")
	l.natted(natB, l.hostB, "11.15.0.3/24", "10.2.0.1/24", "10.2.0.2/24")

	l.keyR, l.idR = newKey(t, l.dir, "relay.key")
	l.keyA, l.idA = newKey(t, l.dir, "a.key")
	l.keyB, l.idB = newKey(t, l.dir, "b.key")
	l.keyS, l.idS = newKey(t, l.dir, "stranger.key")
	l.listR, l.listA, l.listB, l.listS = l.path("relay.yaml"), l.path("a.yaml"), l.path("b.yaml"), l.path("stranger.yaml")
	writeNamedAllowlist(t, l.listR, l.idA, "alice", l.idB, "bob") // the stranger is not a member
	writeNamedAllowlist(t, l.listA, l.idR, "relay", l.idB, "bob")
	writeNamedAllowlist(t, l.listB, l.idR, "relay", l.idA, "alice")
	writeNamedAllowlist(t, l.listS, l.idR, "relay", l.idA, "alice", l.idB, "bob")
	return l
}

func (l *relayLab) path(name string) string { return filepath.Join(l.dir, name) }

func (l *relayLab) relayAddr() string {
	return "/ip4/" + labRelayIP + "/tcp/" + labPort + "/p2p/" + l.idR
}

// node starts p2pnode run in ns, listening on every address of the
// namespace, and waits for its listening event.
func (l *relayLab) node(ns, name, key, list string, extra ...string) *proc {
	l.t.Helper()
	args := append([]string{"run", "--json", "--ephemeral", "--key", key, "--allowlist", list,
		"--listen", "/ip4/0.0.0.0/tcp/" + labPort, "--api", l.path(name + ".sock")}, extra...)
	p := l.startIn(ns, name, l.dir, true, args...)
	p.expect(name+"'s listening event", match("listening"))
	return p
}

// startRelay runs the member relay.
func (l *relayLab) startRelay() *proc {
	return l.node(l.relay, "relay", l.keyR, l.listR, "--relay-enabled")
}

// member starts a or b behind its NAT with the relay as its static relay,
// and waits for its reservation there and for the other events in also
// (in any order).
func (l *relayLab) member(ns, name, key, list string, also []func(event) bool, extra ...string) *proc {
	l.t.Helper()
	p := l.node(ns, name, key, list, append([]string{"--relay", l.relayAddr(), "--auto-reply", "echo", "--log-level", "debug"}, extra...)...)
	p.expect(name+"'s reservation on the relay", append([]func(event) bool{match("relay_reservations", "count", 1)}, also...)...)
	return p
}

// exchange makes from request something of to, with no address (the
// relay's circuit is the only way known), and waits for the reply. With
// relayed, each side must also report a new connection through the relay.
func exchange(from, to *proc, idFrom, idTo, data string, id int, relayed ...bool) {
	from.t.Helper()
	exchangeThen(from, to, idFrom, idTo, data, id, len(relayed) > 0 && relayed[0], false)
}

// exchangeHangingUp is exchange over a new relayed connection, which both
// sides then report closed. The close may be printed before the exchange's
// outcome: run prints the node's connection events and the handler's
// outcomes from separate queues, in no fixed order between them.
func exchangeHangingUp(from, to *proc, idFrom, idTo, data string, id int) {
	from.t.Helper()
	exchangeThen(from, to, idFrom, idTo, data, id, true, true)
}

func exchangeThen(from, to *proc, idFrom, idTo, data string, id int, relayed, hangUp bool) {
	from.t.Helper()
	from.send(map[string]any{"cmd": "request", "peer": idTo, "data": data, "id": id})
	fromPreds := []func(event) bool{match("reply", "from", idTo, "data", data, "id", id),
		match("exchange", "peer", idTo, "id", id, "ok", true)}
	toPreds := []func(event) bool{match("request", "from", idFrom, "data", data)}
	if relayed {
		fromPreds = append(fromPreds, match("connected", "peer", idTo, "relayed", true))
		toPreds = append(toPreds, match("connected", "peer", idFrom, "relayed", true))
	}
	if hangUp {
		fromPreds = append(fromPreds, match("disconnected", "peer", idTo))
		toPreds = append(toPreds, match("disconnected", "peer", idFrom))
	}
	label := data
	if len(label) > 40 {
		label = label[:40] + "..."
	}
	from.expect("the reply to "+label+" (and its connection)", fromPreds...)
	to.expect("the request "+label+" (and its connection)", toPreds...)
}

func TestRelayAcrossNATs(t *testing.T) {
	t.Parallel()
	l := newRelayLab(t)
	r := l.startRelay()
	b := l.member(l.hostB, "b", l.keyB, l.listB, nil)
	a := l.member(l.hostA, "a", l.keyA, l.listA, nil)

	// a and b reach each other through the relay only, both ways, each
	// exchange on a connection of its own (the handler's default).
	// The next exchange must not find the last one's connection still
	// open: each side reports it closed first.
	exchangeHangingUp(a, b, l.idA, l.idB, "nonce commitments, round 1", 1)
	exchangeHangingUp(b, a, l.idB, l.idA, "partial signature", 2)
	// Messages past go-libp2p's default circuit limit (128 KiB) pass.
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	exchange(a, b, l.idA, l.idB, string(big), 3, true)

	// check: b cannot be dialed directly (its addresses are private, behind
	// its NAT), but through the relay, with a round trip time.
	chk := jsonOut(t, l.dir, "check", "--api", l.path("a.sock"), "--peer", l.idB, "--json")
	direct, _ := chk["direct"].(map[string]any)
	relays, _ := chk["relays"].([]any)
	if chk["reachable"] != true || direct["ok"] == true || len(relays) != 1 {
		t.Fatalf("check: %v", chk)
	}
	if via, _ := relays[0].(map[string]any); via["ok"] != true || via["relay"] != l.idR || via["rtt_ms"] == nil {
		t.Fatalf("check through the relay: %v", via)
	} else {
		t.Logf("check: direct %v; through the relay %v ms", direct["error"], via["rtt_ms"])
	}

	// The stranger: the relay refuses it at the handshake, so it holds no
	// reservation and opens no circuit to a member.
	s := l.node(l.stray, "stranger", l.keyS, l.listS, "--relay", l.relayAddr(), "--max-attempts", "1")
	r.expect("the relay's refusal of the stranger", match("refused", "peer", l.idS, "reason", "unknown_peer"))
	s.send(map[string]any{"cmd": "request", "peer": l.idB, "data": "let me in", "id": 9})
	s.expect("the stranger's failed request", match("exchange", "peer", l.idB, "id", 9, "ok", false))
	st := jsonOut(t, l.dir, "status", "--api", l.path("relay.sock"), "--json")
	relay, _ := st["relay"].(map[string]any)
	if relay["service"] != true || relay["served_reservations"] != float64(2) {
		t.Fatalf("relay status %v: want the service with the members' 2 reservations", relay)
	}
	// b still hears a, and only a.
	exchange(a, b, l.idA, l.idB, "after the stranger", 4)
}

// peerField is a field of peer id in a "peers --json" result.
func peerField(t *testing.T, peers map[string]any, id, field string) any {
	t.Helper()
	list, _ := peers["peers"].([]any)
	for _, p := range list {
		if m, _ := p.(map[string]any); m["peer"] == id {
			return m[field]
		}
	}
	t.Fatalf("peer %s not in %v", id, peers)
	return nil
}

// Not in parallel with other tests: the punch is a simultaneous open
// timed by the round trip measured over the relay, and it is asserted to
// succeed.
func TestHolePunchAcrossNATs(t *testing.T) {
	l := newRelayLab(t)
	r := l.startRelay()
	// Each learns its public address (its NAT's) from the relay; a
	// relayed connection accepted before that would not be punched.
	ready := []func(event) bool{match("hole_punch_ready")}
	punch := []string{"--hole-punching", "--keep-connection"}
	b := l.member(l.hostB, "b", l.keyB, l.listB, ready, punch...)
	a := l.member(l.hostA, "a", l.keyA, l.listA, ready, punch...)

	// The first exchange goes through the relay; b, which accepted the
	// relayed connection, punches a hole to a meanwhile.
	exchange(a, b, l.idA, l.idB, "before the punch", 1, true)
	b.expect("b's hole punch to a", match("hole_punch", "peer", l.idA, "ok", true))
	exchange(a, b, l.idA, l.idB, "after the punch", 2)
	peers := jsonOut(t, l.dir, "peers", "--api", l.path("a.sock"), "--json")
	if got := peerField(t, peers, l.idB, "connection"); got != "both" && got != "direct" {
		t.Fatalf("a's connection to b is %q after the punch, want direct (beside the relayed one)", got)
	}

	// Killing the relay leaves the direct connection working.
	r.kill()
	exchange(a, b, l.idA, l.idB, "without the relay", 3)
	exchange(b, a, l.idB, l.idA, "and back", 4)
	peers = jsonOut(t, l.dir, "peers", "--api", l.path("a.sock"), "--json")
	if got := peerField(t, peers, l.idB, "connection"); got != "direct" {
		t.Fatalf("a's connection to b is %q after the relay died, want direct", got)
	}
	st := jsonOut(t, l.dir, "status", "--api", l.path("b.sock"), "--json")
	if relay, _ := st["relay"].(map[string]any); relay["hole_punch_ok"] != float64(1) {
		t.Fatalf("b's relay status %v: want one successful hole punch", relay)
	}
}
