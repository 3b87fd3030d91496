package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// nullPaths returns where v, decoded JSON, holds a null.
func nullPaths(v any, at string) []string {
	switch v := v.(type) {
	case nil:
		return []string{at}
	case map[string]any:
		var out []string
		for k, e := range v {
			out = append(out, nullPaths(e, at+"."+k)...)
		}
		return out
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, nullPaths(e, at+"[]")...)
		}
		return out
	}
	return nil
}

// noNulls fails t if the JSON of v holds a null: status and peers give an
// empty list as [], as most of their lists did ("relays":null stood
// beside "relay_addrs":[]).
func noNulls(t *testing.T, what string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if nulls := nullPaths(m, what); len(nulls) > 0 {
		t.Errorf("%s: null at %v in %s", what, nulls, b)
	}
}

func TestStatusPeersJSONListsNeverNull(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*pb.StatusResponse{
		"bare":              {},
		"no relays":         {Relay: &pb.RelayStatus{}},
		"relay, no address": {Relay: &pb.RelayStatus{Relays: []*pb.RelayPeer{{PeerId: testPeer}}}},
	} {
		noNulls(t, "status "+name, statusJSON(s, ""))
	}
	noNulls(t, "peer", peerViewOf(&pb.PeerInfo{PeerId: testPeer}))
}

// The same, of a node that runs: no relays, no peer connected.
func TestStatusJSONOfNodeHasNoNull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id, testPeer)
	sock := filepath.Join(dir, "a.sock")
	a, _ := startNode(t, "a", dir, key, list, "--ephemeral", "--api", sock)
	noNulls(t, "status", jsonOut(t, dir, "status", "--api", sock, "--json"))
	noNulls(t, "peers", jsonOut(t, dir, "peers", "--api", sock, "--json"))
	stopAll(t, a)
}
