package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Two members bound to IPs (their NATs' public addresses) with the relay
// permission in the membership document meet through the relay, and a
// new version travels between them over that relayed connection. The
// document could not carry the permission ("membership init" dropped an
// allowlist entry's relay: true), so each refused the other over the relay
// (refused, reason relay_not_allowed) and check said "gater rejected
// connection".
func TestRelayMembershipIPBound(t *testing.T) {
	t.Parallel()
	l := newRelayLab(t)
	l.startRelay() // on its YAML allowlist: a and b, from anywhere

	list := l.path("genesis.yaml")
	yaml := "peers:\n" +
		"  - id: " + l.idR + "\n    name: relay\n" +
		"  - id: " + l.idA + "\n    name: alice\n    addrs: [11.15.0.2]\n    relay: true\n" +
		"  - id: " + l.idB + "\n    name: bob\n    addrs: [11.15.0.3]\n    relay: true\n"
	if err := os.WriteFile(list, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	v1 := l.path("membership-1.pb")
	mustRun(t, l.dir, "membership", "init", "--allowlist", list, "--threshold", "1", "--out", v1)

	member := func(ns, name, key string) *proc {
		// --keep-connection: the relayed connection of the exchange
		// carries the new version afterwards.
		p := l.startIn(ns, name, l.dir, true, "run", "--json", "--ephemeral", "--key", key, "--membership", v1,
			"--listen", "/ip4/0.0.0.0/tcp/"+labPort, "--api", l.path(name+".sock"),
			"--relay", l.relayAddr(), "--auto-reply", "echo", "--keep-connection")
		p.expect(name+"'s listening and its reservation on the relay", match("listening", "membership_version", "1"),
			match("relay_reservations", "count", 1))
		return p
	}
	b := member(l.hostB, "b", l.keyB)
	a := member(l.hostA, "a", l.keyA)
	exchange(a, b, l.idA, l.idB, "over the relay, bound to our IPs", 1, true)

	v2 := l.path("membership-2.pb")
	mustRun(t, l.dir, "membership", "propose", "--current", v1, "--out", v2, "--edit", l.idB+":role=verifier")
	mustRun(t, l.dir, "membership", "sign", v2, "--key", l.keyA)
	mustRun(t, l.dir, "membership", "submit", v2, "--api", filepath.Join(l.dir, "a.sock"))
	b.expect("b's membership_applied from a, over the relay", match("membership_applied", "version", 2, "from", l.idA))
	stopAll(t, a, b)
}
