// pprofd: the es-doctor lab's Go program. It serves Go's own net/http/pprof on 127.0.0.1:<port>
// (real gzip protobuf profiles of a real Go runtime) and changes its behaviour from the lab's
// faults file ({"faults": ["name", ...]}, polled every 0.5 s), so that es-doctor profile has
// something real to find:
//
//   goroutine-leak  leakWorker goroutines are started (20 every 0.5 s, at most 5000) and park on a
//                   channel receive until the fault is cleared
//   heap-growth     growCache retains 256 KiB every 0.5 s (at most 64 MiB) until the fault is cleared
//
// At all times checksumLoop burns a few milliseconds of CPU every 100 ms, so a CPU profile has samples.
// Standard library only: it builds offline (GOPROXY=off).
package main

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

const (
	faultLeak = "goroutine-leak"
	faultGrow = "heap-growth"

	leakPerTick  = 20
	leakMax      = 5000
	growPerTick  = 256 << 10
	growMaxBytes = 64 << 20
)

type lab struct {
	mu      sync.Mutex
	release chan struct{} // closed when goroutine-leak is cleared
	leaked  int
	cache   [][]byte // heap-growth's retained allocations
	cached  int
}

// leakWorker parks until release is closed: a leaked goroutine.
func leakWorker(release <-chan struct{}) {
	<-release
}

func (l *lab) leak() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.release == nil {
		l.release = make(chan struct{})
	}
	for i := 0; i < leakPerTick && l.leaked < leakMax; i++ {
		go leakWorker(l.release)
		l.leaked++
	}
}

func (l *lab) stopLeak() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.release != nil {
		close(l.release)
		l.release = nil
		l.leaked = 0
	}
}

// growCache retains one more allocation: heap growth.
func growCache(l *lab) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cached >= growMaxBytes {
		return
	}
	buf := make([]byte, growPerTick)
	for i := range buf {
		buf[i] = byte(i)
	}
	l.cache = append(l.cache, buf)
	l.cached += len(buf)
}

func (l *lab) stopGrow() {
	l.mu.Lock()
	l.cache, l.cached = nil, 0
	l.mu.Unlock()
	runtime.GC()
}

// checksumLoop: a little CPU work all the time.
func checksumLoop() {
	data := make([]byte, 64<<10)
	for {
		end := time.Now().Add(3 * time.Millisecond)
		for time.Now().Before(end) {
			sum := sha256.Sum256(data)
			data[0] = sum[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readFaults(path string) map[string]bool {
	out := map[string]bool{}
	if path == "" {
		return out
	}
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) > 1<<20 {
		return out
	}
	var doc struct {
		Faults []string `json:"faults"`
	}
	if json.Unmarshal(raw, &doc) != nil {
		return out
	}
	for _, name := range doc.Faults {
		out[name] = true
	}
	return out
}

func (l *lab) watch(path string) {
	for {
		active := readFaults(path)
		if active[faultLeak] {
			l.leak()
		} else {
			l.stopLeak()
		}
		if active[faultGrow] {
			growCache(l)
		} else if l.cachedBytes() > 0 {
			l.stopGrow()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (l *lab) cachedBytes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cached
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1")
	faults := flag.String("faults-file", "", "the lab's faults.json")
	flag.Parse()
	if *port <= 0 || *port > 65535 {
		fmt.Fprintln(os.Stderr, "pprofd: -port 1..65535 is required")
		os.Exit(64)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatalf("pprofd: %v", err)
	}
	l := &lab{}
	go l.watch(*faults)
	go checksumLoop()
	http.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "{\"status\":\"ok\",\"goroutines\":%d}\n", runtime.NumGoroutine())
	})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		os.Exit(0)
	}()
	log.Printf("pprofd: serving net/http/pprof on %s", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
