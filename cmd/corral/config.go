package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// defaultYAML is the embedded default configuration (DESIGN.md section 7).
// A file given with --config is merged over it.
//
//go:embed default.yaml
var defaultYAML string

// fileConfig is the configuration as written in YAML, environment variables
// and flags: the keys of DESIGN.md section 7. It lives only in cmd; validate
// converts it into the typed Config of each package.
type fileConfig struct {
	Host     fileHost    `mapstructure:"host"`
	StateDir string      `mapstructure:"state_dir"`
	Uplink   fileUplink  `mapstructure:"uplink"`
	Fences   []fileFence `mapstructure:"fences"`
	Admin    struct {
		Listen string `mapstructure:"listen"`
	} `mapstructure:"admin"`
	Metrics struct {
		Listen string `mapstructure:"listen"`
	} `mapstructure:"metrics"`
	Log    fileLog    `mapstructure:"log"`
	Limits fileLimits `mapstructure:"limits"`
}

// fileLimits are the process-wide bounds of DESIGN.md 4.8 (issue 8).
type fileLimits struct {
	PortsPerListener    *int64 `mapstructure:"ports_per_listener"`
	PortsPerFence       *int64 `mapstructure:"ports_per_fence"`
	FrameTimeout        string `mapstructure:"frame_timeout"`
	DatagramIdleTimeout string `mapstructure:"datagram_idle_timeout"`
	MaxQueuedBytes      *int64 `mapstructure:"max_queued_bytes"`
}

// fileSeal is uplink.seal (DESIGN.md 3.6, issue 9).
type fileSeal struct {
	Mode               string `mapstructure:"mode"`
	SecretFile         string `mapstructure:"secret_file"`
	PreviousSecretFile string `mapstructure:"previous_secret_file"`
	Cipher             string `mapstructure:"cipher"`
}

// fileGossip is uplink.gossip (DESIGN.md 4.7, issue 10).
type fileGossip struct {
	Listen  string   `mapstructure:"listen"`
	Join    []string `mapstructure:"join"`
	Profile string   `mapstructure:"profile"`
}

// fileDNS is fences[].gateway.dns (issue 11).
type fileDNS struct {
	Records []fileDNSRecord `mapstructure:"records"`
}

// fileDNSRecord is one static DNS record of a fence's gateway.
type fileDNSRecord struct {
	Name string   `mapstructure:"name"`
	Type string   `mapstructure:"type"`
	Data []string `mapstructure:"data"`
	TTL  string   `mapstructure:"ttl"`
}

type fileHost struct {
	Name         string `mapstructure:"name"`
	Installation *int64 `mapstructure:"installation"`
	ID           *int64 `mapstructure:"id"` // nil: derived from machine-id and name
	OUI          string `mapstructure:"oui"`
	EtherType    *int64 `mapstructure:"ethertype"`
}

type fileUplink struct {
	MTU *int64 `mapstructure:"mtu"`
	UDP struct {
		Listen     string   `mapstructure:"listen"`
		Peers      []string `mapstructure:"peers"`
		Group      string   `mapstructure:"group"`
		LearnPeers *bool    `mapstructure:"learn_peers"`
	} `mapstructure:"udp"`
	Raw struct {
		Interface string `mapstructure:"interface"`
	} `mapstructure:"raw"`
	HelloInterval  string     `mapstructure:"hello_interval"`
	MaxMACsPerHost *int64     `mapstructure:"max_macs_per_host"`
	Seal           fileSeal   `mapstructure:"seal"`
	Gossip         fileGossip `mapstructure:"gossip"`
}

type fileFence struct {
	Name     string      `mapstructure:"name"`
	ID       *int64      `mapstructure:"id"`
	Listen   []string    `mapstructure:"listen"`
	Dial     []string    `mapstructure:"dial"`
	MaxMACs  int64       `mapstructure:"max_macs"`
	PortMACs int64       `mapstructure:"port_max_macs"`
	Gateway  fileGateway `mapstructure:"gateway"`
	KeyFile  string      `mapstructure:"key_file"`
	// PreviousKeyFile is accepted on receive during a rotation of
	// key_file, never used to send (as uplink.seal.previous_secret_file).
	PreviousKeyFile string `mapstructure:"previous_key_file"`
	BUMRate         *int64 `mapstructure:"bum_rate"`
}

type fileGateway struct {
	Enabled        bool          `mapstructure:"enabled"`
	Subnet         string        `mapstructure:"subnet"`
	MAC            string        `mapstructure:"mac"`
	MTU            int64         `mapstructure:"mtu"`
	Domain         string        `mapstructure:"domain"`
	LeaseTime      string        `mapstructure:"lease_time"`
	Resolvers      []string      `mapstructure:"resolvers"`
	Forwards       []fileForward `mapstructure:"forwards"`
	MaxTCPConns    int64         `mapstructure:"max_tcp_conns"`
	MaxUDPFlows    int64         `mapstructure:"max_udp_flows"`
	UDPIdleTimeout string        `mapstructure:"udp_idle_timeout"`
	IPv6           *bool         `mapstructure:"ipv6"` // nil: true
	IPv6Prefix     string        `mapstructure:"ipv6_prefix"`
	Allow          []string      `mapstructure:"allow"`
	Deny           []string      `mapstructure:"deny"`

	HostLoopback        *bool   `mapstructure:"host_loopback"` // nil: true
	MaxTCPConnsPerGuest *int64  `mapstructure:"max_tcp_conns_per_guest"`
	MaxUDPFlowsPerGuest *int64  `mapstructure:"max_udp_flows_per_guest"`
	TCPIdleTimeout      string  `mapstructure:"tcp_idle_timeout"`
	Socks               string  `mapstructure:"socks"`
	DNS                 fileDNS `mapstructure:"dns"`
}

