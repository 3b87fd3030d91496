package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeStore creates a store in dir with some records (in sstables when
// flush is set, else only in the write-ahead log) and closes it.
func writeStore(t *testing.T, dir string, records int, flush bool) {
	t.Helper()
	s := openT(t, dir, Options{})
	commitT(t, s, func(b *Batch) {
		for i := range records {
			o := outgoing(uint64(i + 1))
			o.Payload = bytes.Repeat([]byte{byte(i)}, 2000)
			b.PutOutgoing(o)
		}
	})
	if flush {
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// rawWrite changes the store in dir with fn through pebble itself, behind
// the store's back, then closes it.
func rawWrite(t *testing.T, dir string, fn func(s *Store) error) {
	t.Helper()
	s := openT(t, dir, Options{})
	if err := fn(s); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// storeFile returns the file of the store in dir whose name matches pattern
// (a filepath.Match pattern); of several, the largest.
func storeFile(t *testing.T, dir, pattern string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, DirName, pattern))
	if err != nil || len(matches) == 0 {
		t.Fatalf("files %s: %v, %v; want one", pattern, matches, err)
	}
	largest, size := "", int64(-1)
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Size() > size {
			largest, size = m, fi.Size()
		}
	}
	return largest
}

// currentManifest returns the MANIFEST the store in dir uses, as its marker
// names it.
func currentManifest(t *testing.T, dir string) string {
	t.Helper()
	marker := filepath.Base(storeFile(t, dir, "marker.manifest.*"))
	name := marker[strings.LastIndexByte(marker, '.')+1:]
	return filepath.Join(dir, DirName, name)
}

func garbage(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func truncate(t *testing.T, path string, frac float64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(float64(fi.Size())*frac)); err != nil {
		t.Fatal(err)
	}
}

// overwrite replaces n bytes of path from its middle with garbage, keeping
// its size.
func overwrite(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	n = min(n, int(fi.Size()))
	if _, err := f.WriteAt(garbage(n), (fi.Size()-int64(n))/2); err != nil {
		t.Fatal(err)
	}
}

// snapshotFiles reads every file of the store directory but LOCK, which no
// one may open while pebble holds it (closing it drops the lock).
func snapshotFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	ents, err := os.ReadDir(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Not a directory: the store path is a file.
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{"": data}
	}
	for _, e := range ents {
		if e.Name() == "LOCK" || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(path, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}

func TestOpenCorrupt(t *testing.T) {
	cases := map[string]struct {
		corrupt func(t *testing.T, dir string)
		// pebble opens the database (only the store's checks fail), and
		// may rewrite its files doing so (replaying the WAL, say).
		pebbleOpens bool
	}{
		"store is a file": {corrupt: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, DirName), garbage(64<<10), 0o600)
		}},
		"directory of other files": {corrupt: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, DirName), 0o700)
			os.WriteFile(filepath.Join(dir, DirName, "notes.txt"), []byte("not a database\n"), 0o600)
		}},
		"garbage CURRENT, no MANIFEST marker": {corrupt: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, DirName), 0o700)
			os.WriteFile(filepath.Join(dir, DirName, "CURRENT"), garbage(100), 0o600)
		}},
		"garbage CURRENT beside the store's files": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, false)
			os.Remove(storeFile(t, dir, "marker.manifest.*"))
			os.WriteFile(filepath.Join(dir, DirName, "CURRENT"), []byte("MANIFEST-000009\n"), 0o600)
		}},
		"MANIFEST marker removed": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			os.Remove(storeFile(t, dir, "marker.manifest.*"))
		}},
		"MANIFEST marker names a missing MANIFEST": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			m := storeFile(t, dir, "marker.manifest.*")
			os.Rename(m, filepath.Join(filepath.Dir(m), "marker.manifest.000009.MANIFEST-000999"))
		}},
		"MANIFEST marker names garbage": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			m := storeFile(t, dir, "marker.manifest.*")
			os.Rename(m, filepath.Join(filepath.Dir(m), "marker.manifest.000009.garbage"))
		}},
		"MANIFEST truncated to 10 bytes": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			os.Truncate(currentManifest(t, dir), 10)
		}},
		"MANIFEST truncated to half": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			truncate(t, currentManifest(t, dir), 0.5)
		}},
		"MANIFEST garbage": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			os.WriteFile(currentManifest(t, dir), garbage(4096), 0o600)
		}},
		"MANIFEST empty": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			os.Truncate(currentManifest(t, dir), 0)
		}},
		"unknown format version": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			m := storeFile(t, dir, "marker.format-version.*")
			os.Rename(m, filepath.Join(filepath.Dir(m), "marker.format-version.000099.999"))
		}},
		"OPTIONS garbage": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			os.WriteFile(storeFile(t, dir, "OPTIONS-*"), garbage(2000), 0o600)
		}},
		"OPTIONS of another comparer": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			p := storeFile(t, dir, "OPTIONS-*")
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte("comparer=leveldb.BytewiseComparator"), []byte("comparer=other"), 1), 0o600)
		}},
		"sstable truncated": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 50, true)
			truncate(t, storeFile(t, dir, "*.sst"), 0.5)
		}},
		"sstable missing": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 50, true)
			os.Remove(storeFile(t, dir, "*.sst"))
		}},
		"sstable garbage": {corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 3, true)
			p := storeFile(t, dir, "*.sst")
			fi, _ := os.Stat(p)
			os.WriteFile(p, garbage(int(fi.Size())), 0o600)
		}},
		"meta without version": {pebbleOpens: true, corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 1, false)
			rawWrite(t, dir, func(s *Store) error {
				return s.db.Delete(tableMeta.key([]byte(metaVersion)), nil)
			})
		}},
		"short version": {pebbleOpens: true, corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 1, false)
			rawWrite(t, dir, func(s *Store) error {
				return s.db.Set(tableMeta.key([]byte(metaVersion)), []byte{1}, nil)
			})
		}},
		"version 0": {pebbleOpens: true, corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 1, false)
			rawWrite(t, dir, func(s *Store) error {
				return s.db.Set(tableMeta.key([]byte(metaVersion)), make([]byte, 8), nil)
			})
		}},
		"pebble database of another program": {pebbleOpens: true, corrupt: func(t *testing.T, dir string) {
			writeStore(t, dir, 1, false)
			rawWrite(t, dir, func(s *Store) error {
				return s.db.DeleteRange([]byte{0}, []byte{0xff}, nil)
			})
		}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c.corrupt(t, dir)
			path := filepath.Join(dir, DirName)
			before := snapshotFiles(t, path)
			s, err := Open(dir, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded on a corrupt store")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("message %q does not name %s", err, path)
			}
			if after := snapshotFiles(t, path); !c.pebbleOpens && !reflect.DeepEqual(before, after) {
				t.Errorf("Open changed the corrupt store's files")
			}
			// The failed Open let go of the store, and did not replace it
			// by an empty one.
			if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Open: %v, want ErrCorrupt again", err)
			}
		})
	}
}

