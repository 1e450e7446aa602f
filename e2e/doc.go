// Package e2e holds corral's integration and end-to-end tests: they run the
// real corral binary (built once per test binary by harness.CorralBinary)
// against real peers — processes, TAP devices in network namespaces, and
// QEMU guests booted from a Debian kernel and a busybox initramfs.
//
// Files are named <area>_linux_test.go; tests are named TestIntegration…
// (the binary with sockets, namespaces and corral plug) or TestE2E… (real
// QEMU guests). They share package [github.com/corralnet/corral/e2e/harness].
//
// # Running them
//
// They need root (network namespaces, veth, TAP, AF_PACKET) and, for the
// QEMU tests, qemu-system-x86, busybox-static, cpio, xz-utils and kmod.
// `make test` does everything on a fresh Debian 12 machine: it runs
// contrib/test-deps.sh (installs the missing apt packages, saying which and
// why, and builds the guest image into .cache/guest with
// contrib/guest/build.sh), then `go vet ./...` and, as root with CI=true,
// `go test -race ./...`. To run only these tests:
//
//	sudo ./contrib/test-deps.sh
//	sudo CI=true go test -race -count=1 -run 'TestIntegration|TestE2E' ./e2e/...
//
// With CI=true a test that lacks root fails; without it, such a test skips
// (harness.NeedRoot). Nothing else skips, except vsock tests when the kernel
// has no AF_VSOCK loopback, which say so.
//
// # QEMU guests
//
// KVM does not work on the CI machines (they are VMs without nested
// virtualisation), so guests run under TCG: about 4 s from launch to the
// test script, 128 MB each. A guest's script travels gzip+base64 on the
// kernel command line (or, when too long, in a cpio archive appended to a
// copy of the initrd); /init runs it after loading virtio-net and printing
// "CORRAL-START:", prints "CORRAL-RESULT: <status>" and powers off. Scripts
// wait for the test with `read -r x` on the console (harness Guest.Send), so
// a test can line up several guests before they act. QEMU 7.2 never
// reconnects a client socket: corral must be listening before a
// server=off guest starts, and corral must dial a server=on guest.
package e2e
