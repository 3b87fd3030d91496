package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// End-to-end tests of durable exchanges: run's data directory, what a
// restart on it resumes and delivers again, and the outbox and deadletters
// commands. Crashes are SIGKILLs of real processes.

// startNodeOn is startNode on a given loopback port.
func startNodeOn(t *testing.T, name, dir, key, allowlist string, port int, extra ...string) (*proc, event) {
	t.Helper()
	args := append([]string{"run", "--json", "--key", key, "--allowlist", allowlist,
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}, extra...)
	p := startProc(t, name, dir, true, args...)
	l := p.expect("listening event", match("listening"))[0]
	return p, l
}

// errorWith matches an error event whose message contains s.
func errorWith(s string) func(event) bool {
	return func(e event) bool { return e.Str("event") == "error" && strings.Contains(e.Str("error"), s) }
}

// barrier makes sure p has carried out every stdin line sent so far: the
// run loop takes lines in order, and a request or send is on disk when the
// loop moves to the next line; a bad line answers with an error event.
func barrier(p *proc, line int) {
	p.t.Helper()
	p.send("barrier")
	p.expect("barrier", errorWith(fmt.Sprintf("stdin line %d:", line)))
}

// stopAndCount stops p (stdin closed) and returns the events it printed
// from now to its exit that satisfy pred.
func stopAndCount(t *testing.T, p *proc, pred func(event) bool) []event {
	t.Helper()
	p.stdin.Close()
	code, rest := p.wait()
	if code != 0 {
		t.Fatalf("%s exited %d; stderr:\n%s", p.name, code, p.errOutput())
	}
	return matching(t, rest, pred)
}

func matching(t *testing.T, lines []string, pred func(event) bool) []event {
	t.Helper()
	var out []event
	for _, l := range lines {
		var e event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("output line is not a JSON event: %q", l)
		}
		if pred(e) {
			out = append(out, e)
		}
	}
	return out
}

// A request and a send to a peer that is down survive the requester's
// crash: the restarted node (same data directory) resumes them, and prints
// their events once, with their stdin ids and "resumed": reply and exchange
// for the request (id 42), status and exchange for the send (id 43).
// Numbering of stdin commands without an id continues after 43.
func TestResumedRequestKeepsItsID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	portB := tu.LoopbackPort(t)
	addrB := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", portB, idB)
	dataA := filepath.Join(dir, "a-data")
	argsA := []string{"--data-dir", dataA, "--max-attempts", "1000", "--backoff-base", "20ms", "--backoff-max", "100ms"}

	a, la := startNode(t, "a", dir, keyA, list, argsA...)
	if la.Str("data_dir") != dataA {
		t.Fatalf("listening event %v: want data_dir %s", la, dataA)
	}
	a.send(map[string]any{"cmd": "request", "addr": addrB, "data": "are you there?", "id": 42})
	a.send(map[string]any{"cmd": "send", "peer": idB, "data": "note", "id": 43})
	barrier(a, 3)
	if got := matching(t, a.kill(), match("exchange")); len(got) != 0 {
		t.Fatalf("the request ended before the crash: %v", got)
	}

	b, _ := startNodeOn(t, "b", dir, keyB, list, portB, "--auto-reply", "echo", "--ephemeral")
	a2, _ := startNode(t, "a2", dir, keyA, list, argsA...)
	ev := a2.expect("the resumed request's and send's events",
		match("reply", "from", idB, "id", 42, "data", "are you there?"),
		match("exchange", "peer", idB, "id", 42, "kind", "request", "role", "dialer", "ok", true, "resumed", true),
		match("status", "peer", idB, "id", 43, "ok", true, "reason", "ok"),
		match("exchange", "peer", idB, "id", 43, "kind", "message", "role", "dialer", "ok", true, "resumed", true))
	if ev[0].Str("exchange") != ev[1].Str("exchange") {
		t.Fatalf("reply %v and exchange %v", ev[0], ev[1])
	}
	b.expect("the request and the message",
		match("request", "from", idA, "exchange", ev[0].Str("exchange"), "data", "are you there?"),
		match("data", "from", idA, "data", "note"))

	// A new request without an id is numbered after the resumed ones.
	a2.send(map[string]any{"cmd": "request", "peer": idB, "data": "again"})
	ev2 := a2.expect("the new request's exchange", match("exchange", "peer", idB, "role", "dialer", "kind", "request", "ok", true))[0]
	if ev2.Str("id") != "44" || ev2.Str("resumed") != "" {
		t.Fatalf("new exchange %v: want id 44, not resumed", ev2)
	}

	if again := stopAndCount(t, a2, func(e event) bool {
		switch e.Str("event") {
		case "reply", "exchange", "status":
			return e.Str("id") == "42" || e.Str("id") == "43"
		}
		return false
	}); len(again) != 0 {
		t.Fatalf("events of ids 42 and 43 printed again: %v", again)
	}
	stopAll(t, b)
	// A third life has nothing to resume.
	a3, _ := startNode(t, "a3", dir, keyA, list, argsA...)
	if got := stopAndCount(t, a3, match("exchange")); len(got) != 0 {
		t.Fatalf("a finished exchange resumed again: %v", got)
	}
}

