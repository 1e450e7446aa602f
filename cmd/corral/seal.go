package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/corralnet/corral/fence"
	"github.com/corralnet/corral/uplink"
)

// The sealed uplink's keys (DESIGN.md 3.6, issue 9): uplink.seal.* and
// fences[].key_file. Key files are read at start (a bad or missing one is
// a configuration error, exit status 2, naming its key) and again by
// reloadKeys (SIGHUP). A secret is never logged, printed, counted or
// captured: errors name the key and the file, never the bytes.

// SealSettings is where the keys of a sealed uplink come from: the
// configuration's file names, kept so that a reload reads them again.
type SealSettings struct {
	Cipher             uplink.Cipher
	SecretFile         string // uplink.seal.secret_file
	PreviousSecretFile string // uplink.seal.previous_secret_file; "" for none
	Installation       uint8
	// Fences are the configured fences: each gets a key derived from the
	// secret, or its own key file.
	Fences []SealFence
}

// SealFence is one fence's key source.
type SealFence struct {
	ID              uint32
	Key             string // fences[i], for error messages
	KeyFile         string // fences[i].key_file; "" derives from the secret
	PreviousKeyFile string // fences[i].previous_key_file
}

// sealMode values of uplink.seal.mode.
const (
	sealOff      = "off"
	sealRequired = "required"
)

// sealConfig checks uplink.seal.* and fences[].key_file, and reads the
// keys once so that a bad file fails at start. It returns nil settings
// when the uplink is not sealed.
func sealConfig(raw *fileConfig, installation uint8) (*SealSettings, error) {
	s := raw.Uplink.Seal
	mode := strings.ToLower(s.Mode)
	switch mode {
	case "", sealOff:
		if s.SecretFile != "" || s.PreviousSecretFile != "" || s.Cipher != "" {
			return nil, cfgErr("uplink.seal.mode", "%q: uplink.seal keys are set but sealing is off; set mode: required", s.Mode)
		}
		for i, f := range raw.Fences {
			if f.KeyFile != "" || f.PreviousKeyFile != "" {
				return nil, cfgErr(fmt.Sprintf("fences[%d].key_file", i), "set while uplink.seal.mode is off")
			}
		}
		return nil, nil
	case sealRequired:
	default:
		return nil, cfgErr("uplink.seal.mode", "%q: want off or required", s.Mode)
	}
	ss := &SealSettings{Installation: installation}
	if s.Cipher != "" {
		c, err := uplink.ParseCipher(strings.ToLower(s.Cipher))
		if err != nil {
			return nil, cfgErr("uplink.seal.cipher", "%q: want aes-256-gcm or chacha20-poly1305", s.Cipher)
		}
		ss.Cipher = c
	}
	if s.SecretFile == "" {
		return nil, cfgErr("uplink.seal.secret_file", "required when uplink.seal.mode is required (create one with corral keygen FILE)")
	}
	var err error
	if ss.SecretFile, err = expand("uplink.seal.secret_file", s.SecretFile); err != nil {
		return nil, err
	}
	if s.PreviousSecretFile != "" {
		if ss.PreviousSecretFile, err = expand("uplink.seal.previous_secret_file", s.PreviousSecretFile); err != nil {
			return nil, err
		}
	}
	for i, f := range raw.Fences {
		k := fmt.Sprintf("fences[%d]", i)
		sf := SealFence{Key: k}
		if f.ID != nil {
			sf.ID = uint32(*f.ID)
		}
		if f.KeyFile != "" {
			if sf.KeyFile, err = expand(k+".key_file", f.KeyFile); err != nil {
				return nil, err
			}
		}
		if f.PreviousKeyFile != "" {
			if f.KeyFile == "" {
				return nil, cfgErr(k+".previous_key_file", "set without %s.key_file", k)
			}
			if sf.PreviousKeyFile, err = expand(k+".previous_key_file", f.PreviousKeyFile); err != nil {
				return nil, err
			}
		}
		ss.Fences = append(ss.Fences, sf)
	}
	return ss, nil
}

