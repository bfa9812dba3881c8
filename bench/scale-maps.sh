#!/usr/bin/env bash
# bench/scale-maps.sh: nginx and HAProxy applying a change to a map of N names
# (default 10 million), next to icpgate applying the same change to its
# registry file (issue 4). For each of them, one after the other (so they do
# not share memory or CPU with each other): the start time with N names (until
# a filed host gets a 200), the memory after the load (RSS and PSS summed
# over the master and all workers, from /proc), and the time from the start
# of a one-name change until it is effective, probed with one new HTTP
# connection every 5 ms by bench/scale-maps; the peak memory during the
# change and the memory once old workers are gone.
#
# Changes, alternating: add a new name (403 -> 200), remove a filed name
# (200 -> 403; the name is renamed in place, same length, so the edit itself
# costs nothing). nginx: edit the map + SIGHUP; HAProxy: edit the map +
# SIGUSR2 to the master (a full reload), and the runtime API (add map / del
# map on the stats socket, after the same file edit); icpgate: edit the
# registry file (it polls the file and applies the changed rows).
#
# Not a unit test. At 10M names nginx alone needs minutes per load: its map
# parse grows faster than linearly (user CPU x3.2-3.4 per doubling of the
# names; ngx_hash_add_key checks each name for a duplicate by scanning one
# of 10007 buckets), about 7 minutes per load at 10M on a busy 2-core
# machine. The whole run at 10M takes about 20 minutes and up to about
# 7 GiB (nginx during its reload); TARGETS=haproxy,icpgate about 6 minutes.
#
#   bench/scale-maps.sh                     # 10M names
#   N=1000000 bench/scale-maps.sh           # 1M
#   TARGETS=haproxy,icpgate CHANGES=6 RELOADS=2 bench/scale-maps.sh
#   NGINX_RELOADS=2 bench/scale-maps.sh     # default 1 above 2M names, else RELOADS
#   NGINX_STREAM=1 bench/scale-maps.sh      # nginx also builds the TLS (stream) map
#   ICPGATE_REF=HEAD (default) | ICPGATE_BIN=/path/icpgate | KEEP=1
#
# Everything listens on 127.0.0.78, ports 28080-28390; only this script's
# processes are stopped on exit.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin
N=${N:-10000000}
CHANGES=${CHANGES:-4}  # cheap changes (icpgate, HAProxy runtime API)
RELOADS=${RELOADS:-2}  # changes through a reload (HAProxy; nginx below 2M names)
# nginx's map parse grows faster than linearly (above), about 7 minutes per
# load at 10M names on a busy 2-core machine: one reload above 2M names.
NGINX_RELOADS=${NGINX_RELOADS:-$(((N > 2000000)) && echo 1 || echo "$RELOADS")}
TARGETS=${TARGETS:-nginx,haproxy,icpgate}
NGINX_STREAM=${NGINX_STREAM:-0}
ICPGATE_REF=${ICPGATE_REF:-HEAD}
ICPGATE_BIN=${ICPGATE_BIN:-}
START_LIMIT=1200  # s: most time to wait for a proxy to answer after starting
CHANGE_LIMIT=1200 # s: most time for one change to become effective
IP=127.0.0.78
ORIGIN=28080
declare -A PORT=([nginx]=28180 [haproxy]=28280 [icpgate]=28380)
ICPGATE_ADMIN=28390

