#!/bin/bash
# A/B of a change to the start-up path on a machine too noisy for wall times: the page faults
# (minor, with the children tsrun waited for: the container and the helpers it reaps) of
# `tsrun run --rm busybox true` and a few variants, for this checkout and another one (built:
# bin/, dist/, build/Release/), runs interleaved, medians. On these VMs a page fault costs
# ~20-30 us, and the count barely moves with the load. Appends the table to bench/RESULTS.md.
# Usage: bench/startup-faults.sh OTHER_CHECKOUT [RUNS]   (default 21)
source "$(dirname "$0")/lib.sh"
OTHER=$(cd "${1:?usage: bench/startup-faults.sh OTHER_CHECKOUT [RUNS]}" && pwd)
RUNS=${2:-21}
[ -x "$OTHER/bin/tsrun" ] || { echo "bench/startup-faults.sh: $OTHER/bin/tsrun missing" >&2; exit 1; }
ensure_bench_user
bench_busybox
variants=("run --rm busybox true" "run --rm --network none busybox true" "run --rm busybox echo hello" "run busybox true")

# Minor page faults of one command line of tsrun (BIN ARGS...), as the bench user.
faults() {
  as_user "/usr/bin/time -o faults.out -f %R $1 $2 >/dev/null 2>&1; tail -1 faults.out"
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# "MEDIAN (MIN-MAX)"
summary() { echo "$(median "$@") ($(printf '%s\n' "$@" | sort -n | head -1)-$(printf '%s\n' "$@" | sort -n | tail -1))"; }

table="| command | faults, $(basename "$OTHER") (median) | faults, this checkout (median) | change |
| --- | --- | --- | --- |"
for v in "${variants[@]}"; do
  a=() b=()
  for _ in $(seq "$RUNS"); do
    a+=("$(faults "$OTHER/bin/tsrun" "$v")")
    b+=("$(faults "$REPO/bin/tsrun" "$v")")
  done
  # Containers kept by the runs without --rm.
  as_user '$TSRUN container prune -f >/dev/null'
  ma=$(median "${a[@]}") mb=$(median "${b[@]}")
  table="$table
| \`tsrun $v\` | $(summary "${a[@]}") | $(summary "${b[@]}") | $(node -e "console.log(((${mb}-${ma})/${ma}*100).toFixed(1))") % |"
done
body="Measured $(date -u +%Y-%m-%d) with \`bench/startup-faults.sh $OTHER $RUNS\` ($RUNS runs of each, interleaved; minor page faults from /usr/bin/time, median (min-max); $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1 /proc/loadavg) at the end). This checkout at $(git -C "$REPO" rev-parse --short HEAD), the other at $(git -C "$OTHER" rev-parse --short HEAD 2>/dev/null || echo "a copy without git").

$table"
append_results "startup page faults: A/B against $(basename "$OTHER")" "$body"
echo "$table"
