// Load client for bench/peers_bench.py: the same client for every server, in a compiled
// language so that it is not the bottleneck (it reports its own CPU time to show that).
//
//	loadclient cycle -state URL -lock URL -user U -password P -size 1000000 -n 40
//	loadclient get   -state URL -lock URL ... -size 100000 -clients 16 -seconds 5
//	loadclient locks -lock URL[,URL...] ... -clients 50 -seconds 5
//	loadclient null  127.0.0.1:PORT   (a server doing nothing: the client's floor)
//
// It prints one JSON object. Standard library only.
package main

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type target struct {
	state, user, password string
	locks                 []string
	client                *http.Client
}

func (t *target) do(method, url string, body []byte) (int, int, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.SetBasicAuth(t.user, t.password)
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
		sum := md5.Sum(body)
		req.Header.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, int(n), err
}

// state builds a state of about size bytes, shaped like a real one.
func state(serial, size int, lineage string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"version": 4, "terraform_version": "1.10.0", "serial": %d, "lineage": %q, "outputs": {}, "resources": [`, serial, lineage)
	for n := 0; b.Len() < size-200; n++ {
		if n > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `
  {"mode": "managed", "type": "terraform_data", "name": "r%d",
   "provider": "provider[\"terraform.io/builtin/terraform\"]",
   "instances": [{"schema_version": 0, "attributes": {"id": "00000000-0000-0000-0000-%012d",
     "input": {"value": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}, "sensitive_attributes": []}]}`, n, n)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// lockID is shaped like the clients' (a UUID): tfstated refuses anything else.
func lockID(a, b int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", a, b)
}

func lockBody(id string) []byte {
	body, _ := json.Marshal(map[string]string{
		"ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": "bench@loadclient",
		"Version": "1.10.0", "Created": time.Now().UTC().Format(time.RFC3339Nano), "Path": "",
	})
	return body
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadclient: "+format+"\n", args...)
	os.Exit(1)
}

// write stores a state under a lock: LOCK, POST ?ID=, UNLOCK.
func (t *target) write(id string, body []byte) {
	lock := lockBody(id)
	for _, step := range []struct {
		method, url string
		body        []byte
	}{{"LOCK", t.locks[0], lock}, {"POST", t.state + "?ID=" + id, body}, {"UNLOCK", t.locks[0], lock}} {
		status, _, err := t.do(step.method, step.url, step.body)
		if err != nil || status != 200 {
			fail("%s %s: status %d, %v", step.method, step.url, status, err)
		}
	}
}

func percentile(sorted []float64, p float64) float64 {
	return sorted[int(p*float64(len(sorted)-1)+0.5)]
}

func cycle(t *target, size, n int) map[string]any {
	bodies := make([][]byte, n+5)
	for i := range bodies {
		bodies[i] = state(i+1, size, "cycle")
	}
	cpu0 := cpuSeconds()
	var times []float64
	for i, body := range bodies {
		start := time.Now()
		t.write(lockID(os.Getpid(), i), body)
		if i >= 5 { // warm-up
			times = append(times, float64(time.Since(start).Microseconds())/1000)
		}
	}
	sort.Float64s(times)
	total := 0.0
	for _, v := range times {
		total += v
	}
	return map[string]any{
		"p50_ms": percentile(times, 0.5), "p90_ms": percentile(times, 0.9),
		"state_bytes": len(bodies[0]), "client_cpu_share": (cpuSeconds() - cpu0) / (total / 1000),
	}
}

func get(t *target, size, clients int, seconds float64) map[string]any {
	body := state(1, size, "get")
	t.write(lockID(os.Getpid(), 1<<40), body)
	var count, errors atomic.Int64
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				status, n, err := t.do("GET", t.state, nil)
				if err == nil && status == 200 && n == len(body) {
					count.Add(1)
				} else {
					errors.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	return map[string]any{
		"req_per_s": float64(count.Load()) / elapsed, "errors": errors.Load(),
		"client_cpu_share": (cpuSeconds() - cpu0) / elapsed,
	}
}

func locks(t *target, clients int, seconds float64) map[string]any {
	var attempts, grants, doubles, errors atomic.Int64
	var holders atomic.Int64 // contenders that believe they hold the lock right now
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	start := time.Now()
	for c := range clients {
		url := t.locks[c%len(t.locks)]
		wg.Go(func() {
			for round := 0; time.Now().Before(deadline); round++ {
				body := lockBody(lockID(c, round))
				status, _, err := t.do("LOCK", url, body)
				attempts.Add(1)
				if err != nil || (status != 200 && status != 409 && status != 423) {
					errors.Add(1)
					continue
				}
				if status != 200 {
					continue
				}
				grants.Add(1)
				if holders.Add(1) > 1 {
					doubles.Add(1)
				}
				time.Sleep(100 * time.Microsecond) // hold it a moment
				holders.Add(-1)
				if status, _, err := t.do("UNLOCK", url, body); err != nil || status != 200 {
					fail("UNLOCK %s: status %d, %v", url, status, err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	return map[string]any{
		"attempts_per_s": float64(attempts.Load()) / elapsed, "grants_per_s": float64(grants.Load()) / elapsed,
		"double_grants": doubles.Load(), "errors": errors.Load(),
		"client_cpu_share": (cpuSeconds() - cpu0) / elapsed,
	}
}

// null serves every request with a 200 after reading its body: the floor of a cycle
// (client, HTTP, loopback) with no server work, for bench/cycle_floor.py.
func null(listen string) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})
	fail("%v", http.ListenAndServe(listen, handler))
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "null" {
		null(os.Args[2])
	}
	if len(os.Args) < 2 {
		fail("usage: loadclient cycle|get|locks [flags]")
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	stateURL := flags.String("state", "", "state URL")
	lockURLs := flags.String("lock", "", "lock URL(s), comma-separated (one per replica)")
	user := flags.String("user", "bench", "Basic Auth user")
	size := flags.Int("size", 1_000_000, "state size in bytes")
	n := flags.Int("n", 40, "cycles measured")
	clients := flags.Int("clients", 16, "concurrent clients")
	seconds := flags.Float64("seconds", 5, "duration")
	_ = flags.Parse(os.Args[2:])
	password := os.Getenv("LOADCLIENT_PASSWORD") // never on the command line
	t := &target{
		state: *stateURL, user: *user, password: password, locks: strings.Split(*lockURLs, ","),
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true,
		}},
	}
	var result map[string]any
	switch os.Args[1] {
	case "cycle":
		result = cycle(t, *size, *n)
	case "get":
		result = get(t, *size, *clients, *seconds)
	case "locks":
		result = locks(t, *clients, *seconds)
	default:
		fail("unknown command %q", os.Args[1])
	}
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}