for v in N CHANGES RELOADS NGINX_RELOADS; do
	[[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || { echo "scale-maps: $v must be a positive integer" >&2; exit 2; }
done
((N <= 10000000 && CHANGES <= 20 && RELOADS <= 10 && NGINX_RELOADS <= 10)) ||
	{ echo "scale-maps: N <= 10000000, CHANGES <= 20, RELOADS and NGINX_RELOADS <= 10" >&2; exit 2; }
has_target() { [[ ,$TARGETS, == *,$1,* ]]; }

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- processes
PIDS=()
W=""
cleanup() {
	local pid i alive
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for i in $(seq 100); do
		alive=0
		for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [[ -n $W && -d $W ]]; then
		if [[ -n ${KEEP:-} ]]; then log "work directory kept: $W"; else rm -rf "$W"; fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: TERM, wait up to 30 s, then KILL; only a process we started.
stop() {
	local i
	kill -TERM "$1" 2>/dev/null
	for i in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# tree PID: the process and its children (nginx and HAProxy workers).
tree() { echo "$1" $(pgrep -P "$1" 2>/dev/null); }
nchildren() { local c; c=$(pgrep -c -P "$1" 2>/dev/null); echo "${c:-0}"; }

# mem PID: "RSS_MiB PSS_MiB PROCS" summed over the process and its children.
mem() {
	local p rss=0 pss=0 n=0 r s
	for p in $(tree "$1"); do
		read -r r s < <(awk '/^Rss:/ {r = $2} /^Pss:/ {s = $2} END {print r + 0, s + 0}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
		((r > 0)) || continue
		rss=$((rss + r)) pss=$((pss + s)) n=$((n + 1))
	done
	echo "$((rss / 1024)) $((pss / 1024)) $n"
}

# ---------------------------------------------------------------- tools
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
[[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] || missing+=(libnginx-mod-stream)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		{ echo "scale-maps: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

W=$(mktemp -d /tmp/icpgate-scale-maps.XXXXXX)
chmod 755 "$W"
mkdir -p "$W/data" "$W/origin" "$W/nginx"
log "work directory $W; N=$N; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log "building gen, the probe and icpgate ($ICPGATE_REF)"
(cd "$ROOT" && go build -o "$W/gen" ./bench/gen && go build -o "$W/probe" ./bench/scale-maps) ||
	{ echo "scale-maps: building bench tools failed" >&2; exit 1; }
if has_target icpgate; then
	if [[ -n $ICPGATE_BIN ]]; then
		cp "$ICPGATE_BIN" "$W/icpgate"
		ICPGATE_VERSION="binary $ICPGATE_BIN"
	else
		# A clean copy of one commit: others' uncommitted edits stay out.
		mkdir -p "$W/src"
		(cd "$ROOT" && git archive "$ICPGATE_REF") | tar -x -C "$W/src" &&
			(cd "$W/src" && go build -o "$W/icpgate" ./cmd/icpgate) ||
			{ echo "scale-maps: building icpgate at $ICPGATE_REF failed" >&2; exit 1; }
		rm -rf "$W/src"
		ICPGATE_VERSION="commit $(cd "$ROOT" && git rev-parse --short "$ICPGATE_REF")"
	fi
fi

log "generating $N names"
T=$EPOCHREALTIME
"$W/gen" -n "$N" -out "$W/data" || { echo "scale-maps: gen failed" >&2; exit 1; }
GEN_S=$(awk -v a="$T" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
# shellcheck disable=SC1091
source "$W/data/hosts.env" # FILED_HOST UNFILED_HOST PASSING
log "generated in ${GEN_S}s: $(du -sh "$W/data/registry.jsonl" | cut -f1) registry, $(du -sh "$W/data/nginx.map" | cut -f1) nginx map, $(du -sh "$W/data/haproxy.map" | cut -f1) HAProxy map"

# ---------------------------------------------------------------- configs
cat >"$W/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/origin/nginx.pid;
error_log $W/origin/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $W/origin/body;
    proxy_temp_path $W/origin/proxy;
    fastcgi_temp_path $W/origin/fastcgi;
    uwsgi_temp_path $W/origin/uwsgi;
    scgi_temp_path $W/origin/scgi;
    server {
        listen $IP:$ORIGIN;
        location / { return 200 "origin\n"; }
    }
}
EOF

# nginx builds one hash per map; map_hash_max_size must hold every name.
# nginx tries sizes from max_size - 1000 up when max_size < 100 x names, so
# this sets the size of the exact hash and of each wildcard level: 2 x N
# (fits the generated names with bucket size 128; 4 x N costs more memory,
# and the default 2048 does not start at all).
HASH_MAX=$((2 * N))
((HASH_MAX < 4096)) && HASH_MAX=4096
{
	((NGINX_STREAM)) && echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
	cat <<EOF
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $W/nginx/body;
    proxy_temp_path $W/nginx/proxy;
    fastcgi_temp_path $W/nginx/fastcgi;
    uwsgi_temp_path $W/nginx/uwsgi;
    scgi_temp_path $W/nginx/scgi;
    map_hash_max_size $HASH_MAX;
    map_hash_bucket_size 128;
    # The generated map: ".name 1;" = the domain and all its subdomains.
    map \$host \$icp_filed {
        hostnames;
        default 0;
        include $W/data/nginx.map;
    }
    server {
        listen $IP:${PORT[nginx]};
        location / {
            if (\$icp_filed = 0) {
                return 403 "blocked: no ICP filing\n";
            }
            proxy_pass http://$IP:$ORIGIN;
        }
    }
}
EOF
	((NGINX_STREAM)) && cat <<EOF
stream {
    map_hash_max_size $HASH_MAX;
    map_hash_bucket_size 128;
    map \$ssl_preread_server_name \$icp_tls_filed {
        hostnames;
        default 0;
        include $W/data/nginx.map;
    }
    map \$icp_tls_filed \$icp_tls_upstream { 1 $IP:$ORIGIN; default $IP:9; }
    server {
        listen $IP:$((PORT[nginx] + 1));
        ssl_preread on;
        proxy_pass \$icp_tls_upstream;
    }
}
EOF
} >"$W/nginx/nginx.conf"

# HAProxy as in bench/run: the registrable domain is the last two labels of
# the generated names, looked up with map_str (an exact tree lookup); the
# TLS frontend uses the same map file, which HAProxy loads once.
cat >"$W/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
    stats socket $W/haproxy.sock mode 600 level admin
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend http_in
    mode http
    bind $IP:${PORT[haproxy]}
    http-request deny deny_status 403 unless { req.hdr(host),lower,field(1,:),field(-1,.,2),map_str($W/data/haproxy.map,0) -m str 1 }
    default_backend origin
frontend tls_in
    mode tcp
    bind $IP:$((PORT[haproxy] + 1))
    tcp-request inspect-delay 5s
    tcp-request content reject unless { req.ssl_hello_type 1 }
    tcp-request content reject unless { req.ssl_sni,lower,field(-1,.,2),map_str($W/data/haproxy.map,0) -m str 1 }
    default_backend origin
backend origin
    mode http
    server origin $IP:$ORIGIN
EOF

cat >"$W/icpgate.yaml" <<EOF
node: scale-maps
registry:
  file: $W/data/registry.jsonl
listeners:
  - {name: http, protocol: http, address: "$IP:${PORT[icpgate]}", upstream: "$IP:$ORIGIN"}
  - {name: tls, protocol: tls, address: "$IP:$((PORT[icpgate] + 1))", upstream: "$IP:$ORIGIN"}
admin:
  address: "$IP:$ICPGATE_ADMIN"
log:
  level: warn
  format: json
EOF

# ---------------------------------------------------------------- results
RAW=$W/raw.tsv # target measure rep value
: >"$RAW"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }
NOTES=()
note() { NOTES+=("$*"); log "NOTE: $*"; }

nginx -p "$W/origin" -c "$W/origin/nginx.conf" -e "$W/origin/error.log" >"$W/origin.log" 2>&1 &
PIDS+=($!)
"$W/probe" -addr "$IP:$ORIGIN" -host "$FILED_HOST" -to 200 -timeout 10s -interval 20ms >/dev/null ||
	{ echo "scale-maps: origin did not start: $(cat "$W/origin.log")" >&2; exit 1; }

# ---------------------------------------------------------------- changes
# Names: removals rename a filed row in place (site -> xite, same length);
# additions append a new name to the end of the file.
ADDS=0 REMOVES=0
# removal_name K: the K-th filed domain to remove (index % 100 == 1: filed).
removal_name() {
	local i=$(((N / 3) / 100 * 100 + 100 * $1 + 1))
	((i < N)) || i=$(((100 * $1 + 1) % N))
	printf 'site%07d.%s' "$i" "$(echo cn com net top | cut -d' ' -f$((i % 4 + 1)))"
}
# edit_cmd TARGET KIND NAME: the shell command that edits TARGET's file for
# the change (KIND add or remove); an in-place same-length rename costs the
# same for a 1 MB and a 1 GB file, so the edit is not what is measured.
edit_cmd() {
	local t=$1 kind=$2 name=$3 file off
	case $t in
	nginx) file=$W/data/nginx.map ;;
	haproxy) file=$W/data/haproxy.map ;;
	icpgate) file=$W/data/registry.jsonl ;;
	esac
	if [[ $kind == remove ]]; then
		off=$(LC_ALL=C grep -b -o -m1 -F "$name" "$file" | cut -d: -f1)
		[[ -n $off ]] || { echo "false no-such-name"; return 1; }
		echo "printf x | dd of=$file bs=1 seek=$off conv=notrunc status=none"
		return 0
	fi
	case $t in
	nginx) echo "echo '.$name 1;' >>$file" ;;
	haproxy) echo "echo '$name 1' >>$file" ;;
	icpgate) printf "printf '%%s\\\\n' '{\"domain\":\"%s\",\"state\":\"filed\",\"filing_number\":\"京ICP备1999%04d号-1\",\"subject\":\"测试\",\"subject_type\":\"enterprise\",\"province\":\"京\"}' >>%s\n" \
		"$name" "$((ADDS % 10000))" "$file" ;;
	esac
}

