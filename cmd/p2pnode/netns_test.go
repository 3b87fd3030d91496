package main

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A network laboratory of Linux network namespaces for the relay tests: a
// "public" network (a bridge in a namespace of its own) and private
// networks behind NATs made with iptables MASQUERADE. Everything lives in
// namespaces the test creates, so the addresses used touch no other
// network, and deleting the namespaces at cleanup deletes their links and
// iptables rules with them. Needs root, iproute2 and iptables (installed
// by .ci/run and "make netns-deps").

// netLab is one test's set of namespaces.
type netLab struct {
	t      *testing.T
	prefix string
	pub    string // the namespace of the public bridge
	next   int    // numbers the bridge ports
}

// requireNetns fails the test in CI (env CI set) and skips it elsewhere
// when the machine cannot build a lab: not root, or ip or iptables missing,
// or network namespaces not permitted.
func requireNetns(t *testing.T, prefix string) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "not root"
	case !onPath("ip"):
		why = "ip (iproute2) not installed"
	case !onPath("iptables"):
		why = "iptables not installed"
	default:
		probe := prefix + "probe"
		if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
			why = fmt.Sprintf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
		} else {
			_ = exec.Command("ip", "netns", "del", probe).Run()
		}
	}
	if why == "" {
		return
	}
	msg := "network-namespace relay test cannot run: " + why + " (it needs root, iproute2 and iptables: make netns-deps)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must run it")
	}
	t.Skip(msg)
}

func onPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// newNetLab makes the public network's namespace and bridge.
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	// Of this test: labs of tests running in parallel need names of
	// their own (the links and addresses inside are the namespaces' own).
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	prefix := fmt.Sprintf("p2pr%d-%08x-", os.Getpid(), h.Sum32())
	requireNetns(t, prefix)
	l := &netLab{t: t, prefix: prefix}
	l.pub = l.ns("pub")
	l.ip("-n", l.pub, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.pub, "link", "set", "br0", "up")
	return l
}

// ns creates a namespace called role (prefixed), with loopback up, deleted
// when the test ends: its links, addresses and iptables rules go with it.
func (l *netLab) ns(role string) string {
	l.t.Helper()
	name := l.prefix + role
	l.ip("netns", "add", name)
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	l.ip("-n", name, "link", "set", "lo", "up")
	return name
}

// public gives ns an interface "wan" on the public bridge with addr (a
// CIDR).
func (l *netLab) public(ns, addr string) {
	l.t.Helper()
	l.next++
	port := fmt.Sprintf("p%d", l.next)
	l.ip("-n", l.pub, "link", "add", port, "type", "veth", "peer", "name", "wan", "netns", ns)
	l.ip("-n", l.pub, "link", "set", port, "master", "br0")
	l.ip("-n", l.pub, "link", "set", port, "up")
	l.ip("-n", ns, "addr", "add", addr, "dev", "wan")
	l.ip("-n", ns, "link", "set", "wan", "up")
}

// natted makes a private network behind a NAT: namespace nat (public
// address wanAddr) routes and masquerades for namespace host (hostAddr,
// default route via gwAddr). Like a home router, the NAT drops connections
// it did not see leave rather than answering them.
func (l *netLab) natted(nat, host, wanAddr, gwAddr, hostAddr string) {
	l.t.Helper()
	l.public(nat, wanAddr)
	l.ip("-n", nat, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", host)
	l.ip("-n", nat, "addr", "add", gwAddr, "dev", "lan")
	l.ip("-n", nat, "link", "set", "lan", "up")
	l.ip("-n", host, "addr", "add", hostAddr, "dev", "eth0")
	l.ip("-n", host, "link", "set", "eth0", "up")
	l.ip("-n", host, "route", "add", "default", "via", strings.Split(gwAddr, "/")[0])
	l.exec(nat, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	l.exec(nat, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	l.exec(nat, "iptables", "-A", "INPUT", "-i", "wan", "-p", "tcp", "--syn", "-j", "DROP")
	l.exec(nat, "iptables", "-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
}

// ip runs the ip command, failing the test on error.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	l.run(exec.Command("ip", args...))
}

// exec runs a command inside ns, failing the test on error.
func (l *netLab) exec(ns string, args ...string) {
	l.t.Helper()
	l.run(exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...))
}

func (l *netLab) run(cmd *exec.Cmd) {
	l.t.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v: %s", strings.Join(cmd.Args, " "), err, out)
	}
}

// startIn runs p2pnode with args inside ns; ip netns exec execs it, so the
// process the test stops by PID is p2pnode itself.
func (l *netLab) startIn(ns, name, dir string, withStdin bool, args ...string) *proc {
	l.t.Helper()
	return startCmd(l.t, name, dir, withStdin, exec.Command("ip", append([]string{"netns", "exec", ns, binPath}, args...)...))
}
