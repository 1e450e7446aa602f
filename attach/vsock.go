package attach

// vmaddrCIDAny is VMADDR_CID_ANY (-1U), the "any context ID" of a vsock
// listener; x/sys/unix defines it only where the OS has AF_VSOCK.
const vmaddrCIDAny = 1<<32 - 1
