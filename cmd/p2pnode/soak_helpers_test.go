package main

// The machinery of the kill/restart soak test (soak_test.go): p2pnode run
// processes that can be SIGKILLed and restarted, the test's own
// application (it sends requests and answers the ones it is given), and the
// bookkeeping of every event every process instance printed.
//
// Nothing here sleeps to wait for something to happen: waits are on events
// (a notification channel replaced at every change) with deadlines. The only
// sleeps and timers are the scenario's own pacing: request spreading, the
// interval between kills, the pause before a restart and the slow
// application's answer delay.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

// soakEvent is one --json line, with the fields the soak test reads.
type soakEvent struct {
	Event       string   `json:"event"`
	Peer        string   `json:"peer"`
	From        string   `json:"from"`
	Exchange    string   `json:"exchange"`
	ID          uint64   `json:"id"`
	Data        *string  `json:"data"`
	Kind        string   `json:"kind"`
	Role        string   `json:"role"`
	OK          bool     `json:"ok"`
	Reason      string   `json:"reason"`
	Stage       string   `json:"stage"`
	Error       string   `json:"error"`
	Redelivered bool     `json:"redelivered"`
	Resumed     bool     `json:"resumed"`
	Lettered    bool     `json:"dead_lettered"`
	Addrs       []string `json:"addrs"`
}

// soakNode is one of the scenario's nodes: a key, a port and a data
// directory that survive its restarts, and the process instance now
// running it.
type soakNode struct {
	idx           int
	name          string // "n0"...
	id            string // peer ID
	key, dataDir  string
	port          int
	addr          string // /ip4/127.0.0.1/tcp/PORT/p2p/ID
	requests      []int  // the request numbers this node sends, in order
	killable      bool
	everRequester bool

	// Guarded by soakHarness.mu.
	cur      *soakInst
	up       bool         // the sender may hand it requests
	insts    []*soakInst  // every instance ever started, in order
	inflight map[int]bool // requests counted against the window
}

// soakInst is one process instance of a node: started, maybe killed.
type soakInst struct {
	h       *soakHarness
	node    *soakNode
	num     int // 1 for the first process, 2 after the first restart...
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Duration

	stderrMu sync.Mutex
	stderr   bytes.Buffer

	listenOnce sync.Once
	listening  chan struct{} // closed at the listening event
	exited     chan struct{} // closed once stdout hit EOF and Wait returned
	waitErr    error         // set before exited closes

	mu       sync.Mutex
	queue    [][]byte // stdin lines not yet written
	closing  bool     // close stdin once the queue is written
	dead     bool     // killed: drop writes and pending answers
	wake     chan struct{}
	timers   map[*time.Timer]struct{} // slow-application answers not yet due
	killedAt time.Duration
}

func (in *soakInst) String() string { return fmt.Sprintf("%s#%d", in.node.name, in.num) }

func (in *soakInst) errOutput() string {
	in.stderrMu.Lock()
	defer in.stderrMu.Unlock()
	s := in.stderr.String()
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// enqueue hands a stdin line to the instance's writer. Never blocks: a node
// whose stdin is full is writing stdout, which only the reader drains.
func (in *soakInst) enqueue(line []byte) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead || in.closing {
		return false
	}
	in.queue = append(in.queue, line)
	select {
	case in.wake <- struct{}{}:
	default:
	}
	return true
}

// writer writes the queued lines on stdin, in order, and closes stdin when
// asked to. A write error (the process died) ends it.
func (in *soakInst) writer() {
	for {
		in.mu.Lock()
		q, closing, dead := in.queue, in.closing, in.dead
		in.queue = nil
		in.mu.Unlock()
		if dead {
			return
		}
		for _, l := range q {
			if _, err := in.stdin.Write(l); err != nil {
				return
			}
		}
		if closing && len(q) == 0 {
			in.stdin.Close()
			return
		}
		if len(q) == 0 {
			select {
			case <-in.wake:
			case <-in.exited:
				return
			}
		}
	}
}

// after runs f after d unless the instance is killed or stopped first.
func (in *soakInst) after(d time.Duration, f func()) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead || in.closing {
		return
	}
	var tm *time.Timer
	tm = time.AfterFunc(d, func() {
		in.mu.Lock()
		_, live := in.timers[tm]
		delete(in.timers, tm)
		in.mu.Unlock()
		if live {
			f()
		}
	})
	in.timers[tm] = struct{}{}
}