# sampler PID OUT: every 0.2 s, "RSS PSS PROCS" of PID's tree into OUT,
# until killed (bounded by CHANGE_LIMIT).
sampler() {
	local i
	for ((i = 0; i < CHANGE_LIMIT * 5; i++)); do
		mem "$1" >>"$2"
		sleep 0.2
	done
}

# change TARGET MODE REP KIND: one change, measured. MODE is the label in
# the table (nginx-reload, haproxy-reload, haproxy-api, icpgate-file).
change() {
	local t=$1 mode=$2 rep=$3 kind=$4 name from to cmd out line i
	if [[ $kind == add ]]; then
		ADDS=$((ADDS + 1))
		name=$(printf 'added%07d.cn' "$ADDS") from=403 to=200
	else
		REMOVES=$((REMOVES + 1))
		name=$(removal_name "$REMOVES") from=200 to=403
	fi
	cmd=$(edit_cmd "$t" "$kind" "$name") || { note "$mode: $name not found in the map"; return 1; }
	local probe=("$W/probe" -addr "$IP:${PORT[$t]}" -host "www.$name" -from "$from" -to "$to" -timeout "${CHANGE_LIMIT}s")
	case $mode in
	nginx-reload) probe+=(-exec "$cmd && kill -HUP ${PID[$t]}") ;;
	haproxy-reload) probe+=(-exec "$cmd && kill -USR2 ${PID[$t]}") ;;
	haproxy-api)
		# The operator also edits the file, so a later reload keeps the change.
		sh -c "$cmd" || { note "$mode: editing the map failed"; return 1; }
		if [[ $kind == add ]]; then
			probe+=(-unix "$W/haproxy.sock" -send "add map $W/data/haproxy.map $name 1")
		else
			probe+=(-unix "$W/haproxy.sock" -send "del map $W/data/haproxy.map $name")
		fi ;;
	icpgate-file) probe+=(-exec "$cmd") ;;
	esac
	local workers0 samples=$W/samples-$mode-$rep
	workers0=$(nchildren "${PID[$t]}")
	: >"$samples"
	sampler "${PID[$t]}" "$samples" &
	local spid=$!
	line=$("${probe[@]}" 2>"$W/probe.err")
	local rc=$?
	# Settle: old workers gone (nginx, HAProxy) and at least 2 s of samples.
	local t0=$EPOCHREALTIME settle=""
	for ((i = 0; i < 600; i++)); do
		if (($(nchildren "${PID[$t]}") <= workers0)); then
			settle=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
			break
		fi
		sleep 0.2
	done
	sleep 2
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
	if ((rc != 0)); then
		note "$mode rep $rep ($kind www.$name): $line $(head -c 300 "$W/probe.err")"
		return 1
	fi
	[[ $line == *reply=* ]] && note "$mode rep $rep: runtime API answered: $line"
	local eff peak_rss peak_pss after
	eff=$(sed -n 's/.*effective_s=\([^ ]*\).*/\1/p' <<<"$line")
	read -r peak_rss peak_pss < <(awk 'BEGIN {r = 0; p = 0} {if ($1 > r) r = $1; if ($2 > p) p = $2} END {print r, p}' "$samples")
	after=$(mem "${PID[$t]}")
	record "$mode" "effective_s" "$rep" "$eff"
	record "$mode" "peak_rss_mib" "$rep" "$peak_rss"
	record "$mode" "peak_pss_mib" "$rep" "$peak_pss"
	record "$mode" "after_rss_mib" "$rep" "$(cut -d' ' -f1 <<<"$after")"
	record "$mode" "after_pss_mib" "$rep" "$(cut -d' ' -f2 <<<"$after")"
	[[ -n $settle && $mode == *-reload ]] && record "$mode" "old_workers_gone_s" "$rep" "$settle"
	[[ -z $settle ]] && note "$mode rep $rep: old workers still there 120 s after the change"
	log "$mode rep $rep ($kind www.$name): effective in ${eff}s; peak RSS ${peak_rss} MiB (PSS ${peak_pss}); after: RSS/PSS/procs $after"
}

