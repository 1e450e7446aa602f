package tap

// errNoTAP is why this OS cannot open TAP devices; nil on Linux.
var errNoTAP error