type fileForward struct {
	Proto  string `mapstructure:"proto"`
	Listen string `mapstructure:"listen"`
	Target string `mapstructure:"target"`
	SNI    string `mapstructure:"sni"`
	Host   string `mapstructure:"host"`
}

type fileLog struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// ConfigError is a configuration error; corral exits with status 2 on it.
type ConfigError struct {
	Key    string // e.g. "fences[1].id"; "" when the whole file is at fault
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "config: " + e.Reason
	}
	return "config: " + e.Key + ": " + e.Reason
}

func cfgErr(key, format string, args ...any) error {
	return &ConfigError{Key: key, Reason: fmt.Sprintf(format, args...)}
}

// addConfigFlags declares the flags that feed the configuration on fs.
func addConfigFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "configuration file (YAML; every key is in docs/configuration.md; env CORRAL_CONFIG); merged over the embedded default")
	fs.String("log-level", "", "log level: debug, info, warn, error (key log.level, env CORRAL_LOG_LEVEL)")
	fs.String("log-format", "", "log format: text or json (key log.format, env CORRAL_LOG_FORMAT)")
}

// flagKeys maps flags to the configuration keys they set.
var flagKeys = map[string]string{
	"log-level":  "log.level",
	"log-format": "log.format",
}

// parseArgs parses argv with fs (which must hold the flags of
// addConfigFlags), reads the configuration once (embedded default, then
// --config FILE, then CORRAL_* environment variables, then flags) and
// validates it. Every configuration error is a *ConfigError.
func parseArgs(fs *pflag.FlagSet, argv []string) (*Config, error) {
	if err := fs.Parse(argv); err != nil {
		return nil, &ConfigError{Reason: err.Error()}
	}
	return loadConfig(fs)
}

// loadConfig reads and validates the configuration; fs has been parsed.
func loadConfig(fs *pflag.FlagSet) (*Config, error) {
	raw, err := readConfig(fs)
	if err != nil {
		return nil, err
	}
	return validate(raw)
}

// loadConfigRaw is loadConfig that also returns the configuration as
// read (reload compares it with the running one).
func loadConfigRaw(fs *pflag.FlagSet) (*fileConfig, *Config, error) {
	raw, err := readConfig(fs)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := validate(raw)
	return raw, cfg, err
}

// readConfig merges the layers into a fileConfig, rejecting unknown keys.
func readConfig(fs *pflag.FlagSet) (*fileConfig, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(defaultYAML)); err != nil {
		return nil, fmt.Errorf("embedded default configuration: %w", err) // a bug, not the user's
	}
	name := os.Getenv("CORRAL_CONFIG")
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		name = f.Value.String()
	}
	if name != "" {
		file, err := os.Open(name)
		if err != nil {
			return nil, &ConfigError{Reason: err.Error()}
		}
		defer file.Close()
		if err := v.MergeConfig(file); err != nil {
			return nil, &ConfigError{Reason: fmt.Sprintf("%s: %v", name, err)}
		}
	}
	// CORRAL_LOG_LEVEL → log.level. Environment variables are bound per
	// leaf key so that keys absent from every file are seen too.
	v.SetEnvPrefix("CORRAL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range leafKeys(reflect.TypeFor[fileConfig](), "") {
		if err := v.BindEnv(k); err != nil {
			return nil, err
		}
	}
	for flag, key := range flagKeys {
		if f := fs.Lookup(flag); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, err
			}
		}
	}
	var raw fileConfig
	if err := v.UnmarshalExact(&raw, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
	}); err != nil {
		return nil, decodeError(err)
	}
	return &raw, nil
}

// leafKeys lists the dotted keys of t's scalar and scalar-slice fields,
// not descending into slices of structs (fences), which no environment
// variable can express.
func leafKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		name := f.Tag.Get("mapstructure")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, leafKeys(ft, key+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// decodeError turns mapstructure's errors into ConfigErrors naming the key.
func decodeError(err error) error {
	var des []*mapstructure.DecodeError
	collectDecodeErrors(err, &des)
	if len(des) == 0 {
		return &ConfigError{Reason: err.Error()}
	}
	// Report the first; the user fixes them one at a time.
	de := des[0]
	if r, ok := strings.CutPrefix(de.Unwrap().Error(), "has invalid keys: "); ok {
		key := strings.Split(r, ", ")[0]
		if de.Name() != "" {
			key = de.Name() + "." + key
		}
		return &ConfigError{Key: key, Reason: "unknown key"}
	}
	return &ConfigError{Key: de.Name(), Reason: de.Unwrap().Error()}
}

func collectDecodeErrors(err error, out *[]*mapstructure.DecodeError) {
	if de, ok := err.(*mapstructure.DecodeError); ok {
		*out = append(*out, de)
		return
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			collectDecodeErrors(x, out)
		}
	case interface{ Unwrap() error }:
		if x := e.Unwrap(); x != nil {
			collectDecodeErrors(x, out)
		}
	}
}

// isConfigError reports whether err is a configuration error (exit 2).
func isConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}
