// Package pcap writes and reads the classic libpcap capture file format,
// the one tcpdump -w writes and Wireshark reads (draft-ietf-opsawg-pcap,
// https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcap/):
//
//	file   = file header (24 bytes) · record*
//	record = record header (16 bytes) · the captured bytes of one packet
//
//	file header                         record header
//	 0  magic number (4)                 0  timestamp, seconds (4)
//	 4  major version 2 (2)              4  timestamp, µs or ns (4)
//	 6  minor version 4 (2)              8  captured length (4)
//	 8  reserved, 0 (4)                 12  original length (4)
//	12  reserved, 0 (4)
//	16  snaplen (4)
//	20  link type (4)
//
// The magic number 0xA1B2C3D4 (microsecond timestamps) or 0xA1B23C4D
// (nanosecond timestamps), read in the writer's byte order, gives both the
// byte order of every other field and the timestamp resolution.
//
// [Writer] writes little-endian files with microsecond timestamps, what
// corral's capture route streams. [Reader] reads either byte order and
// either resolution, so it also reads what tcpdump writes; it checks every
// length against [MaxSnaplen] before it allocates, so a hostile or cut file
// yields an error, never a panic or a huge allocation.
//
// The package replaces github.com/google/gopacket/pcapgo, of which corral
// used only the writer and, in tests, the reader.
package pcap
