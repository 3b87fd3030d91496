package main

import (
	"bufio"
	"bytes"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

func TestParseGoodCommands(t *testing.T) {
	p := mustPeer(t, testPeer)
	addr := "/ip4/127.0.0.1/tcp/4001"
	full := addr + "/p2p/" + testPeer
	cases := []struct {
		line string
		want p2p.Command
	}{
		{`{"cmd":"dial","peer":"` + testPeer + `","addr":"` + addr + `"}`, p2p.Dial{Peer: p, Addr: ma.StringCast(addr)}},
		{`{"cmd":"dial","addr":"` + full + `"}`, p2p.Dial{Peer: p, Addr: ma.StringCast(full)}},
		{`{"cmd":"send","peer":"` + testPeer + `","data":"hi"}`, p2p.SendMsg{Peer: p, ID: 1, Data: []byte("hi")}},
		{`{"cmd":"send","peer":"` + testPeer + `","data_b64":"/wA=","id":10}`, p2p.SendMsg{Peer: p, ID: 10, Data: []byte{0xff, 0}}},
		{`{"cmd":"send","addr":"` + full + `","data":"","channel":3,"from_channel":4}`,
			p2p.SendMsg{Peer: p, Addr: ma.StringCast(full), ID: 11, Data: []byte{}, Channel: 3, FromChannel: 4}},
		{`{"id":5,"data":"x","peer":"` + testPeer + `","cmd":"send"}`, p2p.SendMsg{Peer: p, ID: 5, Data: []byte("x")}},
		{`{"cmd":"send","peer":"` + testPeer + `","data":"y"}`, p2p.SendMsg{Peer: p, ID: 12, Data: []byte("y")}},
		{`  {"cmd":"disconnect","peer":"` + testPeer + `"}  `, p2p.DisconnectFrom{Peer: p}},
		{``, nil},
		{"   \t", nil},
	}
	var parser commandParser
	for _, tc := range cases {
		got, err := parser.parse([]byte(tc.line))
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got  %#v\n want %#v", tc.line, got, tc.want)
		}
	}
}

