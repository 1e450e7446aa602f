package attach

import (
	"context"
	"sync"

	vswitch "github.com/corralnet/corral/switch"
)

// Splice moves frames between a and b in both directions, in batches of
// up to min(a.BatchSize(), b.BatchSize(), 64) frames, with buffers allocated
// once (vswitch.BufSize each, frames at offset vswitch.Headroom). It
// returns when either side fails or ctx is done, after closing both ports
// and waiting for its goroutines: the first error (io.EOF when a stream
// ended cleanly), or ctx.Err().
func Splice(ctx context.Context, a, b vswitch.Port) error {
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	stop := func(err error) {
		once.Do(func() {
			first = err
			a.Close()
			b.Close()
		})
	}
	unreg := context.AfterFunc(ctx, func() { stop(ctx.Err()) })
	defer unreg()
	// Every buffer is vswitch.BufSize (64 KiB) and preallocated, so the
	// batch is capped: a stream port's BatchSize (IOV_MAX, for writev)
	// would otherwise cost 2 × 1024 × 64 KiB.
	batch := max(min(a.BatchSize(), b.BatchSize(), maxSpliceBatch), 1)
	wg.Add(2)
	go func() { defer wg.Done(); stop(pump(a, b, batch)) }()
	go func() { defer wg.Done(); stop(pump(b, a, batch)) }()
	wg.Wait()
	return first
}

// maxSpliceBatch bounds Splice's batches (and so its memory: 2 × 64 × 64 KiB).
const maxSpliceBatch = 64

// pump copies frames from src to dst until one fails.
func pump(src, dst vswitch.Port, batch int) error {
	return Pump(src, batch, func(out [][]byte) error {
		_, err := dst.Write(out, vswitch.Headroom)
		return err
	})
}

// Pump reads batches of up to batch frames from src (each into a
// vswitch.BufSize buffer, at vswitch.Headroom) and hands them to write, as
// slices ending where their frames end, until a Read or write fails. The
// slices are valid until write returns.
func Pump(src vswitch.Port, batch int, write func(out [][]byte) error) error {
	const off = vswitch.Headroom
	bufs := make([][]byte, batch)
	out := make([][]byte, batch)
	sizes := make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	for {
		n, err := src.Read(bufs, sizes, off)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			out[i] = bufs[i][:off+sizes[i]]
		}
		if err := write(out[:n]); err != nil {
			return err
		}
	}
}
