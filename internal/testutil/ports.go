package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// Ports for nodes that must come back on the same address after a restart
// (or for an address nobody listens on). Such a port is picked free,
// closed again, and listened on later by a node (a p2pnode process, a
// handler), which may be stopped or killed and started again on it.
// Picked from the kernel's ephemeral range (port 0), it could be taken in
// between by any socket that asks for a port: every outbound connection of
// every process on the machine takes its source port from that range, and
// the suite's other packages make thousands. Seen in CI: a soak node's
// first start failed with "bind: address already in use".
//
// So the ports come from below the ephemeral range, which only a socket
// naming its port uses; and, since parallel tests of a package pick from
// there too, each port is handed out once per test process. (Another
// package's test process may pick the same port: 1 in 16384, and only
// while neither has listened on it yet.) The registry is package state,
// which the project's code otherwise avoids: it stands for the machine's
// ports, which every test of the process shares.
var loopback struct {
	mu    sync.Mutex
	given map[int]bool
}

// LoopbackPorts picks n free loopback ports, outside the kernel's
// ephemeral range, that no other test of this process gets.
func LoopbackPorts(t testing.TB, n int) []int {
	t.Helper()
	low, high := portRange(t)
	loopback.mu.Lock()
	defer loopback.mu.Unlock()
	if loopback.given == nil {
		loopback.given = make(map[int]bool)
	}
	var ports []int
	start := low + rand.IntN(high-low)
	for i := 0; i < high-low && len(ports) < n; i++ {
		p := low + (start-low+i)%(high-low)
		if loopback.given[p] || !bindable(p) {
			continue
		}
		loopback.given[p] = true
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatalf("%d free loopback ports wanted in [%d, %d), %d found", n, low, high, len(ports))
	}
	return ports
}

// LoopbackAddr is /ip4/127.0.0.1/tcp/ on a LoopbackPort.
func LoopbackAddr(t testing.TB) ma.Multiaddr {
	t.Helper()
	return ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", LoopbackPort(t)))
}

// LoopbackPort is LoopbackPorts for one.
func LoopbackPort(t testing.TB) int {
	t.Helper()
	return LoopbackPorts(t, 1)[0]
}

// portRange is where LoopbackPorts picks: the 16384 ports below the
// kernel's ephemeral range, or above it if there is no room below.
func portRange(t testing.TB) (low, high int) {
	t.Helper()
	const want, floor = 16384, 1024
	eLow, eHigh := 32768, 60999 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && 0 < l && l <= h {
				eLow, eHigh = l, h
			}
		}
	}
	switch {
	case eLow-floor >= 1024:
		return max(floor, eLow-want), eLow
	case 65535-eHigh >= 1024:
		return eHigh + 1, min(65536, eHigh+1+want)
	}
	t.Fatalf("no room for test ports outside the ephemeral range %d-%d", eLow, eHigh)
	return 0, 0
}

// bindable reports whether 127.0.0.1:port can be listened on now.
func bindable(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
