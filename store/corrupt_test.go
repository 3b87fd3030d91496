package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// writeStore creates a store in dir with some records and returns its
// file's bytes.
func writeStore(t *testing.T, dir string, records int) []byte {
	t.Helper()
	s := openT(t, dir, Options{})
	commitT(t, s, func(b *Batch) {
		for i := range records {
			o := outgoing(uint64(i + 1))
			o.Payload = bytes.Repeat([]byte{byte(i)}, 2000)
			b.PutOutgoing(o)
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// boltFile makes dir/store.db a bbolt file shaped by fill.
func boltFile(t *testing.T, dir string, fill func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fill); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCorrupt(t *testing.T) {
	cases := map[string]func(t *testing.T, dir string){
		"truncated to 100 bytes": func(t *testing.T, dir string) {
			data := writeStore(t, dir, 3)
			os.WriteFile(filepath.Join(dir, FileName), data[:100], 0o600)
		},
		"truncated to half": func(t *testing.T, dir string) {
			data := writeStore(t, dir, 200)
			os.WriteFile(filepath.Join(dir, FileName), data[:len(data)/2], 0o600)
		},
		"random garbage": func(t *testing.T, dir string) {
			garbage := make([]byte, 64<<10)
			r := rand.NewChaCha8([32]byte{1})
			r.Read(garbage)
			os.WriteFile(filepath.Join(dir, FileName), garbage, 0o600)
		},
		"text file": func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, FileName), []byte("not a database\n"), 0o600)
		},
		"empty bbolt file": func(t *testing.T, dir string) {
			boltFile(t, dir, func(*bolt.Tx) error { return nil })
		},
		"bbolt file with other buckets": func(t *testing.T, dir string) {
			boltFile(t, dir, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("something"))
				return err
			})
		},
		"meta without version": func(t *testing.T, dir string) {
			boltFile(t, dir, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("meta"))
				return err
			})
		},
		"short version": func(t *testing.T, dir string) {
			writeStore(t, dir, 1)
			boltFile(t, dir, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte{1})
			})
		},
		"version 0": func(t *testing.T, dir string) {
			writeStore(t, dir, 1)
			boltFile(t, dir, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("version"), make([]byte, 8))
			})
		},
		"missing data bucket": func(t *testing.T, dir string) {
			writeStore(t, dir, 1)
			boltFile(t, dir, func(tx *bolt.Tx) error {
				return tx.DeleteBucket([]byte("incoming"))
			})
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			corrupt(t, dir)
			path := filepath.Join(dir, FileName)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded on a corrupt file")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("message %q does not name %s", err, path)
			}
			after, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(before, after) {
				t.Errorf("Open changed the corrupt file (read error %v)", err)
			}
			// The failed Open let go of the file, even where bbolt panicked.
			if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Open: %v, want ErrCorrupt again", err)
			}
		})
	}
}

func TestOpenNewerVersion(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir, 1)
	boltFile(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint64(nil, 2))
	})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("Open: %v, want ErrVersion", err)
	}
	if path := filepath.Join(dir, FileName); !strings.Contains(err.Error(), path) {
		t.Errorf("message %q does not name %s", err, path)
	}
}

func TestLoadCorruptRecord(t *testing.T) {
	cases := map[string]struct {
		bucket, key, value string
	}{
		"garbage value":          {"outgoing", string(idKey(3)), "\x01\xff\xff\xff"},
		"unknown format":         {"deadletters", string(idKey(3)), "\x09"},
		"record under wrong key": {"outgoing", string(idKey(4)), string(encodeOutgoing(&Outgoing{ID: 5, Peer: "p", Kind: KindRequest}))},
		"short key":              {"outgoing", "abc", string(encodeOutgoing(&Outgoing{ID: 5, Peer: "p", Kind: KindRequest}))},
		"bad incoming key":       {"incoming", "\x09peer", string(encodeIncoming(&Incoming{Peer: "peer", ID: 1, Kind: KindMessage, State: InPending}))},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeStore(t, dir, 2)
			boltFile(t, dir, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte(c.bucket)).Put([]byte(c.key), []byte(c.value))
			})
			s := openT(t, dir, Options{}) // Open checks the layout, not every record
			closeT(t, s)
			_, err := s.Load()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load: %v, want ErrCorrupt", err)
			}
			for _, want := range []string{s.Path(), `bucket "` + c.bucket + `"`, "key "} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
		})
	}
}
