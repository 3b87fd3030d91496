package p2p

import (
	"bufio"
	"io"
	"sync"
)

// A stream holds its read and write buffers only while it has bytes in
// them: an idle connection then costs no more than bare go-libp2p's, and a
// node with hundreds of quiet peers does not keep 32 KiB for each.

// streamBufSize is the size of the buffers a stream borrows: large enough
// that a burst of pipelined small frames is read, or written, without a
// call into the stream for each.
const streamBufSize = 16 << 10

// firstReadSize is what an idle stream reads into while it waits for the
// peer: every open stream keeps it, at each end, for as long as it is
// open. An ack, or a frame as small, arrives whole in it; the rest of a
// larger frame is read into the borrowed buffer, timed by the stream's
// frame watch (readFrame), which costs a timer reset, no allocation.
const firstReadSize = 64

// streamBuffers lends a node's streams their buffers. The zero value lends
// buffers of streamBufSize.
type streamBuffers struct {
	size    int // 0: streamBufSize
	writers sync.Pool
	readers sync.Pool
}

func (p *streamBuffers) bufSize() int {
	if p.size > 0 {
		return p.size
	}
	return streamBufSize
}

// writer lends a write buffer that writes to w.
func (p *streamBuffers) writer(w io.Writer) *bufio.Writer {
	bw, _ := p.writers.Get().(*bufio.Writer)
	if bw == nil {
		return bufio.NewWriterSize(w, p.bufSize())
	}
	bw.Reset(w)
	return bw
}

// putWriter takes back a write buffer, which must hold nothing.
func (p *streamBuffers) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	p.writers.Put(bw)
}

// reader lends a read buffer that reads from r.
func (p *streamBuffers) reader(r io.Reader) *bufio.Reader {
	br, _ := p.readers.Get().(*bufio.Reader)
	if br == nil {
		return bufio.NewReaderSize(r, p.bufSize())
	}
	br.Reset(r)
	return br
}

// putReader takes back a read buffer, which must hold nothing.
func (p *streamBuffers) putReader(br *bufio.Reader) {
	br.Reset(nil)
	p.readers.Put(br)
}

// lazyReader is a stream's reader side buffer: a borrowed bufio.Reader
// while bytes wait in it, and only a small array of its own while the
// stream is idle. Only the stream's reader goroutine uses it.
type lazyReader struct {
	s     io.Reader // the stream
	bufs  *streamBuffers
	br    *bufio.Reader // nil while idle
	first [firstReadSize]byte
	head  []byte // what the idle read brought, not yet handed to br
	err   error  // the idle read's error, for after head
}

// next returns the buffer to read the next frame from, waiting for the
// stream's first bytes if it holds none. Its error is the stream's, as a
// read of an empty bufio.Reader would return it.
func (r *lazyReader) next() (*bufio.Reader, error) {
	if r.br != nil {
		return r.br, nil
	}
	n, err := r.s.Read(r.first[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return nil, err
	}
	r.head, r.err = r.first[:n], err
	r.br = r.bufs.reader(r)
	return r.br, nil
}

// buffer returns the read buffer, borrowing an empty one if the stream is
// idle: for a drain, which reads without waiting in next.
func (r *lazyReader) buffer() *bufio.Reader {
	if r.br == nil {
		r.br = r.bufs.reader(r)
	}
	return r.br
}

// idle reports whether nothing waits to be read in the buffer, and gives
// the buffer back if so.
func (r *lazyReader) idle() bool {
	if r.br == nil {
		return true
	}
	if r.br.Buffered() > 0 || len(r.head) > 0 || r.err != nil {
		return false
	}
	r.bufs.putReader(r.br)
	r.br = nil
	return true
}

// release gives the buffer back when the stream's reading is over,
// whatever it still holds: nothing will read it.
func (r *lazyReader) release() {
	if r.br != nil {
		r.bufs.putReader(r.br)
		r.br = nil
	}
}

// whole reports whether the next frame is all in the buffer, so that
// reading it cannot block. The caller has found the buffer not idle.
func (r *lazyReader) whole() bool {
	return r.br != nil && len(r.head) == 0 && frameBuffered(r.br)
}

// Read is what the borrowed buffer reads: first the idle read's bytes, then
// the stream.
func (r *lazyReader) Read(b []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(b, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	if err := r.err; err != nil {
		r.err = nil
		return 0, err
	}
	return r.s.Read(b)
}