// stopTimers drops the answers not yet due, and with dead everything else
// the test would still write to this instance.
func (in *soakInst) stopTimers(dead bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for tm := range in.timers {
		tm.Stop()
	}
	in.timers = map[*time.Timer]struct{}{}
	if dead {
		in.dead = true
		in.queue = nil
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
}

// closeStdin asks the writer to close stdin once the queue is written,
// which stops a run node cleanly.
func (in *soakInst) closeStdin() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closing = true
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// waitExit waits for the instance to exit, up to d.
func (in *soakInst) waitExit(d time.Duration) bool {
	select {
	case <-in.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// exitCode is the instance's exit status, -1 for a signal.
func (in *soakInst) exitCode() int {
	if ee, ok := errors.AsType[*exec.ExitError](in.waitErr); ok {
		return ee.ExitCode()
	}
	if in.waitErr != nil {
		return -2
	}
	return 0
}

// soakReq is one request of the scenario and all that happened to it.
type soakReq struct {
	n          int
	from, to   int
	issued     bool
	issuedAt   time.Duration
	issuedInst int
	outcomes   []soakOutcome
	deliveries []soakDelivery // request events at the responder
	replies    []soakDelivery // reply events at the requester
}

type soakOutcome struct {
	node, inst int
	ok         bool
	reason     string
	stage      string
	err        string
	exchange   string
	id         uint64
	at         time.Duration
	afterStop  bool // printed while the test was stopping the nodes
	resumed    bool // by an instance after the one it was issued to
	lettered   bool // kept in the dead letters
	// redelivered: printed again by a later instance, because the one
	// that printed it first was killed before acknowledging it.
	redelivered bool
}

type soakDelivery struct {
	node, inst  int
	redelivered bool
	exchange    string
	data        string
	from        string
	at          time.Duration
	seq         int // order of arrival, for sorting within an instance
}

// soakHarness runs one scenario.
type soakHarness struct {
	t         *testing.T
	p         soakParams
	start     time.Time
	dir       string
	allowlist string
	nodes     []*soakNode
	byID      map[string]*soakNode
	nodeArgs  []string
	logDir    string        // SOAK_LOG_DIR/<subtest>: each instance's output, kept
	done      chan struct{} // closed when the scenario ends early or finishes

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced at every change
	reqs         []*soakReq    // request n is reqs[n-1]
	exToN        map[string]int
	orphans      []soakOutcome // dialer outcomes without an id: matched by exchange at the end
	connLimits   []string
	unexpected   []string
	otherErrors  map[string]int
	barriers     map[string]bool
	harnessErrs  []string
	stopping     bool
	kills        []string // "n3#1 +1.234s (2 sent, 1 given)"
	busyKills    int      // kills of an instance with work (below) in flight
	killedSent   int      // requests outstanding at their requester's kill
	killedGiven  int      // requests delivered and not yet answered at their responder's kill
	seq          int
	eventsByKind map[string]int
}

func (h *soakHarness) since() time.Duration { return time.Since(h.start) }

// notify wakes every waiter; h.mu must be held.
func (h *soakHarness) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// waitUntil waits for cond (evaluated under h.mu) to hold, until deadline
// or until the scenario is aborted.
func (h *soakHarness) waitUntil(deadline time.Time, cond func() bool) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		h.mu.Lock()
		ok, ch := cond(), h.changed
		h.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			h.mu.Lock()
			defer h.mu.Unlock()
			return cond()
		case <-h.done:
			return false
		}
	}
}

// harnessError records a failure of the test machinery itself (a node that
// did not restart, a line that is not JSON...); each fails the test.
func (h *soakHarness) harnessError(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.harnessErrs = append(h.harnessErrs, fmt.Sprintf("+%s ", h.since().Round(time.Millisecond))+fmt.Sprintf(format, args...))
	h.notify()
}

