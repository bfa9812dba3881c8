// Command quicflood reproduces a memory flood against a quic listener:
// each flow is one valid client Initial carrying the start of a hello that
// never completes, followed by long header datagrams to the same
// connection ID, which a gateway may buffer until the hello is complete.
// It sends to a loopback address only, a bounded number of flows within a
// bounded time, and reports the gateway's resident memory (VmRSS) before,
// at its highest during the flood, and after.
//
//	go run ./bench/quicflood -addr 127.0.0.1:27843 -pid $(pidof icpgate)
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/icpgate/icpgate/sni"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:27843", "the quic listener (a loopback address)")
	flows := flag.Int("flows", 4000, "flows to start (at most 20000)")
	big := flag.Int("big", 64000, "bytes of each long header datagram after the Initial (at most 65000)")
	per := flag.Int("per", 2, "long header datagrams per flow after the Initial (at most 32)")
	limit := flag.Duration("duration", 4*time.Second, "stop sending after this long (at most 30s)")
	pid := flag.Int("pid", 0, "the gateway's process ID, for VmRSS; 0: do not measure")
	settle := flag.Duration("settle", time.Second, "how long to watch VmRSS after the flood")
	batch := flag.Int("batch", 5, "flows sent between 5 ms pauses")
	flag.Parse()
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil || !ap.Addr().IsLoopback() {
		log.Fatalf("-addr %q: want a loopback address and port", *addr)
	}
	*flows, *big, *per = min(*flows, 20000), min(*big, 65000), min(*per, 32)
	*limit = min(*limit, 30*time.Second)

	// Sources rotate over 16 loopback addresses so that the per-IP flow
	// cap (1000 by default) is not what stops the flood.
	var conns []*net.UDPConn
	for k := range 16 {
		src := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + k)})
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(ap))
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	before := rss(*pid)
	peak := before
	start := time.Now()
	sent, bytes := 0, 0
	for k := 0; k < *flows && time.Since(start) < *limit; k++ {
		c := conns[k%len(conns)]
		dcid := binary.BigEndian.AppendUint64(nil, uint64(k)|0xf1<<56)
		for _, d := range flowDatagrams(dcid, *big, *per) {
			if _, err := c.Write(d); err == nil {
				sent++
				bytes += len(d)
			}
		}
		if k%max(*batch, 1) == 0 {
			// Pace: the gateway's socket buffer would drop what it cannot
			// read in time, which measures the kernel, not the gateway.
			time.Sleep(5 * time.Millisecond)
			peak = max(peak, rss(*pid))
		}
	}
	took := time.Since(start)
	for end := time.Now().Add(*settle); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		peak = max(peak, rss(*pid))
	}
	fmt.Printf("sent %d datagrams (%d MiB) for up to %d flows in %.1fs\n", sent, bytes>>20, *flows, took.Seconds())
	if *pid != 0 {
		fmt.Printf("gateway VmRSS: before %d MiB, peak %d MiB, after %d MiB\n", before>>10, peak>>10, rss(*pid)>>10)
	}
}

// flowDatagrams returns one flow's datagrams: an Initial whose CRYPTO
// frame holds the first bytes of a 4 KiB ClientHello, then per 0-RTT
// packets of big bytes each.
func flowDatagrams(dcid []byte, big, per int) [][]byte {
	hello := []byte{0x06, 0, 0x40, 8, 1, 0, 0x10, 0, 3, 3, 0, 0} // CRYPTO offset 0, 8 bytes: ClientHello, 4096 long
	initial, err := sni.AppendClientInitial(nil, sni.QUICv1, dcid, []byte{1, 2, 3, 4}, 0, hello, 1200)
	if err != nil {
		log.Fatal(err)
	}
	out := [][]byte{initial}
	for range per {
		b := []byte{0xd0} // long header, 0-RTT
		b = binary.BigEndian.AppendUint32(b, sni.QUICv1)
		b = append(append(b, byte(len(dcid))), dcid...)
		b = append(b, 4, 1, 2, 3, 4)
		n := max(big-len(b)-4, 1)
		b = append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		out = append(out, append(b, make([]byte, n)...))
	}
	return out
}

// rss returns the VmRSS of process pid in KiB, or 0.
func rss(pid int) int {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
