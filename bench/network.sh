#!/bin/bash
# Port forwarding: iperf3 single-stream throughput through -p (both directions) with tsrun's own
# forwarder (tsrun-forward, the default) and pasta's forwarding (--network pasta), against Podman's default rootless
# port forwarding and plain host loopback, and the rate of short HTTP connections through -p to
# busybox httpd. Then user-defined networks: container-to-container throughput over the
# network's bridge, and the start of `run --rm` on such a network. iperf3 runs inside the
# containers from the host's /usr through read-only binds (busybox has none).
# Every path is set up first, then measured in ROUNDS interleaved rounds (medians reported), so
# that a machine shared with other work loads all of them alike.
# Usage: bench/network.sh [SECONDS] [ROUNDS]
source "$(dirname "$0")/lib.sh"
SECS=${1:-5}
ROUNDS=${2:-3}
LOAD=$(cut -d' ' -f1 /proc/loadavg)
command -v iperf3 >/dev/null || { echo "install iperf3" >&2; exit 1; }
ensure_bench_user
tar="$BENCH_ROOT/busybox.tar"
"$REPO/scripts/make-busybox-rootfs.sh" "$tar"
chmod 644 "$tar"
cp "$REPO/bench/conn-rate.mjs" "$BENCH_ROOT/conn-rate.mjs"
chmod 644 "$BENCH_ROOT/conn-rate.mjs"
as_user '$TSRUN import busybox.tar busybox >/dev/null'
have_podman && as_user "$PODMAN import busybox.tar busybox >/dev/null"
BINDS="-v /usr:/usr:ro -v /lib:/lib:ro -v /lib64:/lib64:ro"
HTTPD="sh -c 'echo hello > /tmp/index.html; exec httpd -f -p 80 -h /tmp'"

gbits() { # iperf3 client args -> Gbit/s (receiver side)
  as_user "iperf3 -J $1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log((j.end.sum_received.bits_per_second/1e9).toFixed(2))})'
}
rate() { # port -> short HTTP connections per second
  as_user "node $BENCH_ROOT/conn-rate.mjs $1 $SECS 8" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).rate))'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# label | iperf port | httpd port ; the servers of each path.
labels=("host loopback" "tsrun -p (pasta: --network pasta)" "tsrun -p (tsrun-forward, the default; slirp4netns for outbound)")
iperf_ports=(15201 15202 15204)
httpd_ports=("" 15203 15205)
cleanup() {
  as_user '$TSRUN rm -f bench-iperf bench-httpd bench-iperf-p bench-httpd-p >/dev/null 2>&1' || true
  have_podman && { as_user "$PODMAN rm -f -t 0 bench-iperf bench-httpd >/dev/null 2>&1" || true; }
  [ -f "$BENCH_ROOT/iperf-lo.pid" ] && kill "$(cat "$BENCH_ROOT/iperf-lo.pid")" 2>/dev/null || true
}
cleanup
as_user "iperf3 -s -p 15201 -D -I $BENCH_ROOT/iperf-lo.pid"
as_user "\$TSRUN run -d --name bench-iperf --network pasta -p 127.0.0.1:15202:5201 $BINDS busybox /usr/bin/iperf3 -s >/dev/null"
as_user "\$TSRUN run -d --name bench-httpd --network pasta -p 127.0.0.1:15203:80 busybox $HTTPD >/dev/null"
as_user "\$TSRUN run -d --name bench-iperf-p -p 127.0.0.1:15204:5201 $BINDS busybox /usr/bin/iperf3 -s >/dev/null"
as_user "\$TSRUN run -d --name bench-httpd-p -p 127.0.0.1:15205:80 busybox $HTTPD >/dev/null"
if have_podman; then
  labels+=("podman -p (rootlessport, slirp4netns)")
  iperf_ports+=(15206)
  httpd_ports+=(15207)
  as_user "$PODMAN run -d --name bench-iperf -p 127.0.0.1:15206:5201 $BINDS busybox /usr/bin/iperf3 -s >/dev/null"
  as_user "$PODMAN run -d --name bench-httpd -p 127.0.0.1:15207:80 busybox $HTTPD >/dev/null"