func TestParseBadCommands(t *testing.T) {
	const other = "16Uiu2HAmRDk2UazNfSS2LveVm6iZy1ndXV4onsyA8Vmcyo3eVrU6"
	cases := []struct{ line, want string }{
		{`garbage`, "not JSON"},
		{`{"cmd":"send"`, "not JSON"},
		{`[1,2]`, "want a JSON object"},
		{`"send"`, "want a JSON object"},
		{`{"cmd":"send","peer":"` + testPeer + `","data":"x"} {}`, "one JSON object per line"},
		// The command is judged first: a line missing both is told of the
		// command, and a misspelt one is named even without a peer.
		{`{}`, `no "cmd"`},
		{`{"cmd":"fly"}`, `unknown cmd "fly"`},
		{`{"cmd":"send","data":"x"}`, `no "peer"`},
		{`{"peer":"` + testPeer + `"}`, `no "cmd"`},
		{`{"cmd":"fly","peer":"` + testPeer + `"}`, `unknown cmd "fly"`},
		{`{"cmd":"send","peer":"` + testPeer + `","payload":"x"}`, `unknown field "payload"`},
		{`{"cmd":"send","peer":"nope","data":"x"}`, `peer "nope" is not a peer ID`},
		{`{"cmd":"send","peer":"` + testPeer + `","addr":"127.0.0.1:4001","data":"x"}`, `is not a multiaddr`},
		{`{"cmd":"send","peer":"` + other + `","addr":"/ip4/127.0.0.1/tcp/1/p2p/` + testPeer + `","data":"x"}`, "belongs to peer"},
		{`{"cmd":"send","peer":"` + testPeer + `"}`, `send needs "data" or "data_b64"`},
		{`{"cmd":"send","peer":"` + testPeer + `","data":"x","data_b64":"eA=="}`, "not both"},
		{`{"cmd":"send","peer":"` + testPeer + `","data_b64":"!!"}`, "not base64"},
		{`{"cmd":"send","peer":"` + testPeer + `","data":"x","id":-1}`, `"id": wrong type`},
		// 0 is what events say for an exchange not started on stdin.
		{`{"cmd":"send","peer":"` + testPeer + `","data":"x","id":0}`, `"id" must be positive`},
		{`{"cmd":"request","peer":"` + testPeer + `","data":"x","id":0}`, `"id" must be positive`},
		{`{"cmd":"send","peer":"` + testPeer + `","data":5}`, `"data": wrong type`},
		{`{"cmd":"dial","peer":"` + testPeer + `"}`, `dial needs "addr"`},
		{`{"cmd":"dial","addr":"/ip4/127.0.0.1/tcp/1/p2p/` + testPeer + `","data":"x"}`, `dial takes no "data"`},
		{`{"cmd":"disconnect"}`, `no "peer"`},
		{`{"cmd":"disconnect","peer":"` + testPeer + `","id":3}`, `disconnect takes no "id"`},
	}
	var parser commandParser
	for i, tc := range cases {
		cmd, err := parser.parse([]byte(tc.line))
		if err == nil {
			t.Errorf("%s: no error, got %#v", tc.line, cmd)
			continue
		}
		msg := err.Error()
		prefix := "stdin line " + itoa(i+1) + ": "
		if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%s:\n got  %q\n want %q...%q", tc.line, msg, prefix, tc.want)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestReadLine(t *testing.T) {
	in := "short\r\n" + strings.Repeat("x", 100) + "\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16) // lines span several buffer fills
	got := []string{}
	for {
		line, err := readLine(br, 50)
		if err == errLineTooLong {
			got = append(got, "<too long>")
			continue
		}
		if len(line) > 0 || err == nil {
			got = append(got, string(line))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"short", "<too long>", "last"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// The reader delivers lines, reports a line too long and carries on, and
// closes its channel at end of input; stop lets an abandoned reader exit.
func TestStdinReader(t *testing.T) {
	in := "a\n" + strings.Repeat("x", 200) + "\nb\n"
	r := startStdinReader(bytes.NewReader([]byte(in)), 100)
	defer r.stop()
	var got []string
	for l := range r.lines {
		if l.err != nil {
			got = append(got, l.err.Error())
		} else {
			got = append(got, string(l.text))
		}
	}
	want := []string{"a", errLineTooLong.Error(), "b"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}

	pr, pw := io.Pipe()
	r2 := startStdinReader(pr, 100)
	r2.stop()
	pw.Write([]byte("ignored\n")) // the reader takes it, delivers nothing, and exits
	if _, ok := <-r2.lines; ok {
		t.Fatal("a stopped reader delivered a line")
	}
	pw.Close()
}

// A line is one JSON object and nothing else: a stray "}" or "]" after
// it (which json.Decoder.More does not see) fails the line, as any other
// text after the object does, instead of running the command.
func TestParseRefusesCloserAfterObject(t *testing.T) {
	send := `{"cmd":"send","peer":"` + testPeer + `","data":"x"}`
	for _, line := range []string{send + `}`, send + `]`, send + ` }`} {
		var parser commandParser
		cmd, err := parser.parse([]byte(line))
		if err == nil || !strings.Contains(err.Error(), "one JSON object per line") {
			t.Errorf("%s: got %#v, %v; want the one-object error", line, cmd, err)
		}
	}
}

// Text that is not UTF-8 is refused: encoding/json would send U+FFFD in
// place of each bad byte, a payload other than the one written.
func TestParseRefusesInvalidUTF8(t *testing.T) {
	line := []byte(`{"cmd":"send","peer":"` + testPeer + `","data":"caf` + "\xe9" + `"}`)
	var parser commandParser
	cmd, err := parser.parse(line)
	if err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("got %#v, %v; want a not UTF-8 error", cmd, err)
	}
}

// An automatic id never repeats one in use: an id so large that the
// numbering after it would wrap around to 1 is refused.
func TestAutoIDNeverWrapsAround(t *testing.T) {
	var parser commandParser
	seen := map[uint64]string{}
	for _, line := range []string{
		`{"cmd":"send","peer":"` + testPeer + `","data":"a"}`,
		`{"cmd":"send","peer":"` + testPeer + `","data":"b","id":18446744073709551615}`,
		`{"cmd":"send","peer":"` + testPeer + `","data":"c"}`,
	} {
		cmd, err := parser.parse([]byte(line))
		if err != nil {
			if !strings.Contains(err.Error(), `"id" must be at most`) {
				t.Errorf("%s: %v", line, err)
			}
			continue
		}
		id := cmd.(p2p.SendMsg).ID
		if prev, ok := seen[id]; ok {
			t.Fatalf("id %d given to %s and to %s", id, prev, line)
		}
		seen[id] = line
	}
	if _, err := parser.parse([]byte(`{"cmd":"request","peer":"` + testPeer + `","data":"d","id":9223372036854775807}`)); err != nil {
		t.Fatalf("the largest id: %v", err)
	}
}

// lineID finds the id of a line that is no valid command, and nothing
// else.
func TestLineID(t *testing.T) {
	for line, want := range map[string]uint64{
		`{"cmd":"request","data":"x","id":9}`: 9,
		`{"cmd":"fly","id":12,"extra":true}`:  12,
		`{"id":0}`:                            0,
		`{"id":-3}`:                           0,
		`{"id":"7"}`:                          0,
		`{"id":9223372036854775808}`:          0,
		`{"cmd":"send","data":"no id"}`:       0,
		`not json, "id":5`:                    0,
		`{"id":9223372036854775807,"peer":1}`: 9223372036854775807,
	} {
		if got := lineID([]byte(line)); got != want {
			t.Errorf("lineID(%s) = %d, want %d", line, got, want)
		}
	}
}
