package attach

// abstractUnix says unix socket addresses may be abstract names (a leading
// NUL, Linux only); elsewhere a name starting with NUL is unnamed.
const abstractUnix = true