fi
sleep 1
declare -A up down conn
for ((r = 0; r < ROUNDS; r++)); do
  for i in "${!labels[@]}"; do
    up[$i]+=" $(gbits "-c 127.0.0.1 -p ${iperf_ports[$i]} -t $SECS")"
    down[$i]+=" $(gbits "-c 127.0.0.1 -p ${iperf_ports[$i]} -t $SECS -R")"
    [ -n "${httpd_ports[$i]}" ] && conn[$i]+=" $(rate "${httpd_ports[$i]}")"
  done
done
cleanup
rows=""
lo_up=$(echo "${up[0]}" | median)
lo_down=$(echo "${down[0]}" | median)
for i in "${!labels[@]}"; do
  u=$(echo "${up[$i]}" | median)
  d=$(echo "${down[$i]}" | median)
  c=""
  [ -n "${conn[$i]:-}" ] && c=$(echo "${conn[$i]}" | median)
  ratio=$(node -e "console.log(($u/$lo_up).toFixed(2)+' / '+($d/$lo_down).toFixed(2))")
  rows+="| ${labels[$i]} | $u | $d | $ratio | $c |
"
done

header="| path | host→container Gbit/s | container→host Gbit/s | × loopback (↑ / ↓) | short HTTP connections /s |
| --- | --- | --- | --- | --- |"

# User-defined networks: one container to another over the bridge, and start-up cost.
net_rows=""
bridge() { # label, runtime command
  local label=$1 rt=$2
  as_user "$rt rm -f bench-iperf-srv >/dev/null 2>&1; $rt network rm bench-net >/dev/null 2>&1" || true
  as_user "$rt network create bench-net >/dev/null"
  as_user "$rt run -d --name bench-iperf-srv --network bench-net $BINDS busybox /usr/bin/iperf3 -s >/dev/null"
  sleep 1
  local up
  # By address: Podman's CNI networks here have no name resolution.
  local ip
  ip=$(as_user "$rt inspect -f '{{(index .NetworkSettings.Networks \"bench-net\").IPAddress}}' bench-iperf-srv")
  up=$(as_user "$rt run --rm --network bench-net $BINDS busybox /usr/bin/iperf3 -J -c $ip -t $SECS" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log((j.end.sum_received.bits_per_second/1e9).toFixed(1))})')
  as_user "hyperfine -N --warmup 3 --runs 20 --export-json $BENCH_ROOT/netstart.json '$rt run --rm --network bench-net busybox true' '$rt run --rm busybox true'" >&2
  local on_net default
  on_net=$(median_ms "$BENCH_ROOT/netstart.json" "$rt run --rm --network bench-net busybox true")
  default=$(median_ms "$BENCH_ROOT/netstart.json" "$rt run --rm busybox true")
  as_user "$rt rm -f bench-iperf-srv >/dev/null; $rt network rm bench-net >/dev/null"
  net_rows+="| $label | $up | $on_net | $default |
"
}
bridge "tsrun" "$REPO/bin/tsrun"
have_podman && bridge "podman (runc)" "$PODMAN"
net_header="| runtime | container→container Gbit/s | \`run --rm --network NET busybox true\` (ms) | \`run --rm busybox true\` (ms) |
| --- | --- | --- | --- |"

body="Measured $(date -u +%Y-%m-%d) with \`bench/network.sh $SECS $ROUNDS\` ($(nproc) cores, load average before: $LOAD): iperf3 single stream, $SECS s each way; connections: 8 concurrent clients, one request per TCP connection to busybox httpd, $SECS s; medians of $ROUNDS interleaved rounds. User-defined network: iperf3 from one container to another by address; start times are hyperfine medians of 20 runs.

$header
$rows
$net_header
$net_rows"
append_results "network: port forwarding" "$body"
echo "$header"
printf '%s' "$rows"
echo "$net_header"
printf '%s' "$net_rows"
