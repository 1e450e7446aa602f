package attach

// msgNoSignal: darwin has no MSG_NOSIGNAL (SO_NOSIGPIPE instead); the Go
// runtime already turns SIGPIPE on a socket into EPIPE.
const msgNoSignal = 0