// A request received and never answered is delivered again when the
// responder restarts after a crash, marked redelivered; answering it then
// completes the requester's exchange.
func TestUnansweredRequestRedelivered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	portB := tu.LoopbackPort(t)
	dataB := filepath.Join(dir, "b-data")

	b, lb := startNodeOn(t, "b", dir, keyB, list, portB, "--data-dir", dataB)
	a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", filepath.Join(dir, "a-data"),
		"--max-attempts", "1000", "--backoff-base", "20ms", "--backoff-max", "100ms")
	a.send(map[string]any{"cmd": "request", "addr": firstAddr(t, lb), "data": "sign this", "id": 7})
	r1 := b.expect("the request", match("request", "from", idA, "data", "sign this"))[0]
	if _, ok := r1["redelivered"]; ok {
		t.Fatalf("first delivery marked redelivered: %v", r1)
	}
	ex := r1.Str("exchange")
	b.kill()

	b2, _ := startNodeOn(t, "b2", dir, keyB, list, portB, "--data-dir", dataB)
	b2.expect("the request again", match("request", "from", idA, "exchange", ex, "data", "sign this", "redelivered", true))
	b2.send(map[string]any{"cmd": "respond", "peer": idA, "exchange": ex, "data": "signed"})
	a.expect("reply and exchange",
		match("reply", "from", idB, "exchange", ex, "id", 7, "data", "signed"),
		match("exchange", "peer", idB, "exchange", ex, "id", 7, "role", "dialer", "ok", true))
	b2.expect("the responder's exchange", match("exchange", "peer", idA, "exchange", ex, "role", "responder", "ok", true))

	stopAll(t, a)
	if again := stopAndCount(t, b2, match("request")); len(again) != 0 {
		t.Fatalf("request delivered again after its answer: %v", again)
	}
	// Answered: a third life does not deliver it again.
	b3, _ := startNodeOn(t, "b3", dir, keyB, list, portB, "--data-dir", dataB)
	if again := stopAndCount(t, b3, match("request")); len(again) != 0 {
		t.Fatalf("answered request delivered again after a restart: %v", again)
	}
}

