#!/bin/bash
# Port forwarding: iperf3 single-stream throughput through -p (both directions) with tsrun's own
# forwarder (tsrun-forward, the default) and with pasta's, against Podman's default rootless
# port forwarding and plain host loopback, and the rate of short HTTP connections through -p to
# busybox httpd. Then user-defined networks: container-to-container throughput over the
# network's bridge, and the start of `run --rm` on such a network. iperf3 runs inside the
# containers from the host's /usr through read-only binds (busybox has none).
# Usage: bench/network.sh [SECONDS]
source "$(dirname "$0")/lib.sh"
SECS=${1:-5}
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

gbits() { # iperf3 client args -> Gbit/s (receiver side)
  as_user "iperf3 -J $1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log((j.end.sum_received.bits_per_second/1e9).toFixed(1))})'
}

rows=""
# Plain loopback.
as_user "iperf3 -s -p 15201 -D -I $BENCH_ROOT/iperf-lo.pid"
sleep 0.5
rows+="| host loopback | $(gbits "-c 127.0.0.1 -p 15201 -t $SECS") | $(gbits "-c 127.0.0.1 -p 15201 -t $SECS -R") | |
"
kill "$(cat "$BENCH_ROOT/iperf-lo.pid")"

measure() { # label, runtime-run-prefix, rm-cmd
  local label=$1 run=$2 rm=$3
  as_user "$run -d --name bench-iperf -p 127.0.0.1:15202:5201 $BINDS busybox /usr/bin/iperf3 -s >/dev/null"
  as_user "$run -d --name bench-httpd -p 127.0.0.1:15203:80 busybox sh -c 'echo hello > /tmp/index.html; exec httpd -f -p 80 -h /tmp' >/dev/null"
  sleep 1
  local up down rate
  up=$(gbits "-c 127.0.0.1 -p 15202 -t $SECS")
  down=$(gbits "-c 127.0.0.1 -p 15202 -t $SECS -R")
  rate=$(as_user "node $BENCH_ROOT/conn-rate.mjs 15203 $SECS 8" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).rate))')
  as_user "$rm bench-iperf bench-httpd >/dev/null"
  rows+="| $label | $up | $down | $rate |
"
}
measure "tsrun -p (tsrun-forward, default)" '$TSRUN run' '$TSRUN rm -f'
measure "tsrun -p (pasta: --network private:port_handler=pasta)" '$TSRUN run --network private:port_handler=pasta' '$TSRUN rm -f'
have_podman && measure "podman -p (rootlessport, slirp4netns)" "$PODMAN run" "$PODMAN rm -f -t 0"

header="| path | host→container Gbit/s | container→host Gbit/s | short HTTP connections /s |
| --- | --- | --- | --- |"

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

body="Measured $(date -u +%Y-%m-%d) with \`bench/network.sh $SECS\` ($(nproc) cores): iperf3 single stream, $SECS s each way; connections: 8 concurrent clients, one request per TCP connection, $SECS s. User-defined network: iperf3 from one container to another by name; start times are hyperfine medians of 20 runs.

$header
$rows
$net_header
$net_rows"
append_results "network: port forwarding" "$body"
echo "$header"
printf '%s' "$rows"
echo "$net_header"
printf '%s' "$net_rows"