# ---------------------------------------------------------------- targets
declare -A PID
# start_target T: start T, record the time until FILED_HOST gets a 200 and
# the memory then, and check that UNFILED_HOST gets a 403.
start_target() {
	local t=$1 line
	case $t in
	nginx) nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" >"$W/nginx.log" 2>&1 & ;;
	haproxy) haproxy -W -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 & ;;
	icpgate) "$W/icpgate" serve -config "$W/icpgate.yaml" >"$W/icpgate.log" 2>&1 & ;;
	esac
	PID[$t]=$!
	PIDS+=("${PID[$t]}")
	if ! line=$("$W/probe" -addr "$IP:${PORT[$t]}" -host "$FILED_HOST" -to 200 -timeout "${START_LIMIT}s" -interval 20ms 2>&1) ||
		! kill -0 "${PID[$t]}" 2>/dev/null; then
		note "$t did not answer 200 for $FILED_HOST within ${START_LIMIT}s: $line; log: $(tail -c 400 "$W/$t.log" "$W/nginx/error.log" 2>/dev/null | tr '\n' ' ')"
		return 1
	fi
	local secs m
	secs=$(sed -n 's/.*effective_s=\([^ ]*\).*/\1/p' <<<"$line")
	sleep 1 # let the workers finish starting
	m=$(mem "${PID[$t]}")
	record "$t" start_s 1 "$secs"
	record "$t" start_rss_mib 1 "$(cut -d' ' -f1 <<<"$m")"
	record "$t" start_pss_mib 1 "$(cut -d' ' -f2 <<<"$m")"
	log "$t answers after ${secs}s; RSS/PSS/procs $m"
	if ! "$W/probe" -addr "$IP:${PORT[$t]}" -host "$UNFILED_HOST" -to 403 -timeout 5s >/dev/null 2>&1; then
		note "$t does not block $UNFILED_HOST"
		return 1
	fi
}