// One node per data directory: a second run on it fails at once, naming
// it. A store that is damaged (garbage in one of its files) stops run with
// an error naming it, and is left as it was.
func TestDataDirInUseAndCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	data := filepath.Join(dir, "data")
	run := []string{"run", "--json", "--key", key, "--allowlist", list, "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", data}

	a, _ := startNode(t, "a", dir, key, list, "--data-dir", data)
	r := runCLI(t, dir, run...)
	oneErrorLine(t, r, "data directory "+data+" is in use: another p2pnode is probably running on it")
	if r.code != exitError || r.stdout != "" {
		t.Fatalf("second run: exit %d, stdout %q", r.code, r.stdout)
	}
	stopAll(t, a)

	storeDir := filepath.Join(data, store.DirName)
	opts, err := filepath.Glob(filepath.Join(storeDir, "OPTIONS-*"))
	if err != nil || len(opts) == 0 {
		t.Fatalf("no OPTIONS file in %s (%v)", storeDir, err)
	}
	file := opts[0]
	garbage := bytes.Repeat([]byte("not a store "), 1000)
	if err := os.WriteFile(file, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, dir, run...)
	oneErrorLine(t, r, storeDir+" is corrupt")
	if r.code != exitError || r.stdout != "" {
		t.Fatalf("run on a corrupt store: exit %d, stdout %q", r.code, r.stdout)
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, garbage) {
		t.Fatalf("the corrupt store was changed (%v)", err)
	}
	oneErrorLine(t, runCLI(t, dir, "outbox", "list", "--data-dir", data), storeDir+" is corrupt")
}

// A store belongs to the key that made it (or, made before stores recorded
// it, to the first key run on it): run with another key on its data
// directory refuses to start, naming the directory and both peer IDs,
// rather than send that node's outbox under its own identity. The tools,
// which open a stopped store without a key, still read it.
func TestDataDirOfAnotherKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	keyB, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	for _, old := range []bool{false, true} {
		data := filepath.Join(dir, fmt.Sprintf("data-%v", old))
		if old {
			// A store as an earlier release made it: no peer recorded.
			st, err := store.Open(data, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		}
		a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", data)
		stopAll(t, a)
		r := runCLI(t, dir, "run", "--json", "--key", keyB, "--allowlist", list,
			"--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", data)
		oneErrorLine(t, r, filepath.Join(data, store.DirName)+" belongs to peer "+idA+", not "+idB)
		oneErrorLine(t, r, "give that node's --key, or this key its own --data-dir")
		if r.code != exitError || r.stdout != "" {
			t.Fatalf("run with another key (old store %v): exit %d, stdout %q", old, r.code, r.stdout)
		}
		storeList(t, dir, "outbox", "--data-dir", data)
		a, _ = startNode(t, "a", dir, keyA, list, "--data-dir", data)
		stopAll(t, a)
	}
}

// storeList runs "outbox list" or "deadletters list" with --json and
// returns its entries.
func storeList(t *testing.T, dir, what string, target ...string) []map[string]any {
	t.Helper()
	out := mustRun(t, dir, append([]string{what, "list", "--json"}, target...)...)
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%s list --json: %v: %q", what, err, out)
	}
	key := map[string]string{"outbox": "outbox", "deadletters": "dead_letters"}[what]
	raw, ok := res[key].([]any)
	if !ok {
		t.Fatalf("%s list --json: no %q list in %v", what, key, res)
	}
	var entries []map[string]any
	for _, e := range raw {
		entries = append(entries, e.(map[string]any))
	}
	return entries
}

