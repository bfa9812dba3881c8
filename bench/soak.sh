#!/usr/bin/env bash
# Soak test: `icpgate demo` (gateway, embedded registry and demo origins) under
# mixed pass/block traffic for DURATION seconds (default 600), sampling the
# gateway's memory, goroutines and open descriptors from the admin /metrics
# every SAMPLE seconds, then reporting growth: mean of the first third of the
# samples against the last third, and the least-squares slope per minute.
#
#   bench/soak.sh                    # 10 minutes
#   DURATION=180 SAMPLE=5 bench/soak.sh
#   OUT=/tmp/soak.csv bench/soak.sh  # keep the samples
#
# Traffic, all on loopback (ports 28080-28444, admin 29090), each stream a
# bounded loop that stops at the deadline:
#   - HTTP keep-alive requests for a filed name (bench/loadgen bulk, 4 conns)
#   - HTTP requests for an unfiled name, one connection each (curl globbing)
#   - new TLS connections for a filed name (bench/loadgen tlsconn, 2 conns)
#   - new TLS connections for an unfiled name, refused (loadgen tlsconn)
#   - idle TCP connections that never send a hello (closed at timeouts.hello)
# A healthy run ends with flat goroutines and descriptors and memory that
# levels off after the warm-up; the script prints GROWTH lines otherwise
# (more than GROWTH_PCT percent, default 10, between the thirds, and more
# than a noise floor of 64 goroutines/descriptors or 16 MiB) and exits 1.
set -euo pipefail

DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-10}
GROWTH_PCT=${GROWTH_PCT:-10}
OUT=${OUT:-}
HTTP=127.0.0.1:28080 TLS=127.0.0.1:28443 ADMIN=127.0.0.1:29090
ORIGIN_HTTP=127.0.0.1:28081 ORIGIN_TLS=127.0.0.1:28444
PASS_HOST=filed-demo.cn BLOCK_HOST=unfiled-demo.cn

export PATH=/usr/local/go/bin:$PATH
cd "$(dirname "$0")/.."
((DURATION >= 3 * SAMPLE)) || { echo "DURATION must be at least 3 samples (3*SAMPLE)" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is required" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "building icpgate and loadgen"
go build -o "$work/icpgate" ./cmd/icpgate
go build -o "$work/loadgen" ./bench/loadgen

"$work/icpgate" demo -http "$HTTP" -tls "$TLS" -admin "$ADMIN" \
	-origin-http "$ORIGIN_HTTP" -origin-tls "$ORIGIN_TLS" >"$work/gateway.log" 2>&1 &
gw=$!
pids+=("$gw")
for _ in $(seq 100); do
	curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fs "http://$ADMIN/readyz" >/dev/null || { echo "gateway not ready:"; cat "$work/gateway.log"; exit 1; }

end=$((SECONDS + DURATION))
# Each stream runs short bounded rounds until the deadline.
stream() { # name, command...
	local name=$1
	shift
	while ((SECONDS < end)); do
		"$@" >>"$work/$name.out" 2>&1 || true
	done
}
left() { echo $((end - SECONDS > 10 ? 10 : (end - SECONDS > 1 ? end - SECONDS : 1)))s; }
stream http-pass bash -c "'$work/loadgen' -mode bulk -addr $HTTP -host $PASS_HOST -c 4 -d \$0" "$(left)" &
pids+=($!)
stream http-block curl -s -o /dev/null -m 10 -H "Host: $BLOCK_HOST" "http://$HTTP/[1-200]" &
pids+=($!)
stream tls-pass bash -c "'$work/loadgen' -mode tlsconn -addr $TLS -host $PASS_HOST -c 2 -d \$0" "$(left)" &
pids+=($!)
stream tls-block bash -c "'$work/loadgen' -mode tlsconn -addr $TLS -host $BLOCK_HOST -c 1 -d \$0" "$(left)" &
pids+=($!)
# Idle connections: open 20, hold them past timeouts.hello (5 s), repeat.
stream idle bash -c 'for i in $(seq 20); do exec {fd}<>/dev/tcp/'"${TLS%:*}/${TLS#*:}"'; done; sleep 7' &
pids+=($!)

samples=$work/samples.csv
echo "t_seconds,rss_bytes,goroutines,open_fds" >"$samples"
start=$SECONDS
echo "soaking for ${DURATION}s, a sample every ${SAMPLE}s"
while ((SECONDS < end)); do
	sleep "$SAMPLE"
	m=$(curl -fs "http://$ADMIN/metrics") || { echo "metrics scrape failed" >&2; continue; }
	rss=$(awk '$1=="process_resident_memory_bytes"{printf "%.0f", $2}' <<<"$m")
	gor=$(awk '$1=="go_goroutines"{printf "%.0f", $2}' <<<"$m")
	fds=$(awk '$1=="process_open_fds"{printf "%.0f", $2}' <<<"$m")
	echo "$((SECONDS - start)),$rss,$gor,$fds" >>"$samples"
done
kill -0 "$gw" 2>/dev/null || { echo "the gateway died:"; tail -20 "$work/gateway.log"; exit 1; }
m=$(curl -fs "http://$ADMIN/metrics")
[[ -n $OUT ]] && cp "$samples" "$OUT"

echo
echo "traffic (icpgate_decisions_total):"
grep '^icpgate_decisions_total' <<<"$m" | sed 's/^/  /'
grep -E '^icpgate_(tls_hello_errors_total|upstream_errors_total)' <<<"$m" | grep -v ' 0$' | sed 's/^/  /' || true
echo
awk -F, -v pct="$GROWTH_PCT" '
NR == 1 { for (i = 2; i <= NF; i++) name[i] = $i; next }
{ n++; t[n] = $1; for (i = 2; i <= NF; i++) v[i, n] = $i }
END {
	third = int(n / 3)
	printf "%d samples; first third = samples 1-%d, last third = %d-%d\n", n, third, n - third + 1, n
	printf "%-12s %14s %14s %9s %16s %14s\n", "metric", "first third", "last third", "growth", "slope per min", "min..max"
	bad = 0
	for (i = 2; i <= 4; i++) {
		a = 0; b = 0; st = 0; sv = 0; stt = 0; stv = 0; lo = v[i, 1]; hi = v[i, 1]
		for (k = 1; k <= third; k++) a += v[i, k]
		for (k = n - third + 1; k <= n; k++) b += v[i, k]
		a /= third; b /= third
		for (k = 1; k <= n; k++) {
			st += t[k]; sv += v[i, k]; stt += t[k] * t[k]; stv += t[k] * v[i, k]
			if (v[i, k] < lo) lo = v[i, k]; if (v[i, k] > hi) hi = v[i, k]
		}
		slope = (n * stv - st * sv) / (n * stt - st * st) * 60
		g = a > 0 ? (b - a) / a * 100 : 0
		printf "%-12s %14.0f %14.0f %8.1f%% %16.1f %7.0f..%.0f\n", name[i], a, b, g, slope, lo, hi
		# Connections in flight make goroutines and descriptors jitter by
		# tens: growth counts only beyond a floor (64, or 16 MiB of RSS).
		floor = i == 2 ? 16 * 1048576 : 64
		if (g > pct && b - a > floor) { printf "GROWTH %s: last third %.1f%% over the first\n", name[i], g; bad = 1 }
	}
	exit bad
}' "$samples"
