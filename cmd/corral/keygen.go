package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/fence"
)

// `corral keygen [FILE]`: a new installation secret (or fence key) for a
// sealed uplink (DESIGN.md 3.6): 32 random bytes from crypto/rand,
// written as 64 hex digits and a newline. To FILE, created with mode
// 0600 (an existing FILE is refused unless --force), or to stdout. The
// key ID goes to stderr: it names the key in frames, logs and corral
// peers, and tells whether a new secret's ID collides with the one it
// replaces (then run keygen again).

func (c *cli) newKeygenCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen [FILE]",
		Short: "Write a new secret for uplink.seal.secret_file or fences[].key_file",
		Long: `keygen writes 32 random bytes as 64 hex digits to FILE, created with mode
0600 (it refuses to overwrite an existing FILE unless --force), or to
stdout without FILE. It prints the key's ID to stderr.

  corral keygen /etc/corral/installation.key
  scp -p /etc/corral/installation.key otherhost:/etc/corral/`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("keygen takes at most one FILE, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) == 1 {
				file = args[0]
			}
			return c.keygen(file, force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	return cmd
}

func (c *cli) keygen(file string, force bool) error {
	var key [fence.SealKeyLen]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	defer clear(key[:])
	text := make([]byte, 0, 2*len(key)+1)
	text = hex.AppendEncode(text, key[:])
	text = append(text, '\n')
	defer clear(text)
	id := fence.KeyID(key[:])
	if file == "" {
		if _, err := c.stdout.Write(text); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		fmt.Fprintf(c.stderr, "key ID %#02x\n", id)
		return nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(file, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return usageError{fmt.Errorf("keygen: %s exists; use --force to overwrite it", file)}
	}
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	// An existing file overwritten with --force keeps its mode otherwise.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("keygen: %w", err)
	}
	_, werr := f.Write(text)
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return fmt.Errorf("keygen: %s: %w", file, err)
	}
	fmt.Fprintf(c.stderr, "wrote %s (mode 0600), key ID %#02x\n", file, id)
	return nil
}
