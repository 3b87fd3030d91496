package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
)

// exampleListen is the listen address error messages show.
const exampleListen = "/ip4/0.0.0.0/tcp/4001"

// parseListenAddrs parses the --listen values (listen: in a configuration).
// None means p2p's default. Each must be a TCP multiaddr on an IP:
// /ip4/A/tcp/N or /ip6/A/tcp/N, the only transport the node has. A mistake
// is a usage error whose message shows the fix.
func parseListenAddrs(ss []string) ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	for _, s := range ss {
		a, err := parseListenAddr(s)
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, a)
	}
	return out, nil
}

func parseListenAddr(s string) (ma.Multiaddr, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("listen address %q is not a multiaddr: write it as %s", s, suggestListen(s))
	}
	ps := a.Protocols()
	switch {
	case len(ps) >= 2 && (ps[0].Code == ma.P_IP4 || ps[0].Code == ma.P_IP6) && ps[1].Code == ma.P_TCP && len(ps) == 2:
		return a, nil
	case len(ps) >= 2 && ps[1].Code == ma.P_UDP, hasProtocol(ps, ma.P_TCP) && len(ps) > 2:
		return nil, fmt.Errorf("listen address %q: p2pnode listens on TCP only (Noise and yamux), e.g. %s", s, exampleListen)
	}
	return nil, fmt.Errorf("listen address %q: want /ip4/ADDRESS/tcp/PORT or /ip6/ADDRESS/tcp/PORT, e.g. %s", s, exampleListen)
}

func hasProtocol(ps []ma.Protocol, code int) bool {
	for _, p := range ps {
		if p.Code == code {
			return true
		}
	}
	return false
}

// suggestListen turns a HOST:PORT the user meant into its multiaddr, or
// returns the generic example.
func suggestListen(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return exampleListen
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return exampleListen
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return exampleListen
	case ip.Is4():
		return "/ip4/" + ip.String() + "/tcp/" + port
	}
	return "/ip6/" + ip.String() + "/tcp/" + port
}

// validateMetricsAddr checks --metrics-addr (metrics_addr:) as the metrics
// server will bind it: HOST:PORT, HOST optional (all interfaces).
func validateMetricsAddr(s string) error {
	if s == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil || strings.ContainsAny(host, "/ ") {
		return usageErrorf("metrics address %q: want HOST:PORT, e.g. 127.0.0.1:9464", s)
	}
	return nil
}