# mem_guard T: a reload needs about as much memory again; skip it when the
# machine does not have that free.
mem_guard() {
	local need avail
	need=$(($(cut -d' ' -f1 <<<"$(mem "${PID[$1]}")") * 12 / 10))
	avail=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) / 1024))
	((avail > need)) && return 0
	note "$1: reload skipped, ${avail} MiB available, about ${need} MiB needed"
	return 1
}

run_changes() { # MODE TARGET COUNT
	local i kind
	for ((i = 1; i <= $3; i++)); do
		kind=add
		((i % 2 == 0)) && kind=remove
		change "$2" "$1" "$i" "$kind"
	done
}

for t in nginx haproxy icpgate; do
	has_target "$t" || continue
	log "== $t with $N names (loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
	LOADS+=("$t: loadavg at start $(cut -d' ' -f1-3 /proc/loadavg)")
	if start_target "$t"; then
		case $t in
		nginx) mem_guard nginx && run_changes nginx-reload nginx "$NGINX_RELOADS" ;;
		haproxy)
			run_changes haproxy-api haproxy "$CHANGES"
			mem_guard haproxy && run_changes haproxy-reload haproxy "$RELOADS" ;;
		icpgate) run_changes icpgate-file icpgate "$CHANGES" ;;
		esac
	fi
	stop "${PID[$t]}"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