// newSoakHarness makes the nodes' keys, allowlist, ports and data
// directories, and registers the cleanup that kills every process instance
// still running, by PID.
func newSoakHarness(t *testing.T, p soakParams) *soakHarness {
	t.Helper()
	dir := t.TempDir()
	h := &soakHarness{t: t, p: p, dir: dir, byID: map[string]*soakNode{}, done: make(chan struct{}),
		changed: make(chan struct{}), exToN: map[string]int{}, otherErrors: map[string]int{},
		barriers: map[string]bool{}, eventsByKind: map[string]int{}}
	if d := os.Getenv("SOAK_LOG_DIR"); d != "" {
		h.logDir = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+time.Now().Format("-150405.000"))
		if err := os.MkdirAll(h.logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("SOAK_LOG_DIR: events of every process in %s", h.logDir)
	}
	ports := tu.LoopbackPorts(t, p.Nodes)
	var ids []string
	for i := range p.Nodes {
		nd := &soakNode{idx: i, name: "n" + strconv.Itoa(i), port: ports[i], inflight: map[int]bool{}}
		nd.key, nd.id = newKey(t, dir, nd.name+".key")
		nd.dataDir = filepath.Join(dir, nd.name+".data")
		if err := os.Mkdir(nd.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		nd.addr = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", nd.port, nd.id)
		h.nodes = append(h.nodes, nd)
		h.byID[nd.id] = nd
		ids = append(ids, nd.id)
	}
	h.allowlist = filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, h.allowlist, ids...)
	t.Cleanup(func() {
		h.mu.Lock()
		var all []*soakInst
		for _, nd := range h.nodes {
			all = append(all, nd.insts...)
		}
		h.mu.Unlock()
		for _, in := range all {
			in.stopTimers(true)
			select {
			case <-in.exited:
				continue
			default:
			}
			_ = in.cmd.Process.Kill() // by PID
			in.waitExit(waitTimeout)
		}
	})
	return h
}

// startInst starts a process instance of nd and waits for its listening
// event. The instance is not the node's current one until the caller says.
func (h *soakHarness) startInst(nd *soakNode) (*soakInst, error) {
	args := append([]string{"run", "--json", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", nd.port),
		"--key", nd.key, "--allowlist", h.allowlist}, h.nodeArgs...)
	args = append(args, durableArgs(nd.dataDir)...)
	in := &soakInst{h: h, node: nd, listening: make(chan struct{}), exited: make(chan struct{}),
		wake: make(chan struct{}, 1), timers: map[*time.Timer]struct{}{}}
	in.cmd = exec.Command(binPath, args...)
	in.cmd.Dir = h.dir
	in.cmd.Env = childEnv()
	in.cmd.Stderr = lockedWriter{&in.stderrMu, &in.stderr}
	stdout, err := in.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if in.stdin, err = in.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	in.num = len(nd.insts) + 1
	if err := in.cmd.Start(); err != nil {
		h.mu.Unlock()
		return nil, err
	}
	in.started = h.since()
	nd.insts = append(nd.insts, in) // from now on the cleanup kills it
	h.mu.Unlock()
	var logFile *os.File
	if h.logDir != "" {
		// SOAK_LOG_DIR: every instance's events and stderr, for a post-mortem.
		logFile, _ = os.Create(filepath.Join(h.logDir, in.String()+".jsonl"))
	}
	go in.writer()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if logFile != nil {
				fmt.Fprintf(logFile, "%s\n", sc.Bytes())
			}
			h.record(in, sc.Bytes())
		}
		if logFile != nil {
			fmt.Fprintf(logFile, "# stderr:\n%s", in.errOutput())
			logFile.Close()
		}
		in.waitErr = in.cmd.Wait()
		close(in.exited)
		h.mu.Lock()
		h.notify()
		h.mu.Unlock()
	}()
	select {
	case <-in.listening:
		return in, nil
	case <-in.exited:
		return nil, fmt.Errorf("%s exited (%v) before its listening event; stderr:\n%s", in, in.waitErr, in.errOutput())
	case <-time.After(waitTimeout):
		return nil, fmt.Errorf("%s: no listening event within %s; stderr:\n%s", in, waitTimeout, in.errOutput())
	}
}

// soakRequestNumber is n for the payload "soak-n" (or "re:soak-n").
func soakRequestNumber(data string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(data, "re:"), "soak-"))
	if err != nil || !strings.Contains(data, "soak-") {
		return 0
	}
	return n
}

