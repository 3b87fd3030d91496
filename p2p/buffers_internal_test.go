package p2p

import (
	"io"
	"strings"
	"testing"
)

// An idle stream's reader holds no borrowed buffer: it borrows one when
// bytes arrive, keeps it while any wait in it, and gives it back once they
// are all read, without losing a byte on the way.
func TestLazyReaderBorrowsOnlyWhileBytesWait(t *testing.T) {
	r := &lazyReader{s: strings.NewReader("abcdef"), bufs: &streamBuffers{}}
	if !r.idle() || r.br != nil {
		t.Fatal("a new reader holds a buffer")
	}
	br, err := r.next()
	if err != nil || r.br == nil {
		t.Fatalf("next: %v, buffer %v", err, r.br)
	}
	got := make([]byte, 2)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ab" {
		t.Fatalf("read %q: %v", got, err)
	}
	if r.idle() {
		t.Fatal("idle with bytes still to read")
	}
	rest, _ := io.ReadAll(io.LimitReader(br, 4))
	if string(rest) != "cdef" {
		t.Fatalf("read %q after the first two bytes", rest)
	}
	if !r.idle() || r.br != nil {
		t.Fatal("the buffer is kept once everything was read")
	}
	if _, err := r.next(); err != io.EOF {
		t.Fatalf("next at the end: %v, want EOF", err)
	}
}
