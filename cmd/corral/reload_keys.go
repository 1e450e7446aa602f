package main

import (
	"errors"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// reloadKeys re-reads the key files of the sealed uplink that rt runs
// (uplink.seal.secret_file and previous_secret_file, fences[].key_file and
// previous_key_file, as named by rt.cfg.Seal) and swaps the keys into the
// running uplink atomically (uplink.Uplink.SetKeys): every frame is
// sealed or opened with the old keys or the new ones, none is lost to the
// swap, and the send counter and replay windows carry on. On any error
// (a missing or unreadable file, a bad mode, two keys with one ID) the
// running keys stay and the error, a *ConfigError naming the key, is
// returned for the caller to log.
//
// It reads the key files only, not the configuration file. SIGHUP calls
// it (watchReload); a general `corral reload` would first swap in the new
// configuration's settings (rt.cfg.Seal) and then call it.
func reloadKeys(rt *instance) error {
	if rt.cfg.Seal == nil || rt.uplink == nil || !rt.uplink.Sealed() {
		return errNoSeal
	}
	keys, err := rt.cfg.Seal.keys()
	if err != nil {
		return err
	}
	if err := rt.uplink.SetKeys(keys); err != nil {
		return err
	}
	return reloadGossipKeys(rt)
}

// watchReload calls reloadKeys on every SIGHUP until rt shuts down, and
// logs the outcome (never a key).
func (rt *instance) watchReload() error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	rt.group.Go(func() error {
		defer signal.Stop(hup)
		for {
			select {
			case <-rt.ctx.Done():
				return nil
			case <-hup:
				// The configuration (reload.go), then the keys.
				changes, err := rt.reloadAll()
				switch {
				case errors.Is(err, errKeysNotReloaded):
					rt.log.Error("SIGHUP: keys not reloaded; the running keys stay", "err", err)
				case err != nil:
					rt.log.Error("SIGHUP: reload refused; the running configuration stays", "err", err)
				default:
					if slices.Contains(changes, keysReloaded) {
						rt.log.Info("SIGHUP: uplink keys reloaded")
					}
					rt.log.Info("SIGHUP: reloaded", "changes", len(changes))
				}
			}
		}
	})
	return nil
}