// record books one stdout line of in, and plays the application: a request
// event is answered from this same instance.
func (h *soakHarness) record(in *soakInst, line []byte) {
	var ev soakEvent
	if err := json.Unmarshal(line, &ev); err != nil || ev.Event == "" {
		h.harnessError("%s: output line is not a JSON event: %q", in, line)
		return
	}
	nd := in.node
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	h.eventsByKind[ev.Event]++
	defer h.notify()
	at := h.since()
	where := fmt.Sprintf("%s +%s", in, at.Round(time.Millisecond))
	if h.stopping {
		where += " (stopping)"
	}
	switch ev.Event {
	case "listening":
		if ev.Peer != nd.id {
			h.harnessErrs = append(h.harnessErrs, fmt.Sprintf("%s: listening as %s, want %s", in, ev.Peer, nd.id))
		}
		in.listenOnce.Do(func() { close(in.listening) })
	case "request":
		data := ""
		if ev.Data != nil {
			data = *ev.Data
		}
		n := soakRequestNumber(data)
		if n < 1 || n > len(h.reqs) {
			h.harnessErrs = append(h.harnessErrs, fmt.Sprintf("%s: request event with foreign data: %s", where, line))
			break
		}
		h.reqs[n-1].deliveries = append(h.reqs[n-1].deliveries, soakDelivery{node: nd.idx, inst: in.num,
			redelivered: ev.Redelivered, exchange: ev.Exchange, data: data, from: ev.From, at: at, seq: h.seq})
		if ev.Exchange != "" {
			h.exToN[ev.Exchange] = n
			h.attachOrphans()
		}
		h.answer(in, ev.From, ev.Exchange, data)
	case "reply":
		data := ""
		if ev.Data != nil {
			data = *ev.Data
		}
		n := int(ev.ID)
		if n == 0 {
			n = h.exToN[ev.Exchange]
		}
		if n == 0 {
			n = soakRequestNumber(data)
		}
		if n < 1 || n > len(h.reqs) {
			h.harnessErrs = append(h.harnessErrs, fmt.Sprintf("%s: reply event for no request: %s", where, line))
			break
		}
		h.reqs[n-1].replies = append(h.reqs[n-1].replies, soakDelivery{node: nd.idx, inst: in.num,
			redelivered: ev.Redelivered, exchange: ev.Exchange, data: data, from: ev.From, at: at, seq: h.seq})
		if ev.Exchange != "" && ev.ID != 0 {
			h.exToN[ev.Exchange] = n
		}
	case "exchange":
		if isUnexpected(ev.Reason) || isUnexpected(ev.Error) {
			h.unexpected = append(h.unexpected, fmt.Sprintf("%s: %s", where, line))
		}
		if ev.Role != "dialer" {
			break
		}
		o := soakOutcome{node: nd.idx, inst: in.num, ok: ev.OK, reason: ev.Reason, stage: ev.Stage, err: ev.Error,
			exchange: ev.Exchange, id: ev.ID, at: at, afterStop: h.stopping, resumed: ev.Resumed, lettered: ev.Lettered,
			redelivered: ev.Redelivered}
		n := int(ev.ID)
		if n == 0 {
			// No id (a restarted node that did not keep it?): matched by
			// its exchange, now or once the responder's request event is in.
			h.orphans = append(h.orphans, o)
			h.attachOrphans()
			break
		}
		if n > len(h.reqs) {
			h.harnessErrs = append(h.harnessErrs, fmt.Sprintf("%s: dialer outcome for no request: %s", where, line))
			break
		}
		if ev.Exchange != "" {
			h.exToN[ev.Exchange] = n
		}
		h.addOutcome(n, o)
		h.attachOrphans()
	case "connection_limit":
		h.connLimits = append(h.connLimits, fmt.Sprintf("%s: %s", where, line))
	case "error":
		if strings.Contains(ev.Error, "soak-barrier-") {
			for _, f := range strings.FieldsFunc(ev.Error, func(r rune) bool { return r == '"' }) {
				if strings.HasPrefix(f, "soak-barrier-") {
					h.barriers[f] = true
				}
			}
			h.notify()
			break
		}
		if isUnexpected(ev.Error) {
			h.unexpected = append(h.unexpected, fmt.Sprintf("%s: %s", where, line))
			break
		}
		h.otherErrors[soakErrorClass(ev.Error)]++
	}
}

// addOutcome books a dialer outcome of request n; h.mu is held.
func (h *soakHarness) addOutcome(n int, o soakOutcome) {
	h.reqs[n-1].outcomes = append(h.reqs[n-1].outcomes, o)
	delete(h.nodes[h.reqs[n-1].from].inflight, n)
	h.notify()
}