// A request that fails for good is kept in the dead letters: listed with
// its reason; retry moves it to the outbox, and the next run resumes it;
// drop forgets it, on the store of a stopped node.
func TestDeadLettersCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyA, idA := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, idA, idB)
	data := filepath.Join(dir, "data")
	down := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idB)
	at := []string{"--data-dir", data}

	a, _ := startNode(t, "a", dir, keyA, list, "--data-dir", data, "--max-attempts", "1")
	a.send(map[string]any{"cmd": "request", "addr": down, "data": "lost?", "id": 9})
	failed := a.expect("the failed exchange", match("exchange", "peer", idB, "id", 9, "ok", false, "dead_lettered", true))[0]
	ex, reason := failed.Str("exchange"), failed.Str("reason")
	if reason == "" || reason == "ok" {
		t.Fatalf("exchange %v", failed)
	}

	// The running node lists its store through its control socket...
	if dls := storeList(t, dir, "deadletters", at...); len(dls) != 1 || dls[0]["exchange"] != ex || dls[0]["reason"] != reason {
		t.Fatalf("dead letters of the running node: %v", dls)
	}
	if ob := storeList(t, dir, "outbox", at...); len(ob) != 0 {
		t.Fatalf("outbox of the running node: %v", ob)
	}
	// ...and the store is its own: outbox retry, which does not go
	// through the node, does not change it (retry, drop: see
	// TestStoreChangesThroughNode).
	r := runCLI(t, dir, append([]string{"outbox", "retry", ex}, at...)...)
	oneErrorLine(t, r, "the node on "+data+" is running: stop it first")
	if r.code != exitError || r.stdout != "" {
		t.Fatalf("outbox retry on a running node: exit %d, stdout %q", r.code, r.stdout)
	}
	stopAll(t, a)

	dls := storeList(t, dir, "deadletters", at...)
	if len(dls) != 1 {
		t.Fatalf("dead letters %v", dls)
	}
	d := dls[0]
	if d["exchange"] != ex || d["peer"] != idB || d["kind"] != "request" || d["tag"] != "9" || d["reason"] != reason ||
		d["attempts"] != 1.0 || d["data"] != "lost?" || d["created"] == "" || d["failed"] == "" || d["error"] == "" {
		t.Fatalf("dead letter %v: want exchange %s, reason %s", d, ex, reason)
	}
	if text := mustRun(t, dir, append([]string{"deadletters", "list"}, at...)...); !strings.Contains(text, ex) || !strings.Contains(text, reason) {
		t.Fatalf("deadletters list:\n%s", text)
	}

	// An unknown ID fails the command, and nothing changes.
	r = runCLI(t, dir, append([]string{"deadletters", "retry", ex, "00000000000000ab"}, at...)...)
	oneErrorLine(t, r, "exchange 00000000000000ab is not in the dead letters of "+data)
	if r.code != exitError {
		t.Fatalf("exit %d", r.code)
	}
	if n := len(storeList(t, dir, "deadletters", at...)); n != 1 {
		t.Fatalf("%d dead letters after a failed retry", n)
	}

	mustRun(t, dir, append([]string{"deadletters", "retry", ex}, at...)...)
	if n := len(storeList(t, dir, "deadletters", at...)); n != 0 {
		t.Fatalf("%d dead letters after retry", n)
	}
	ob := storeList(t, dir, "outbox", at...)
	if len(ob) != 1 || ob[0]["exchange"] != ex || ob[0]["tag"] != "9" || ob[0]["attempts"] != 0.0 || ob[0]["data"] != "lost?" {
		t.Fatalf("outbox after retry: %v", ob)
	}

	// The next run resumes it (and, the peer still down, it fails again).
	a2, _ := startNode(t, "a2", dir, keyA, list, "--data-dir", data, "--max-attempts", "1")
	a2.expect("the resumed exchange", match("exchange", "exchange", ex, "id", 9, "ok", false, "resumed", true, "dead_lettered", true))
	stopAll(t, a2)

	var dropped map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, dir, append([]string{"deadletters", "drop", "--all", "--json"}, at...)...)), &dropped); err != nil {
		t.Fatal(err)
	}
	if ids, _ := dropped["exchanges"].([]any); dropped["action"] != "drop" || len(ids) != 1 || ids[0] != ex {
		t.Fatalf("deadletters drop --json: %v", dropped)
	}
	if n := len(storeList(t, dir, "deadletters", at...)); n != 0 {
		t.Fatalf("%d dead letters after drop", n)
	}

	// Back once more, to see outbox retry and drop.
	a3, _ := startNode(t, "a3", dir, keyA, list, "--data-dir", data, "--max-attempts", "1")
	a3.send(map[string]any{"cmd": "request", "addr": down, "data": "lost again", "id": 10})
	ex2 := a3.expect("the failed exchange", match("exchange", "id", 10, "dead_lettered", true))[0].Str("exchange")
	stopAll(t, a3)
	mustRun(t, dir, append([]string{"deadletters", "retry", "--all"}, at...)...)
	mustRun(t, dir, append([]string{"outbox", "retry", ex2}, at...)...)
	oneErrorLine(t, runCLI(t, dir, append([]string{"outbox", "drop", ex2, ex}, at...)...), "exchange "+ex+" is not in the outbox")
	if ob := storeList(t, dir, "outbox", at...); len(ob) != 1 || ob[0]["exchange"] != ex2 {
		t.Fatalf("outbox after a failed drop: %v", ob)
	}
	mustRun(t, dir, append([]string{"outbox", "drop", ex2}, at...)...)
	if ob := storeList(t, dir, "outbox", at...); len(ob) != 0 {
		t.Fatalf("outbox after drop: %v", ob)
	}
	// Dropped: the next run has nothing to resume.
	a4, _ := startNode(t, "a4", dir, keyA, list, "--data-dir", data)
	if got := stopAndCount(t, a4, match("exchange")); len(got) != 0 {
		t.Fatalf("a dropped exchange resumed: %v", got)
	}
}

