package bench

import (
	"net"
	"sync"
	"time"
)

// DelayProxy is a TCP proxy on loopback that holds every byte for a fixed
// time in each direction: a network with a round trip of twice that, for
// counting the round trips a workload waits for (loopback has none to
// speak of). The TCP handshake with the proxy itself is not delayed, so a
// dial counts one round trip fewer than on a real network, alike for every
// workload. Ends half-close as they do on a real connection.
type DelayProxy struct {
	ln     net.Listener
	target string
	oneWay time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// NewDelayProxy listens on 127.0.0.1 and forwards each connection to
// target, delaying each direction by oneWay.
func NewDelayProxy(target string, oneWay time.Duration) (*DelayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &DelayProxy{ln: ln, target: target, oneWay: oneWay, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *DelayProxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// Close stops the proxy and every connection through it.
func (p *DelayProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// track records c for Close; it reports false once the proxy is closing.
func (p *DelayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *DelayProxy) forget(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *DelayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *DelayProxy) serve(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.forget(c)
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	if !p.track(u) {
		return
	}
	defer p.forget(u)
	var both sync.WaitGroup
	both.Go(func() { p.pipe(u, c) })
	both.Go(func() { p.pipe(c, u) })
	both.Wait()
}

// pipe copies src to dst, each chunk oneWay after it was read, and
// half-closes dst after src's end.
func (p *DelayProxy) pipe(dst, src net.Conn) {
	type chunk struct {
		due time.Time
		b   []byte
	}
	q := make(chan chunk, 1024)
	var w sync.WaitGroup
	w.Go(func() {
		defer dst.(*net.TCPConn).CloseWrite()
		t := time.NewTimer(0)
		defer t.Stop()
		for c := range q {
			t.Reset(time.Until(c.due))
			<-t.C
			if _, err := dst.Write(c.b); err != nil {
				for range q { // drain, so the reader never blocks
				}
				return
			}
		}
	})
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{time.Now().Add(p.oneWay), append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			break // the end of src, or a reset: dst gets its end
		}
	}
	close(q)
	w.Wait()
}
