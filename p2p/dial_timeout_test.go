package p2p_test

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// holdingProxy forwards TCP connections on 127.0.0.1 to target, each only
// after hold: a peer whose handshake is that slow (a loaded machine). Its
// goroutines end with the test.
func holdingProxy(t *testing.T, target ma.Multiaddr, hold time.Duration) ma.Multiaddr {
	t.Helper()
	to, err := target.ValueForProtocol(ma.P_TCP)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-done:
			c.Close()
			return false
		default:
			conns = append(conns, c)
			return true
		}
	}
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			if !track(in) {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-time.After(hold):
				case <-done:
					return
				}
				out, err := net.Dial("tcp", "127.0.0.1:"+to)
				if err != nil || !track(out) {
					in.Close()
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					io.Copy(out, in)
					out.Close()
				}()
				io.Copy(in, out)
				in.Close()
			}()
		}
	}()
	return ma.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
}

// TestDialTimeoutHoldsForLoopback: Config.DialTimeout bounds a dial to a
// loopback (or private) address too. go-libp2p's swarm gives those 5 s of
// its own, which failed a handshake that load had slowed past 5 s while
// the DialTimeout allowed more (TestAllToAll under load: five attempts,
// each "failed to negotiate security protocol: context deadline
// exceeded").
func TestDialTimeoutHoldsForLoopback(t *testing.T) {
	a, b := pair(t, func(c *p2p.Config) { c.DialTimeout = 30 * time.Second })
	via := holdingProxy(t, b.Addrs()[0], 5500*time.Millisecond)
	a.Sender() <- p2p.SendMsg{Peer: b.ID(), Addr: via, ID: 1, Data: []byte("slow handshake")}
	if st := tu.Next[p2p.Status](t, a.Receiver()); !st.OK {
		t.Fatalf("status %+v", st)
	}
}
