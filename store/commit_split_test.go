//go:build linux

package store

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// splitFailMode is a helper-process mode (process_test.go's idiom, handled
// here in init, before TestMain, as it needs Linux's RLIMIT_FSIZE): it
// commits one group of two batches that maxCommitBytes splits into two
// pebble batches, and makes the second one's write-ahead log write fail
// (past RLIMIT_FSIZE a write fails with EFBIG, which pebble reports through
// Logger.Fatalf). It prints each batch's outcome and exits without
// closing, as a process that dies then.
const splitFailMode = "splitfail"

func init() {
	if os.Getenv(helperEnv) != splitFailMode {
		return
	}
	os.Exit(runSplitFail(os.Getenv(helperDir)))
}

func runSplitFail(dir string) int {
	fail := func(err error) int {
		fmt.Printf("error %v\n", err)
		return 1
	}
	maxCommitBytes = 50 << 10 // the two 40 KiB batches go in two parts
	signal.Ignore(syscall.SIGXFSZ)
	s, err := Open(dir, Options{})
	if err != nil {
		return fail(err)
	}
	release := holdCommitter(s)
	errs := [2]chan error{make(chan error, 1), make(chan error, 1)}
	for i := range 2 {
		var b Batch
		o := outgoing(uint64(i + 1))
		o.Payload = make([]byte, 40<<10)
		b.PutOutgoing(o)
		s.CommitAsync(&b, func(err error) { errs[i] <- err })
	}
	// Room in the write-ahead log for the first part, not for both.
	logs, err := filepath.Glob(filepath.Join(s.path, "*.log"))
	if err != nil || len(logs) == 0 {
		return fail(fmt.Errorf("no write-ahead log: %v", err))
	}
	var walSize int64
	for _, l := range logs {
		fi, err := os.Stat(l)
		if err != nil {
			return fail(err)
		}
		walSize = max(walSize, fi.Size())
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return fail(err)
	}
	lim.Cur = uint64(walSize + 48<<10)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		return fail(err)
	}
	release()
	for i := range 2 {
		err := <-errs[i]
		fmt.Printf("batch %d: %v\n", i+1, err)
	}
	return 0 // dies without Close
}

// TestSplitGroupFailureKeepsEarlierPartsSuccess: when a group larger than
// maxCommitBytes is committed in parts and a later part's commit fails,
// the batches of the earlier parts are durable; their callbacks must say
// so. A caller told "failed" for a record that a restart finds (an
// outgoing exchange the handler then resumes, after Request returned an
// error) is an ack that lies.
func TestSplitGroupFailureKeepsEarlierPartsSuccess(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, splitFailMode, dir)
	first := h.expect("batch 1: ")
	second := h.expect("batch 2: ")
	h.wait()
	if strings.HasSuffix(second, "<nil>") {
		t.Fatalf("the second part was committed (%q): the fault was not injected, and the test proves nothing", second)
	}
	s := openT(t, dir, Options{})
	closeT(t, s)
	var onDisk []uint64
	for _, o := range loadT(t, s).Outgoing {
		onDisk = append(onDisk, o.ID)
	}
	if len(onDisk) == 0 || onDisk[0] != 1 {
		t.Fatalf("after the restart the outbox holds %v; the first part was not committed (%q, %q)", onDisk, first, second)
	}
	if !strings.HasSuffix(first, "<nil>") {
		t.Errorf("outgoing 1 is on disk after the restart, but its Commit reported %q (the second part's failure: %q)", first, second)
	}
}
