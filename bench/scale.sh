#!/usr/bin/env bash
# bench/scale.sh: the PostgreSQL-backed registry at scale (issue 4). Starts a
# private PostgreSQL 15 (Debian's binaries) in a temporary directory on a free
# loopback port, generates N records (default 10 million), and runs
# bench/scale: full-load time and RSS of two gateway processes, decision
# latency at that size, incremental apply rate, change propagation p50/p99.
# Not a unit test: it takes minutes and several GiB; run it on a quiet machine.
#
#   bench/scale.sh                 # 10M records
#   bench/scale.sh -n 1000000      # any flag of bench/scale (-n, -bulk, -probes)
#   KEEP=1 bench/scale.sh          # keep the cluster directory (re-runs skip generation)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
BIN=/usr/lib/postgresql/15/bin
if [[ ! -x $BIN/postgres ]]; then
	echo "PostgreSQL 15 is missing: apt-get install -y postgresql" >&2
	exit 1
fi
RUNAS=icpgate-test
run_pg() { if [[ $(id -u) == 0 ]]; then runuser -u "$RUNAS" -- "$@"; else "$@"; fi; }
if [[ $(id -u) == 0 ]] && ! id "$RUNAS" >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin "$RUNAS"
fi

DIR=${SCALE_DIR:-/tmp/icpgate-scale}
mkdir -p "$DIR"
chmod 755 "$DIR"
[[ $(id -u) == 0 ]] && chown "$RUNAS" "$DIR"
if [[ ! -f $DIR/data/PG_VERSION ]]; then
	run_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
	cat >>"$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
shared_buffers = 512MB
max_wal_size = 8GB
synchronous_commit = off
CONF
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
run_pg "$BIN/pg_ctl" start -w -D "$DIR/data" -l "$DIR/server.log" -o "-p $PORT" >/dev/null
stop() {
	run_pg "$BIN/pg_ctl" stop -m fast -D "$DIR/data" >/dev/null || true
	[[ -n ${KEEP:-} ]] || rm -rf "$DIR"
}
trap stop EXIT
run_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tqc "SELECT 1 FROM pg_database WHERE datname = 'scale'" | grep -q 1 ||
	run_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE scale"

go build -o "$DIR/scale" ./bench/scale
echo "== icpgate registry scale, $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"
"$DIR/scale" -dsn "postgres://postgres@127.0.0.1:$PORT/scale?sslmode=disable" "$@"