// attachOrphans books the outcomes without an id whose exchange is now
// known; h.mu is held.
func (h *soakHarness) attachOrphans() {
	kept := h.orphans[:0]
	for _, o := range h.orphans {
		if n := h.exToN[o.exchange]; n > 0 && o.exchange != "" {
			h.addOutcome(n, o)
		} else {
			kept = append(kept, o)
		}
	}
	h.orphans = kept
}

func isUnexpected(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "unexpected_message") || strings.Contains(s, "unexpected message")
}

// soakErrorClass strips the variable parts (exchange IDs, numbers, peer
// IDs) of an error text, for counting.
func soakErrorClass(s string) string {
	f := strings.Fields(s)
	for i, w := range f {
		if strings.HasPrefix(w, "16Uiu2") || strings.HasPrefix(w, "12D3") {
			f[i] = "<peer>"
			continue
		}
		if strings.IndexFunc(w, func(r rune) bool { return r >= '0' && r <= '9' }) >= 0 {
			f[i] = "<n>"
		}
	}
	return strings.Join(f, " ")
}

// answer plays the application for one request event of in: at once, or
// after the slow application's delay; from the same instance, and never
// once it is killed. h.mu is held.
func (h *soakHarness) answer(in *soakInst, from, exchange, data string) {
	line, _ := json.Marshal(map[string]string{"cmd": "respond", "peer": from, "exchange": exchange, "data": "re:" + data})
	line = append(line, '\n')
	if !h.p.SlowApp {
		in.enqueue(line)
		return
	}
	lo, hi := h.p.AppDelay[0], h.p.AppDelay[1]
	d := lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
	in.after(d, func() { in.enqueue(line) })
}

// issue hands request n to its requester's current instance, if the node
// is up and its window has room; h.mu is held.
func (h *soakHarness) issue(nd *soakNode, n int) bool {
	if !nd.up || len(nd.inflight) >= h.p.Window {
		return false
	}
	r := h.reqs[n-1]
	to := h.nodes[r.to]
	line, _ := json.Marshal(map[string]any{"cmd": "request", "peer": to.id, "addr": to.addr,
		"data": "soak-" + strconv.Itoa(n), "id": n})
	if !nd.cur.enqueue(append(line, '\n')) {
		return false
	}
	r.issued, r.issuedAt, r.issuedInst = true, h.since(), nd.cur.num
	nd.inflight[n] = true
	h.notify()
	return true
}

// sender issues nd's requests, paced over Spread in bursts of Burst, at
// most Window outstanding. A request handed to an instance that is then killed stops
// counting against the window: the test cannot know if it will come back.
func (h *soakHarness) sender(nd *soakNode, wg *sync.WaitGroup) {
	defer wg.Done()
	burst := max(h.p.Burst, 1)
	for k, n := range nd.requests {
		if h.p.Spread > 0 {
			due := time.Duration(int64(h.p.Spread) * int64(k/burst*burst) / int64(len(nd.requests)))
			if d := due - h.since(); d > 0 {
				select {
				case <-time.After(d): // pacing of the scenario
				case <-h.done:
					return
				}
			}
		}
		issued := false
		ok := h.waitUntil(time.Now().Add(h.p.SettleTimeout), func() bool {
			issued = issued || h.issue(nd, n)
			return issued
		})
		if !ok {
			h.mu.Lock()
			var out []int
			for k := range nd.inflight {
				out = append(out, k)
			}
			slices.Sort(out)
			up := nd.up
			h.mu.Unlock()
			select {
			case <-h.done:
			default:
				h.harnessError("%s: could not issue request %d for %s (up %v, outstanding %v)", nd.name, n, h.p.SettleTimeout, up, out)
			}
			return
		}
	}
}

