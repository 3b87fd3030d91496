package main

// What a new user following README.md, docs/operations.md and the --help
// texts found the CLI doing otherwise.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/control/pb"
)

// check prints one row per way, even when libp2p's dial error spans lines.
func TestPrintCheckOneRowPerWay(t *testing.T) {
	var out bytes.Buffer
	err := printCheck(&out, checkView{Peer: testPeer, Direct: pathView{Tried: true, Addr: "/ip4/127.0.0.2/tcp/4102",
		Error: "failed to dial: no good addresses\n  * [/ip4/127.0.0.2/tcp/4102] gater disallows connection to peer"}})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "direct ") || !strings.Contains(lines[1], "gater disallows") ||
		!strings.HasPrefix(lines[2], "relayed ") {
		t.Fatalf("want a header, the direct row and the relayed row, got:\n%s", out.String())
	}
}

// keygen into a directory that does not exist names that directory, not
// the temporary file it would have written first.
func TestKeygenMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nodir")
	var out, errOut bytes.Buffer
	code := execute([]string{"keygen", "--out", filepath.Join(dir, "node.key")}, stdio{out: &out, err: &errOut})
	msg := errOut.String()
	if code != exitError || !strings.Contains(msg, "directory "+dir+" does not exist") || strings.Contains(msg, ".tmp-") {
		t.Fatalf("exit %d, stderr %q: want 1 and the missing directory named", code, msg)
	}
}

// outbox retry opens the store itself: it has no --api to be misled by.
func TestOutboxRetryTakesNoAPI(t *testing.T) {
	var out, errOut bytes.Buffer
	code := execute([]string{"outbox", "retry", "--api", "/nonexistent/control.sock", "0000000000000001"},
		stdio{out: &out, err: &errOut})
	if code != exitUsage || !strings.Contains(errOut.String(), "unknown flag: --api") {
		t.Fatalf("exit %d, stderr %q: want 2, unknown flag --api", code, errOut.String())
	}
}

// listNode is a running node as the store commands see it: its lists.
type listNode struct {
	control.Node // nil: the commands under test call nothing else
	dir          string
}

func (n listNode) ListOutbox(_ context.Context, _ *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error {
	if err := send(&pb.ListStoredResponse{DataDir: n.dir}); err != nil {
		return err
	}
	return send(&pb.ListStoredResponse{Item: &pb.Stored{Id: 7, Peer: []byte("p"), Kind: 1, Tag: "3"}})
}

func (n listNode) ListDeadLetters(_ context.Context, _ *pb.ListStoredRequest, send func(*pb.ListStoredResponse) error) error {
	return send(&pb.ListStoredResponse{DataDir: n.dir})
}

// Like status, the store commands given no --data-dir, --key, --config or
// --api ask the one node running with a default data directory (README,
// "The CLI at a glance").
func TestStoreCommandsFindDefaultNode(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	dir := filepath.Join(state, "p2pnode", testPeer)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// No node running: the command says what it needs.
	var out, errOut bytes.Buffer
	if code := execute([]string{"outbox", "list"}, stdio{out: &out, err: &errOut}); code != exitUsage ||
		!strings.Contains(errOut.String(), "no data directory: give --data-dir DIR, --key FILE (its default) or --config FILE") {
		t.Fatalf("outbox list, no node running: exit %d, stderr %q", code, errOut.String())
	}
	srv, err := control.Serve(control.SocketPath(dir), listNode{dir: dir}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	for _, what := range []string{"outbox", "deadletters"} {
		var out, errOut bytes.Buffer
		if code := execute([]string{what, "list", "--json"}, stdio{out: &out, err: &errOut}); code != 0 {
			t.Fatalf("%s list: exit %d, stderr %q", what, code, errOut.String())
		}
		var res struct {
			DataDir string            `json:"data_dir"`
			Outbox  []json.RawMessage `json:"outbox"`
		}
		if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.DataDir != dir {
			t.Fatalf("%s list: %q (%v): want the running node's %s", what, out.String(), err, dir)
		}
		if what == "outbox" && len(res.Outbox) != 1 {
			t.Fatalf("outbox list: %q: want the node's one exchange", out.String())
		}
	}
}
