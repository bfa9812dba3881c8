#!/usr/bin/env bash
# slowhttptest (Debian package slowhttptest) against icpgate's HTTP listener:
# slowloris (headers trickled), slow body (POST body trickled) and slow read
# (responses read slowly), each for LENGTH seconds (default 30) with CONNS
# connections (default 900: under the per-IP cap of 1000, since every
# connection comes from 127.0.0.1). Prints slowhttptest's closing status per
# attack: how many connections were still open, closed, in error, and
# whether the service stayed available to a fresh probe connection, plus the
# gateway's own counters.
#
#   bench/slowhttp.sh
#   LENGTH=60 CONNS=2000 bench/slowhttp.sh   # also over the per-IP cap
#
# The gateway is `icpgate demo` (timeouts.hello 5 s, the default) on
# 127.0.0.1:26080, admin 26090. The Host of slowhttptest's requests is the IP
# literal, which policy.ip_access passes to the demo origin.
set -euo pipefail

LENGTH=${LENGTH:-30}
CONNS=${CONNS:-900}
HTTP=127.0.0.1:26080 TLS=127.0.0.1:26443 ADMIN=127.0.0.1:26090
ORIGIN_HTTP=127.0.0.1:26081 ORIGIN_TLS=127.0.0.1:26444

export PATH=/usr/local/go/bin:$PATH
cd "$(dirname "$0")/.."
command -v slowhttptest >/dev/null || { echo "slowhttptest is required (apt-get install slowhttptest)" >&2; exit 2; }

work=$(mktemp -d)
gw=
cleanup() {
	[[ -n $gw ]] && kill "$gw" 2>/dev/null && wait "$gw" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

go build -o "$work/icpgate" ./cmd/icpgate
"$work/icpgate" demo -http "$HTTP" -tls "$TLS" -admin "$ADMIN" \
	-origin-http "$ORIGIN_HTTP" -origin-tls "$ORIGIN_TLS" >"$work/gateway.log" 2>&1 &
gw=$!
for _ in $(seq 100); do
	curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done

metric() { curl -fs "http://$ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $2} END {printf "%.0f", s}'; }

run() { # name, slowhttptest arguments...
	local name=$1
	shift
	echo "== $name: slowhttptest $*"
	local out=$work/$name.txt
	slowhttptest "$@" -c "$CONNS" -l "$LENGTH" -u "http://$HTTP/" -p 3 >"$out" 2>&1 || true
	# The last status block (counts at the end of the test) and the exit
	# status, without the colour codes.
	sed 's/\x1b\[[0-9;]*m//g' "$out" | awk '
		/^slow HTTP test status on/ { block = $0; next }
		/^(initializing|pending|connected|error|closed|service available):/ { sub(/: +/, "="); block = block ", " $0 }
		/^Exit status:/ { exit_status = $0 }
		END { print "   " block; print "   " exit_status }'
	local peak
	peak=$(sed 's/\x1b\[[0-9;]*m//g' "$out" | awk '/^connected:/ && $2 > m { m = $2 } END { print m + 0 }')
	echo "   most connections open at once (slowhttptest's view): $peak"
	local probe
	probe=$(curl -s -o /dev/null -w '%{http_code} in %{time_total}s' -m 10 "http://$HTTP/" || echo failed)
	echo "   probe after: HTTP $probe; 408s so far: $(metric 'icpgate_http_request_errors_total{kind="timeout"}')," \
		"limit rejects: $(metric icpgate_limit_rejects_total), active: $(metric icpgate_active_connections)"
}

run slowloris -H -i 10 -r 200 -t GET -x 24
run slow-body -B -i 10 -r 200 -s 8192 -t POST -x 10
run slow-read -X -r 200 -w 512 -y 1024 -n 5 -z 32 -k 3

kill -0 "$gw" || { echo "the gateway died"; tail -20 "$work/gateway.log"; exit 1; }
echo
echo "gateway counters:"
curl -fs "http://$ADMIN/metrics" | grep -E '^icpgate_(http_request_errors_total|limit_rejects_total|connections_total|idle_timeouts_total|decisions_total)' | grep -v ' 0$' | sed 's/^/  /'
echo "RSS after: $(metric process_resident_memory_bytes) bytes, goroutines $(metric go_goroutines), fds $(metric process_open_fds)"
