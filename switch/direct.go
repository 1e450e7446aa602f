package vswitch

// TryWriter is an optional interface of a [Port] (it is not part of the
// frozen Port contract, so ports that do not implement it work as before).
// A port that implements it lets the switch skip its transmit queue and
// writer goroutine when they are idle: the reader goroutine that switched a
// batch writes the frames for this port itself, which saves two goroutine
// wake-ups per hop.
//
// Rules, in addition to those of [Port.Write]:
//   - TryWrite never blocks. It sends frames bufs[i][offset:] in order for
//     as long as the transport takes them without waiting and returns how
//     many it sent; 0 with a nil error means "full now". The switch queues
//     the frames it did not send, in order, for the writer goroutine.
//   - A frame is sent whole or not at all: a stream port whose socket took
//     only part of a frame keeps the rest in a buffer of its own (never the
//     switch's buffer) and sends it before anything else, on the next
//     TryWrite or Write.
//   - An error is final, as for Write: the switch detaches the port.
//   - The switch calls TryWrite from reader goroutines (of any port), never
//     at the same time as Write or another TryWrite on the same port: both
//     run under the port's transmit lock, which orders them in memory.
//   - The same buffer may be passed to TryWrite of several ports one after
//     the other (a flood); the port may overwrite bufs[i][:offset] as
//     scratch but never the frame.
//
// The switch only tries: it takes the transmit lock with TryLock and only
// when the port's queue is empty, so a port whose Write is blocked (a VM
// that stopped reading) is never written directly and never slows a reader.
type TryWriter interface {
	TryWrite(bufs [][]byte, offset int) (int, error)
}
