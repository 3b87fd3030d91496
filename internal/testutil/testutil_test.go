package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// fatalTB records the message a helper fails with, and stops the failing
// goroutine as testing.T.Fatalf does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A failed wait names what it skipped: the failed Status a test passed
// over on its way to an event that never came is the failure's reason.
func TestNextNamesSkippedEvents(t *testing.T) {
	ch := make(chan any, 20)
	for i := range 10 {
		ch <- fmt.Sprintf("event %d", i)
	}
	close(ch)
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Next[int](f, ch)
	}()
	<-done
	for _, want := range []string{"channel closed while waiting for int", "skipped 10 events, the last 8", "string event 2", "string event 9"} {
		if !strings.Contains(f.msg, want) {
			t.Errorf("the failure %q does not say %q", f.msg, want)
		}
	}
	if strings.Contains(f.msg, "event 1\n") || strings.HasSuffix(f.msg, "event 1") {
		t.Errorf("the failure %q names more than the last 8 events", f.msg)
	}
}
