package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// referencePath is the generated reference, relative to this package.
var referencePath = filepath.Join("..", "..", "docs", "configuration.md")

// configKeys lists the keys of t as keyDoc.Key spells them, with their
// Go types: scalars and lists of scalars, and lists of objects (whose
// keys follow with "[]."). Plain objects ("host") are only prefixes.
func configKeys(t reflect.Type, prefix string, f func(key string, ft reflect.Type)) {
	for fl := range t.Fields() {
		name := fl.Tag.Get("mapstructure")
		if name == "" || name == "-" {
			continue
		}
		key, ft := prefix+name, fl.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			configKeys(ft, key+".", f)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			f(key, ft)
			configKeys(ft.Elem(), key+"[].", f)
		default:
			f(key, ft)
		}
	}
}

// TestConfigReference: every key of fileConfig is documented once, with
// a type that matches its field and an example that decodes into it, and
// docs/configuration.md is the text keyDocs generate.
func TestConfigReference(t *testing.T) {
	docs := map[string]keyDoc{}
	for _, d := range keyDocs {
		if _, dup := docs[d.Key]; dup {
			t.Errorf("%s: documented twice", d.Key)
		}
		docs[d.Key] = d
	}
	seen := map[string]bool{}
	configKeys(reflect.TypeFor[fileConfig](), "", func(key string, ft reflect.Type) {
		seen[key] = true
		d, ok := docs[key]
		if !ok {
			t.Errorf("%s (%v): no entry in keyDocs (cmd/corral/keydocs.go)", key, ft)
			return
		}
		if d.Default == "" || d.Doc == "" || d.Type == "" {
			t.Errorf("%s: type, default and meaning are required", key)
		}
		if want := typeWord(ft); want == "string" && !isStringType(d.Type) || want != "string" && !strings.HasPrefix(d.Type, want) {
			t.Errorf("%s: documented as %q, but its field is %v (want %q…)", key, d.Type, ft, want)
		}
		if d.Example == "" {
			if ft.Kind() != reflect.Slice || ft.Elem().Kind() != reflect.Struct {
				t.Errorf("%s: no example", key)
			}
			return
		}
		if err := decodeExample(key, d.Example); err != nil {
			t.Errorf("%s: example %s does not decode: %v", key, d.Example, err)
		}
	})
	for _, d := range keyDocs {
		if !seen[d.Key] {
			t.Errorf("%s: documented, but fileConfig has no such key", d.Key)
		}
		if keySection(d.Key) < 0 {
			t.Errorf("%s: in no section of keySections", d.Key)
		}
	}

	// The checker can fail.
	for _, bad := range [][2]string{{"fences[].id", "abc"}, {"fences[].bogus", "1"}, {"fences[].gateway.dns.records[].data", "{a: 1}"}, {"uplink.udp.learn_peers", "maybe"}} {
		if decodeExample(bad[0], bad[1]) == nil {
			t.Errorf("decodeExample(%s, %s) accepted it", bad[0], bad[1])
		}
	}

	got := configReference()
	if *update {
		if err := os.MkdirAll(filepath.Dir(referencePath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (generate it with go test ./cmd/corral -run TestConfigReference -update)", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs from keyDocs; regenerate it with go test ./cmd/corral -run TestConfigReference -update", referencePath)
	}
}

// typeWord is how a key's type starts in keyDocs, from its field's type.
func typeWord(ft reflect.Type) string {
	switch ft.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Slice:
		if ft.Elem().Kind() == reflect.Struct {
			return "list of objects"
		}
		return "list of strings"
	}
	return "string"
}

// isStringType reports whether a documented type is one kept in a string
// field: strings and durations.
func isStringType(t string) bool {
	return strings.HasPrefix(t, "string") || strings.HasPrefix(t, "duration")
}

// decodeExample decodes key: example (a YAML value; lists of objects
// hold one element) into a fileConfig the way readConfig does, unknown
// keys refused.
func decodeExample(key, example string) error {
	ev := viper.New()
	ev.SetConfigType("yaml")
	if err := ev.ReadConfig(strings.NewReader("x: " + example + "\n")); err != nil {
		return err
	}
	val := ev.Get("x")
	parts := strings.Split(key, ".")
	for i := len(parts) - 1; i >= 0; i-- {
		name, list := strings.CutSuffix(parts[i], "[]")
		if list && i < len(parts)-1 {
			val = []any{val}
		}
		val = map[string]any{name: val}
	}
	v := viper.New()
	if err := v.MergeConfigMap(val.(map[string]any)); err != nil {
		return err
	}
	var raw fileConfig
	return v.UnmarshalExact(&raw, func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true })
}
