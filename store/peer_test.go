package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	peerA = "16Uiu2HAmPeerA"
	peerB = "16Uiu2HAmPeerB"
)

// A store belongs to the peer that made it: opened for another peer it is
// refused, naming the directory and both peers, and left as it was; a tool
// that gives no peer ID opens it.
func TestOpenRefusesAnotherPeer(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{PeerID: peerA})
	commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1)) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, DirName)
	before := snapshotFiles(t, path)
	_, err := Open(dir, Options{PeerID: peerB})
	if !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("Open for another peer: %v, want ErrWrongPeer", err)
	}
	for _, want := range []string{path, peerA, peerB} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not name %s", err, want)
		}
	}
	if after := snapshotFiles(t, path); !reflect.DeepEqual(before, after) {
		t.Error("the refused Open changed the store's files")
	}
	for _, peer := range []string{peerA, ""} {
		s := openT(t, dir, Options{PeerID: peer})
		if got := len(loadT(t, s).Outgoing); got != 1 {
			t.Errorf("opened for %q: %d records, want 1", peer, got)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A store that records no peer (made by a release that did not record it,
// or opened only without one) is adopted by the first Open that gives a
// peer ID, with its records, and from then on belongs to that peer.
func TestOpenAdoptsStoreWithoutPeer(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir, 2, false)
	s := openT(t, dir, Options{PeerID: peerA})
	if got := len(loadT(t, s).Outgoing); got != 2 {
		t.Errorf("%d records, want 2", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{PeerID: peerB}); !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("Open for another peer after the adoption: %v, want ErrWrongPeer", err)
	}
	s = openT(t, dir, Options{PeerID: peerA})
	closeT(t, s)
}

// A recorded owner that is not a peer ID is damage, not another peer.
func TestOpenCorruptPeer(t *testing.T) {
	for name, v := range map[string]string{"empty": "", "binary": "\x00\x12\xff"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeStore(t, dir, 1, false)
			rawWrite(t, dir, func(s *Store) error {
				return s.db.Set(tableMeta.key([]byte(metaPeer)), []byte(v), nil)
			})
			if _, err := Open(dir, Options{PeerID: peerA}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
		})
	}
}