// --ephemeral runs without a store: no data directory is created, and the
// listening event has no data_dir. Without it, run keeps its store in the
// default directory of its key, where --key finds it.
func TestEphemeralAndDefaultDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id)
	def := filepath.Join(os.Getenv("XDG_STATE_HOME"), "p2pnode", id)

	a, l := startNode(t, "a", dir, key, list, "--ephemeral")
	if _, ok := l["data_dir"]; ok {
		t.Fatalf("ephemeral listening event %v", l)
	}
	stopAll(t, a)
	if _, err := os.Stat(def); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ephemeral run made %s (%v)", def, err)
	}

	a, l = startNode(t, "a", dir, key, list)
	if l.Str("data_dir") != def {
		t.Fatalf("listening event %v: want data_dir %s", l, def)
	}
	stopAll(t, a)
	if _, err := os.Stat(filepath.Join(def, store.DirName)); err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, dir, "outbox", "list", "--key", key, "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res["data_dir"] != def || len(res["outbox"].([]any)) != 0 {
		t.Fatalf("outbox list --key: %v", res)
	}
	if out := mustRun(t, dir, "deadletters", "list", "--key", key); !strings.Contains(out, "no dead letters") {
		t.Fatalf("deadletters list --key: %q", out)
	}
}

// --max-store-size caps the store: a node whose outbox holds more than the
// cap refuses the next send as the store being full (it accepted it under
// the default of 1 GiB). The cap counts pebble's own files, but at the
// least cap they leave room for more than a dozen messages of 900 kB.
func TestMaxStoreSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, id := newKey(t, dir, "a.key")
	_, idB := newKey(t, dir, "b.key")
	list := filepath.Join(dir, "allowlist.yaml")
	writeAllowlist(t, list, id, idB)
	down := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", tu.LoopbackPort(t), idB)
	a, _ := startNode(t, "a", dir, key, list, "--data-dir", filepath.Join(dir, "data"),
		"--max-store-size", "16777216", "--max-attempts", "1000", "--backoff-base", "1m", "--backoff-max", "1m")
	// Random bytes: the store's tables compress, and the cap counts
	// what they take on disk.
	payload := make([]byte, 900<<10)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(payload)
	const sends = 20 // 18 MB
	for i := 1; i <= sends; i++ {
		a.send(map[string]any{"cmd": "send", "addr": down, "data_b64": base64.StdEncoding.EncodeToString(payload), "id": i})
	}
	refused := a.expect("a send refused", func(e event) bool {
		return e.Str("event") == "status" && strings.Contains(e.Str("error"), "is full") && strings.Contains(e.Str("error"), "limit 16777216")
	})[0]
	if n, _ := refused["id"].(float64); n < 13 || n > sends {
		t.Fatalf("send %v refused as the store being full: want the 13th at the earliest", refused["id"])
	}
	a.kill()
}
