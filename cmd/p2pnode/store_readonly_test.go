package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// outbox list and deadletters list read a stopped node's store without
// writing to it: they worked on a full disk only if its write-ahead log
// could be replayed into an sstable, and hung when it could not (a
// read-write open waits for that flush), and they failed on a read-only
// file system.
func TestStoreListsWriteNothing(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.Decode(testPeer)
	if err != nil {
		t.Fatal(err)
	}
	o := store.Outgoing{ID: 7, Peer: string(id), Kind: store.KindRequest, Payload: []byte("resume me"),
		Attempts: 1, Created: time.Unix(1_700_000_000, 0)}
	d := store.DeadLetter{Outgoing: o, Reason: "dial_failed", Failed: time.Unix(1_700_000_100, 0)}
	d.ID = 8
	var b store.Batch
	b.PutOutgoing(o)
	b.PutDeadLetter(d)
	if err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	// The records stay in the write-ahead log: a read-write open would
	// write them into an sstable.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	files := func() []string {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(dir, store.DirName))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %d %s", e.Name(), fi.Size(), fi.ModTime()))
		}
		return out
	}
	before := files()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"outbox", "list", "--data-dir", dir}, handler.ExchangeID(7).String()},
		{[]string{"outbox", "list", "--data-dir", dir, "--json"}, handler.ExchangeID(7).String()},
		{[]string{"deadletters", "list", "--data-dir", dir}, handler.ExchangeID(8).String()},
		{[]string{"deadletters", "list", "--data-dir", dir, "--json"}, "dial_failed"},
	} {
		var out, errOut bytes.Buffer
		if code := execute(c.args, stdio{out: &out, err: &errOut}); code != 0 || !strings.Contains(out.String(), c.want) {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q; want %s listed", strings.Join(c.args[:2], " "), code, out.String(), errOut.String(), c.want)
		}
	}
	if after := files(); !slices.Equal(after, before) {
		t.Fatalf("the lists changed the store:\nbefore %q\nafter  %q", before, after)
	}
}
