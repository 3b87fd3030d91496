package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/bitvmx/go-bitvmx-p2p/control"
	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// A running node lists an outbox larger than any one message its client
// accepts, one exchange a message, oldest first, with whole payloads only
// when asked; outbox list prints it, and prints the same bytes from the
// stopped node's store. (The node sent the whole outbox, every payload, in
// one response: with 1 GB of payloads the node and the CLI each held it,
// and the call hit its 30 s deadline.)
func TestOutboxListStreams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 24, 128 << 10 // 3 MiB in all
	id, err := peer.Decode(testPeer)
	if err != nil {
		t.Fatal(err)
	}
	pid := string(id)
	var b store.Batch
	base := time.Unix(1_700_000_000, 0)
	for i := range n {
		p := bytes.Repeat([]byte{byte('a' + i)}, size)
		if i%5 == 0 {
			p[0] = 0xff // binary
		}
		// IDs in one order, creation in the other: the list is by creation.
		b.PutOutgoing(store.Outgoing{ID: uint64(i + 1), Peer: pid, Kind: store.KindRequest, Payload: p,
			Attempts: 1, Created: base.Add(-time.Duration(i) * time.Second)})
	}
	if err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "c.sock")
	srv, err := control.Serve(sock, &nodeControl{r: &runner{dataDir: dir}, st: st}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Close()
			_ = st.Close()
		}
	})

	c, err := control.Dial(context.Background(), sock, control.WithMaxResponseSize(512<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, payloads := range []bool{true, false} {
		l, err := c.ListOutbox(context.Background(), payloads, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l.DataDir != dir {
			t.Fatalf("DataDir %q, want %q", l.DataDir, dir)
		}
		for i := range n {
			s, err := l.Next()
			if err != nil {
				t.Fatalf("payloads %v: exchange %d: %v", payloads, i, err)
			}
			want := size
			if !payloads {
				want = headBytes
			}
			if s.Id != uint64(n-i) || s.PayloadSize != size || len(s.Payload) != want || s.PayloadUtf8 != ((n-i-1)%5 != 0) {
				t.Fatalf("payloads %v: exchange %d: id %d, size %d, %d bytes sent, utf8 %v", payloads, i, s.Id, s.PayloadSize, len(s.Payload), s.PayloadUtf8)
			}
		}
		if _, err := l.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("payloads %v: after the last exchange: %v", payloads, err)
		}
		l.Close()
	}

	list := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := execute(append([]string{"outbox", "list"}, args...), stdio{out: &out, err: &errOut}); code != 0 {
			t.Fatalf("outbox list %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut.String())
		}
		return out.String()
	}
	running := list("--api", sock, "--json")
	var res struct {
		DataDir string       `json:"data_dir"`
		Outbox  []jsonStored `json:"outbox"`
	}
	if err := json.Unmarshal([]byte(running), &res); err != nil || res.DataDir != dir || len(res.Outbox) != n {
		t.Fatalf("outbox list --json: %v, data_dir %q, %d exchanges", err, res.DataDir, len(res.Outbox))
	}
	for i, e := range res.Outbox {
		p, err := base64.StdEncoding.DecodeString(e.DataB64)
		if want := handler.ExchangeID(n - i).String(); e.Exchange != want || err != nil || len(p) != size || e.Size != size {
			t.Fatalf("outbox list --json entry %d: exchange %s (want %s), %d bytes of data_b64 (%v)", i, e.Exchange, want, len(p), err)
		}
	}
	table := list("--api", sock)
	rows := strings.Split(strings.TrimSpace(table), "\n")
	if len(rows) != n+1 || !strings.Contains(rows[1], handler.ExchangeID(n).String()) ||
		!strings.Contains(rows[1], fmt.Sprint(size)) || !strings.Contains(rows[1], `"`+strings.Repeat("x", previewRunes)+`"...`) ||
		!strings.Contains(rows[4], "(binary)") {
		t.Fatalf("outbox list: %d lines:\n%.2000s", len(rows), table)
	}

	srv.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if got := list("--data-dir", dir, "--json"); got != running {
		t.Fatalf("outbox list --json of the stopped node's store differs from the running node's (%d bytes, %d)", len(got), len(running))
	}
	if got := list("--data-dir", dir); got != table {
		t.Fatalf("outbox list of the stopped node's store:\n%.2000s\nthe running node's:\n%.2000s", got, table)
	}
}
