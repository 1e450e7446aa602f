package admin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPIGolden pins the JSON of every answer, byte for byte, against
// testdata/api/*.json (regenerate with -update). The files were first
// written by the routes as they were before package admin owned all of
// them (switch/admin and cmd/corral), so the API's JSON is unchanged.
func TestAPIGolden(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
	}{
		{"status", "GET", "/v1/status", "", 200},
		{"fences", "GET", "/v1/fences", "", 200},
		{"ports", "GET", "/v1/ports", "", 200},
		{"fdb", "GET", "/v1/fdb", "", 200},
		{"fdb-red", "GET", "/v1/fdb?fence=red", "", 200},
		{"fdb-404", "GET", "/v1/fdb?fence=9", "", 404},
		{"fdb-page1", "GET", "/v1/fdb?fence=blue&limit=1", "", 200},
		{"fdb-page2", "GET", "/v1/fdb?fence=blue&limit=1&after=00:00:5e:00:53:01", "", 200},
		{"fdb-all-page", "GET", "/v1/fdb?limit=2", "", 200},
		{"fdb-bad-limit", "GET", "/v1/fdb?limit=10001", "", 400},
		{"peers", "GET", "/v1/peers", "", 200},
		{"gateways", "GET", "/v1/gateways", "", 200},
		{"forwards", "GET", "/v1/forwards", "", 200},
		{"forward-added", "POST", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:2223","target":"10.0.2.15:22"}`, 201},
		{"forward-removed", "DELETE", "/v1/forwards", `{"fence":"blue","proto":"tcp","listen":"127.0.0.1:2222"}`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := richServer(t)
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
			if rec.Code != tc.code || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %s, want %d JSON: %s", rec.Code, rec.Header().Get("Content-Type"), tc.code, rec.Body)
			}
			path := filepath.Join("testdata", "api", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, rec.Body.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(rec.Body.Bytes(), want) {
				t.Errorf("%s %s differs from %s (run with -update if the change is intended):\ngot:\n%s\nwant:\n%s", tc.method, tc.path, path, rec.Body, want)
			}
		})
	}
}

// TestPeersWithoutGateways: without gateways here, no conflict, and the
// lists are empty, not null.
func TestPeersWithoutGateways(t *testing.T) {
	s, err := New(Config{Switch: richSwitch(), Uplink: richUplink()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/peers", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"gateway_conflicts": []`) {
		t.Errorf("got %d:\n%s", rec.Code, rec.Body)
	}
}
