package attach

import (
	"bytes"
	"errors"
	"io"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

// chunkReader hands out its bytes in pieces of the given sizes.
type chunkReader struct {
	b      []byte
	chunks []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := len(r.b)
	if len(r.chunks) > 0 {
		n = max(1, int(r.chunks[0]))
		r.chunks = r.chunks[1:]
	}
	n = min(n, len(r.b), len(p))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}
func (r *chunkReader) Write(p []byte) (int, error) { return len(p), nil }
func (r *chunkReader) Close() error                { return nil }

// FuzzStreamRead feeds arbitrary bytes, split arbitrarily, to a stream
// port: it never panics, every frame is within bounds, the frames
// re-encoded are exactly the prefix of the input that Read consumed, and
// the only errors are EOF, an unexpected EOF or a framing error.
func FuzzStreamRead(f *testing.F) {
	f.Add(encode(frame(1, 60), frame(2, 14)), []byte{3, 100})
	f.Add(encode(frame(1, 1514)), []byte{1, 1, 1, 1, 255})
	f.Add([]byte{0, 0, 0, 0}, []byte{})
	f.Add([]byte{0, 1, 0, 1, 9}, []byte{2})
	f.Add([]byte{0, 0, 0, 20, 1, 2}, []byte{})
	f.Fuzz(func(t *testing.T, in, chunks []byte) {
		const maxFrame = 300
		p := newStreamPort(&chunkReader{b: in, chunks: chunks}, Options{MaxFrame: maxFrame}.withDefaults())
		bufs := make([][]byte, 4)
		for i := range bufs {
			bufs[i] = make([]byte, vswitch.Headroom+maxFrame)
		}
		sizes := make([]int, 4)
		var out []byte
		for {
			n, err := p.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				if n != 0 {
					t.Fatalf("n = %d with error %v", n, err)
				}
				switch {
				case err == io.EOF:
					if !bytes.Equal(out, in) {
						t.Fatal("clean EOF but not every byte became a frame")
					}
				case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrFrameLength):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			for i := 0; i < n; i++ {
				if sizes[i] < 1 || sizes[i] > maxFrame {
					t.Fatalf("frame size %d", sizes[i])
				}
				out = append(out, encode(bufs[i][vswitch.Headroom:vswitch.Headroom+sizes[i]])...)
			}
			if !bytes.HasPrefix(in, out) {
				t.Fatal("frames do not re-encode to the input")
			}
		}
	})
}