// TestReadCorruptSSTable: damage inside an sstable that Open does not read
// fails the read that meets it, as ErrCorrupt, and does not take the process
// down.
func TestReadCorruptSSTable(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	rnd := rand.NewChaCha8([32]byte{3})
	commitT(t, s, func(b *Batch) {
		for i := range 200 {
			o := outgoing(uint64(i + 1))
			o.Payload = make([]byte, 2000) // incompressible: many data blocks
			rnd.Read(o.Payload)
			b.PutOutgoing(o)
		}
	})
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	overwrite(t, storeFile(t, dir, "*.sst"), 64)
	s, err := Open(dir, Options{})
	if err == nil {
		closeT(t, s)
		_, err = s.Load()
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open or Load: %v, want ErrCorrupt", err)
	}
	if path := filepath.Join(dir, DirName); !strings.Contains(err.Error(), path) {
		t.Errorf("message %q does not name %s", err, path)
	}
}

// walWith writes records one Commit (one fsync) each, their payloads made
// of marker bytes that can be found in the write-ahead log, and returns the
// log's path. The records stay in the log: pebble does not flush at Close.
func walWith(t *testing.T, dir string, markers []byte) string {
	t.Helper()
	s := openT(t, dir, Options{})
	for i, m := range markers {
		commitT(t, s, func(b *Batch) {
			o := outgoing(uint64(i + 1))
			o.Payload = bytes.Repeat([]byte{m}, 3000)
			b.PutOutgoing(o)
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return storeFile(t, dir, "*.log")
}

// findPayload returns the offset of the middle of marker's payload in the log.
func findPayload(t *testing.T, log string, marker byte) int64 {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, bytes.Repeat([]byte{marker}, 3000))
	if i < 0 {
		t.Fatalf("payload %q not found in %s", marker, log)
	}
	return int64(i + 1500)
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestWALDamageInTheMiddleIsCorrupt: a record of the write-ahead log that
// later, synced records follow was acknowledged; damage to it is not the
// torn tail of a crash, and recovery must not silently stop there.
func TestWALDamageInTheMiddleIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	log := walWith(t, dir, []byte("ABCDE"))
	writeAt(t, log, findPayload(t, log, 'B'), []byte("xyz"))
	before := snapshotFiles(t, filepath.Join(dir, DirName))
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	if path := filepath.Join(dir, DirName); !strings.Contains(err.Error(), path) {
		t.Errorf("message %q does not name %s", err, path)
	}
	if after := snapshotFiles(t, filepath.Join(dir, DirName)); !reflect.DeepEqual(before, after) {
		t.Error("Open changed the store's files")
	}
}

// TestWALTornTailIsRecovered: the last record of the last write-ahead log,
// torn by a crash while it was written, is dropped (its Commit never
// returned); every record before it is there.
func TestWALTornTailIsRecovered(t *testing.T) {
	for name, tear := range map[string]func(t *testing.T, log string, off int64){
		"cut short": func(t *testing.T, log string, off int64) {
			if err := os.Truncate(log, off); err != nil {
				t.Fatal(err)
			}
		},
		"garbled": func(t *testing.T, log string, off int64) {
			writeAt(t, log, off, []byte("xyz"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			log := walWith(t, dir, []byte("ABCDE"))
			tear(t, log, findPayload(t, log, 'E'))
			s := openT(t, dir, Options{})
			closeT(t, s)
			var ids []uint64
			for _, o := range loadT(t, s).Outgoing {
				ids = append(ids, o.ID)
			}
			if want := []uint64{1, 2, 3, 4}; !reflect.DeepEqual(ids, want) {
				t.Errorf("records %v after a torn tail, want %v", ids, want)
			}
		})
	}
}

func TestOpenNewerVersion(t *testing.T) {
	dir := t.TempDir()
	writeStore(t, dir, 1, false)
	rawWrite(t, dir, func(s *Store) error {
		return s.db.Set(tableMeta.key([]byte(metaVersion)), binary.BigEndian.AppendUint64(nil, 2), nil)
	})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("Open: %v, want ErrVersion", err)
	}
	if path := filepath.Join(dir, DirName); !strings.Contains(err.Error(), path) {
		t.Errorf("message %q does not name %s", err, path)
	}
}

func TestLoadCorruptRecord(t *testing.T) {
	cases := map[string]struct {
		table      tableID
		key, value string
	}{
		"garbage value":          {tableOutgoing, string(idKey(3)), "\x01\xff\xff\xff"},
		"empty value":            {tableIncoming, string(incomingKey("peer", 1)), ""},
		"unknown format":         {tableDeadLetters, string(idKey(3)), "\x09"},
		"record under wrong key": {tableOutgoing, string(idKey(4)), string(encodeOutgoing(&Outgoing{ID: 5, Peer: "p", Kind: KindRequest}))},
		"short key":              {tableOutgoing, "abc", string(encodeOutgoing(&Outgoing{ID: 5, Peer: "p", Kind: KindRequest}))},
		"bad incoming key":       {tableIncoming, "\x09peer", string(encodeIncoming(&Incoming{Peer: "peer", ID: 1, Kind: KindMessage, State: InPending}))},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeStore(t, dir, 2, false)
			rawWrite(t, dir, func(s *Store) error {
				return s.db.Set(c.table.key([]byte(c.key)), []byte(c.value), nil)
			})
			s := openT(t, dir, Options{}) // Open checks the layout, not every record
			closeT(t, s)
			_, err := s.Load()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load: %v, want ErrCorrupt", err)
			}
			for _, want := range []string{s.Path(), `table "` + c.table.String() + `"`, "key "} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestLoadIgnoresUnknownTables(t *testing.T) {
	// A later layout may add a table; keys outside the known ones are not
	// records of this one.
	dir := t.TempDir()
	writeStore(t, dir, 2, false)
	rawWrite(t, dir, func(s *Store) error {
		return s.db.Set([]byte("x-later"), []byte("anything"), nil)
	})
	s := openT(t, dir, Options{})
	closeT(t, s)
	if got := len(loadT(t, s).Outgoing); got != 2 {
		t.Errorf("%d records, want 2", got)
	}
}