// keys reads every key file and returns the fence keys: for fence 0 and
// every fence, the send key (derived from the secret, or the fence's own
// key file) and, during a rotation, receive-only keys (the previous
// secret's, or the fence's previous key file). Errors are ConfigErrors
// naming the key at fault.
func (ss *SealSettings) keys() ([]fence.FenceKey, error) {
	secret, err := readSecret("uplink.seal.secret_file", ss.SecretFile)
	if err != nil {
		return nil, err
	}
	var prev []byte
	if ss.PreviousSecretFile != "" {
		if prev, err = readPrevious("uplink.seal.previous_secret_file", ss.PreviousSecretFile); err != nil {
			return nil, err
		}
		if prev != nil {
			if err := distinct("uplink.seal.previous_secret_file", secret, prev, "uplink.seal.secret_file"); err != nil {
				return nil, err
			}
		}
	}
	derive := func(key string, sec []byte, f uint32, recvOnly bool) (fence.FenceKey, error) {
		k, err := fence.DeriveFenceKey(sec, ss.Installation, f)
		if err != nil {
			return fence.FenceKey{}, cfgErr(key, "%v", err)
		}
		return fence.FenceKey{ID: fence.KeyID(sec), Fence: f, Key: k, ReceiveOnly: recvOnly}, nil
	}
	var keys []fence.FenceKey
	add := func(key string, sec []byte, f uint32, recvOnly bool) error {
		k, err := derive(key, sec, f, recvOnly)
		keys = append(keys, k)
		return err
	}
	// Fence 0 (hellos) and every fence without its own key: from the secret.
	fences := append([]SealFence{{ID: fence.ControlFence}}, ss.Fences...)
	for _, f := range fences {
		if f.KeyFile != "" {
			own, err := readSecret(f.Key+".key_file", f.KeyFile)
			if err != nil {
				return nil, err
			}
			keys = append(keys, fence.FenceKey{ID: fence.KeyID(own), Fence: f.ID, Key: [fence.SealKeyLen]byte(own)})
			if f.PreviousKeyFile != "" {
				p, err := readPrevious(f.Key+".previous_key_file", f.PreviousKeyFile)
				if err != nil {
					return nil, err
				}
				if p == nil {
					continue
				}
				if err := distinct(f.Key+".previous_key_file", own, p, f.Key+".key_file"); err != nil {
					return nil, err
				}
				keys = append(keys, fence.FenceKey{ID: fence.KeyID(p), Fence: f.ID, Key: [fence.SealKeyLen]byte(p), ReceiveOnly: true})
			}
			continue
		}
		if err := add("uplink.seal.secret_file", secret, f.ID, false); err != nil {
			return nil, err
		}
		if prev != nil {
			if err := add("uplink.seal.previous_secret_file", prev, f.ID, true); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

// distinct refuses a previous key equal to the current one, or with the
// same key ID (a receiver could not tell which one a frame names).
func distinct(key string, cur, prev []byte, curKey string) error {
	if bytes.Equal(cur, prev) {
		return cfgErr(key, "holds the same secret as %s", curKey)
	}
	if fence.KeyID(cur) == fence.KeyID(prev) {
		return cfgErr(key, "has the same key ID (%#02x) as %s: 1 in 256 pairs of secrets do; generate the new one again (corral keygen)", fence.KeyID(cur), curKey)
	}
	return nil
}

// readPrevious is readSecret for a previous (receive-only) secret: an
// empty file (or only white space) means none, so that the key can stay
// in the configuration between rotations and a reload retire the old
// secret by emptying the file.
func readPrevious(key, path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err == nil && st.Mode().IsRegular() && st.Size() <= maxSecretFile {
		if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) == 0 {
			if perm := st.Mode().Perm(); perm != 0o600 && perm != 0o400 {
				return nil, cfgErr(key, "%s: mode %04o: a secret file must be readable by its owner only (chmod 600 %s)", path, perm, path)
			}
			return nil, nil
		}
	}
	return readSecret(key, path)
}

// maxSecretFile bounds what readSecret reads: 64 hex digits and a newline
// (CRLF) with room to spare.
const maxSecretFile = 256

// readSecret reads a secret file: a regular file of mode 0600 or 0400
// holding 32 bytes, or 64 hex digits (surrounding white space ignored).
// Errors are ConfigErrors naming key and the file, never its contents.
func readSecret(key, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, cfgErr(key, "%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, cfgErr(key, "%v", err)
	}
	if !st.Mode().IsRegular() {
		return nil, cfgErr(key, "%s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm != 0o600 && perm != 0o400 {
		return nil, cfgErr(key, "%s: mode %04o: a secret must be readable by its owner only (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, cfgErr(key, "%s: %v", path, err)
	}
	defer clear(b)
	if len(b) == fence.SealKeyLen {
		return bytes.Clone(b), nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 2*fence.SealKeyLen {
		out := make([]byte, fence.SealKeyLen)
		if _, err := hex.Decode(out, t); err == nil {
			return out, nil
		}
	}
	return nil, cfgErr(key, "%s: want 32 bytes, or 64 hex digits (corral keygen writes one); the file has %d bytes", path, len(b))
}

// errNoSeal: reloadKeys on a corral without a sealed uplink.
var errNoSeal = errors.New("the uplink is not sealed: no keys to reload")