// killAndRestart SIGKILLs nd's current instance and starts a new one
// RestartAfter later. Before the kill, nd is handed no new request and
// the test waits until the instance has read every line written to it so
// far (an unknown command whose error event marks the point): a request
// line still in the pipe when a process dies was never accepted by the
// node, and a node that never saw a request owes it nothing.
func (h *soakHarness) killAndRestart(nd *soakNode, k int) error {
	h.mu.Lock()
	nd.up = false
	in := nd.cur
	h.mu.Unlock()

	marker := fmt.Sprintf("soak-barrier-%d", k)
	line, _ := json.Marshal(map[string]string{"cmd": marker, "peer": nd.id})
	in.enqueue(append(line, '\n'))
	if !h.waitUntil(time.Now().Add(waitTimeout), func() bool { return h.barriers[marker] }) {
		select {
		case <-h.done:
			return errors.New("aborted")
		default:
		}
		h.harnessError("%s: stdin barrier %s not seen within %s (killing anyway)", in, marker, waitTimeout)
	}

	in.stopTimers(true) // its pending answers are dropped
	h.mu.Lock()
	in.killedAt = h.since()
	sent, given := h.workOf(nd)
	h.kills = append(h.kills, fmt.Sprintf("%s +%s (%d sent, %d given)", in, in.killedAt.Round(time.Millisecond), sent, given))
	if sent+given > 0 {
		h.busyKills++
	}
	h.killedSent += sent
	h.killedGiven += given
	h.mu.Unlock()
	if err := in.cmd.Process.Kill(); err != nil { // SIGKILL, by PID
		return fmt.Errorf("kill %s (pid %d): %v", in, in.cmd.Process.Pid, err)
	}
	if !in.waitExit(waitTimeout) {
		return fmt.Errorf("%s (pid %d) did not exit within %s of SIGKILL", in, in.cmd.Process.Pid, waitTimeout)
	}
	h.mu.Lock()
	clear(nd.inflight)
	h.notify()
	h.mu.Unlock()

	select {
	case <-time.After(h.p.RestartAfter): // pacing of the scenario
	case <-h.done:
		return errors.New("aborted")
	}
	next, err := h.startInst(nd)
	if err != nil {
		return fmt.Errorf("restarting %s: %v", nd.name, err)
	}
	h.mu.Lock()
	nd.cur, nd.up = next, true
	h.notify()
	h.mu.Unlock()
	return nil
}

// killLoop kills a random killable node every KillEvery, up to MaxKills
// times and for at most KillFor, and stops early once every request has
// been issued and answered (nothing is left to disturb).
func (h *soakHarness) killLoop(done chan<- struct{}) {
	defer close(done)
	var victims []*soakNode
	for _, nd := range h.nodes {
		if nd.killable {
			victims = append(victims, nd)
		}
	}
	if len(victims) == 0 || h.p.MaxKills == 0 {
		return
	}
	begin := time.Now()
	for k := 1; k <= h.p.MaxKills && time.Since(begin) < h.p.KillFor; k++ {
		lo, hi := h.p.KillEvery[0], h.p.KillEvery[1]
		select {
		case <-time.After(lo + time.Duration(rand.Int64N(int64(hi-lo)+1))): // pacing
		case <-h.done:
			return
		}
		h.mu.Lock()
		finished := h.allResolved(true)
		h.mu.Unlock()
		if finished {
			return
		}
		victim := victims[rand.IntN(len(victims))]
		if h.p.KillWhenBusy {
			// Strike while it has work in flight, or after twice
			// KillEvery's upper bound anyway.
			h.waitUntil(time.Now().Add(2*hi), func() bool { return h.busy(victim) })
		}
		if err := h.killAndRestart(victim, k); err != nil {
			select {
			case <-h.done:
			default:
				h.harnessError("kill %d: %v", k, err)
			}
			return
		}
	}
}

// busy says whether nd has work a crash could lose or repeat; h.mu is
// held.
func (h *soakHarness) busy(nd *soakNode) bool {
	if !nd.up {
		return false
	}
	sent, given := h.workOf(nd)
	return sent+given > 0
}

// workOf counts the work of nd's current instance: requests it sent still
// outstanding, and requests it was given whose requester has no outcome
// yet; h.mu is held.
func (h *soakHarness) workOf(nd *soakNode) (sent, given int) {
	for _, r := range h.reqs {
		if !r.issued || len(r.outcomes) > 0 {
			continue
		}
		if r.from == nd.idx && r.issuedInst == nd.cur.num {
			sent++
		}
		if r.to == nd.idx && len(r.deliveries) > 0 {
			if d := r.deliveries[len(r.deliveries)-1]; d.node == nd.idx && d.inst == nd.cur.num {
				given++
			}
		}
	}
	return sent, given
}

// allResolved says whether every request (issued, or with all issued) has
// an outcome; h.mu is held.
func (h *soakHarness) allResolved(needAllIssued bool) bool {
	for _, r := range h.reqs {
		if !r.issued {
			if needAllIssued {
				return false
			}
			continue
		}
		if len(r.outcomes) == 0 {
			return false
		}
	}
	return true
}
