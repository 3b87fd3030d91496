package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestOneLine(t *testing.T) {
	cases := map[string]string{
		"plain":         "plain",
		"a\nb\r\n  c\n": "a b c",
		"unknown command \"kegen\" for \"p2pnode\"\n\nDid you mean this?\n\tkeygen\n": `unknown command "kegen" for "p2pnode"; did you mean keygen?`,
	}
	for in, want := range cases {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	if exitCode(nil) != 0 || exitCode(errors.New("x")) != 1 || exitCode(usageErrorf("x")) != 2 {
		t.Fatal("exit codes")
	}
	// In process: a mistake is one line on stderr, with the exit status of
	// a usage error, and no usage dump on stdout.
	var out, errOut bytes.Buffer
	code := execute([]string{"kegen"}, stdio{out: &out, err: &errOut})
	if code != exitUsage || out.Len() != 0 || strings.Count(errOut.String(), "\n") != 1 ||
		!strings.HasPrefix(errOut.String(), `p2pnode: unknown command "kegen"`) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
