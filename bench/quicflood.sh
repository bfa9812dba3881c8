#!/bin/sh
# bench/quicflood.sh [BIN]: run icpgate (BIN, default: built from the working
# tree) with bench/quicflood/icpgate.yaml, flood its quic listener with
# bench/quicflood (4000 flows, 4 s at most, loopback only) and print the
# gateway's VmRSS before, at its peak and after. The gateway is stopped by
# its PID at the end. To compare with an older commit, build it from a
# worktree: git worktree add /tmp/old REV && (cd /tmp/old && go build -o /tmp/icpgate-old ./cmd/icpgate)
set -eu
cd "$(dirname "$0")/.."
bin=${1:-}
[ $# -gt 0 ] && shift
if [ -z "$bin" ]; then
	bin=$(mktemp -d)/icpgate
	go build -o "$bin" ./cmd/icpgate
fi
flood=$(mktemp -d)/quicflood
go build -o "$flood" ./bench/quicflood
"$bin" serve -config bench/quicflood/icpgate.yaml >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
i=0
until curl -fsS -o /dev/null http://127.0.0.1:27890/readyz 2>/dev/null; do
	i=$((i + 1))
	if [ "$i" -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "icpgate did not become ready" >&2
		exit 1
	fi
	sleep 0.1
done
sleep 1 # let the start settle before the first RSS sample
"$flood" -addr 127.0.0.1:27843 -pid "$pid" "$@"
curl -fsS http://127.0.0.1:27890/metrics | grep -E '^icpgate_quic_(dropped_datagrams_total|flows_total|active_flows)' | grep -v ' 0$' || true
