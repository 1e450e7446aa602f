package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/corralnet/corral/admin"
)

// TestStreamFDBJSON: the pages written as they arrive make the JSON of
// the merged table (one element per fence), empty fences and an empty
// listing included.
func TestStreamFDBJSON(t *testing.T) {
	e := func(m string) admin.FDBEntry { return admin.FDBEntry{MAC: m, Port: 1, PortName: "p", Age: 1} }
	for _, pages := range [][]admin.FDBPage{
		nil,
		{{Fences: []admin.FenceFDB{}}},
		{{Fences: []admin.FenceFDB{{Fence: 1, Name: "a", Entries: []admin.FDBEntry{}}}}},
		{
			{Fences: []admin.FenceFDB{{Fence: 1, Name: "a", Entries: []admin.FDBEntry{e("01"), e("02")}}}, Next: "1/02"},
			{Fences: []admin.FenceFDB{{Fence: 1, Name: "a", Entries: []admin.FDBEntry{e("03")}}, {Fence: 2, Name: "b\"", Entries: []admin.FDBEntry{}}}, Next: "3/"},
			{Fences: []admin.FenceFDB{{Fence: 3, Name: "c", Entries: []admin.FDBEntry{e("04")}}}},
		},
	} {
		var buf bytes.Buffer
		err := streamFDBJSON(&buf, func(fn func(admin.FDBPage) error) error {
			for _, p := range pages {
				if err := fn(p); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []admin.FenceFDB
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("%v:\n%s", err, buf.String())
		}
		want := []admin.FenceFDB{}
		for _, p := range pages {
			want = admin.MergeFDB(want, p.Fences)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v:\n%s", got, want, buf.String())
		}
		var indented bytes.Buffer
		admin.EncodeJSON(&indented, want)
		if buf.String() != indented.String() {
			t.Errorf("not as the API indents:\n%s\nwant\n%s", buf.String(), indented.String())
		}
	}
}
