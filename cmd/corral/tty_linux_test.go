package main

import (
	"os"
	"testing"
)

// TestIsTerminal: a pseudo-terminal is one, /dev/null and a pipe are not.
func TestIsTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	defer ptmx.Close()
	if !isTerminal(ptmx) || terminalWriter(ptmx) == nil {
		t.Errorf("a pseudo-terminal is not taken for a terminal")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, f := range []*os.File{null, w} {
		if isTerminal(f) || terminalWriter(f) != nil {
			t.Errorf("%s is taken for a terminal", f.Name())
		}
	}
}