median() { # ROW MEASURE
	awk -F'\t' -v w="$1" -v m="$2" '$1 == w && $2 == m {print $4}' "$RAW" | sort -g |
		awk '{v[NR] = $1} END {if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
count() { awk -F'\t' -v w="$1" -v m="$2" '$1 == w && $2 == m' "$RAW" | wc -l; }
fmt() { [[ -z $1 ]] && { echo "—"; return; }; awk -v v="$1" 'BEGIN {
	if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else if (v >= 1) printf "%.2f", v; else printf "%.3f", v }'; }
{
	echo "== scale-maps, $(date -u +%FT%TZ), $N names ($PASSING passing), generated in ${GEN_S}s"
	echo "nginx $(nginx -v 2>&1 | cut -d/ -f2) (http map$( ((NGINX_STREAM)) && echo " + stream map"), map_hash_max_size $HASH_MAX), $(haproxy -v | head -1 | cut -d' ' -f1-3), icpgate ${ICPGATE_VERSION:-not run}"
	echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); loadavg before $LOAD_BEFORE, after $LOAD_AFTER"
	for l in "${LOADS[@]}"; do echo "  $l"; done
	echo
	printf '%-16s %10s %10s %10s\n' start "seconds" "RSS MiB" "PSS MiB"
	for t in nginx haproxy icpgate; do
		has_target "$t" || continue
		printf '%-16s %10s %10s %10s\n' "$t" "$(fmt "$(median "$t" start_s)")" "$(median "$t" start_rss_mib)" "$(median "$t" start_pss_mib)"
	done
	echo
	printf '%-16s %3s %12s %14s %14s %14s %14s\n' "change" n "effective s" "peak RSS MiB" "peak PSS MiB" "after RSS MiB" "old gone s"
	for m in nginx-reload haproxy-reload haproxy-api icpgate-file; do
		[[ $(count "$m" effective_s) -gt 0 ]] || continue
		printf '%-16s %3s %12s %14s %14s %14s %14s\n' "$m" "$(count "$m" effective_s)" "$(fmt "$(median "$m" effective_s)")" \
			"$(median "$m" peak_rss_mib)" "$(median "$m" peak_pss_mib)" "$(median "$m" after_rss_mib)" "$(fmt "$(median "$m" old_workers_gone_s)")"
	done
	echo "(medians; effective = from the start of the edit until the first probe with the new status)"
	if ((${#NOTES[@]})); then
		echo
		for n in "${NOTES[@]}"; do echo "note: $n"; done
	fi
	echo
	echo "raw (row, measure, rep, value):"
	sort -k1,1 -k2,2 -k3,3n "$RAW" | column -t | sed 's/^/  /'
} | tee "$W/report.txt"
[[ -n ${KEEP:-} ]] || cp "$W/report.txt" "/tmp/scale-maps-$(date -u +%Y%m%dT%H%M%SZ).txt"
