#!/bin/bash
# build: `tsrun build` against `podman build` (Debian's podman, rootless, runc), same user, same
# contexts, the same busybox rootfs imported into both, in one hyperfine run. Two Dockerfiles:
# FROM busybox plus ENV, WORKDIR, COPY of a small directory, RUN and CMD; and a two-stage one
# (COPY --from). Each cold (--no-cache: every RUN and COPY runs) and fully cached. Podman runs
# twice: with native rootless overlay (its fast path, what tsrun does too) and with vfs, the
# driver this machine's Podman configuration picks for the user.
# Usage: bench/build.sh [RUNS]   (results appended to bench/RESULTS.md)
source "$(dirname "$0")/lib.sh"
RUNS=${1:-10}
ensure_bench_user
have_podman || { echo "podman is needed for the comparison" >&2; exit 1; }

WORK="$BENCH_ROOT/build"
mkdir -p "$WORK"
chown "$BENCH_USER" "$WORK"
STORE_ENV="export TSRUN_ROOT=$WORK/store"
PODMAN_OVERLAY="$PODMAN --storage-driver overlay --root $WORK/podman-overlay --runroot $WORK/podman-overlay-run"
PODMAN_VFS="$PODMAN --storage-driver vfs --root $WORK/podman-vfs --runroot $WORK/podman-vfs-run"

"$REPO/scripts/make-busybox-rootfs.sh" "$WORK/busybox.tar"
chmod 644 "$WORK/busybox.tar"

# The contexts: 20 small files to COPY.
rm -rf "$WORK/simple" "$WORK/multi"
mkdir -p "$WORK/simple/src" "$WORK/multi/src"
for i in $(seq 1 20); do
  head -c 2048 /dev/urandom | base64 > "$WORK/simple/src/file$i.txt"
  cp "$WORK/simple/src/file$i.txt" "$WORK/multi/src/"
done
cat > "$WORK/simple/Dockerfile" <<'EOF'
FROM busybox
ENV APP=bench
WORKDIR /app
COPY src/ ./src/
RUN cat src/* | wc -c > size.txt
CMD ["cat", "size.txt"]
EOF
cat > "$WORK/multi/Dockerfile" <<'EOF'
FROM busybox AS build
WORKDIR /build
COPY src/ ./src/
RUN cat src/* > bundle.txt
FROM busybox
COPY --from=build /build/bundle.txt /app/bundle.txt
CMD ["cat", "/app/bundle.txt"]
EOF
chown -R "$BENCH_USER" "$WORK/simple" "$WORK/multi"

for rt in '$TSRUN' "$PODMAN_OVERLAY" "$PODMAN_VFS"; do
  as_user "$STORE_ENV; cd $WORK; $rt import busybox.tar busybox >/dev/null && $rt build -q simple >/dev/null && $rt build -q multi >/dev/null"
done

cmds=()
for ctx in simple multi; do
  cmds+=("$REPO/bin/tsrun build -q --no-cache $ctx" "$PODMAN_OVERLAY build -q --no-cache $ctx" "$PODMAN_VFS build -q --no-cache $ctx")
  cmds+=("$REPO/bin/tsrun build -q $ctx" "$PODMAN_OVERLAY build -q $ctx" "$PODMAN_VFS build -q $ctx")
done
json="$WORK/build.json"
quoted=$(printf "'%s' " "${cmds[@]}")
as_user "$STORE_ENV; cd $WORK; hyperfine -N --warmup 2 --runs $RUNS --export-json $json $quoted" >&2

ratio() { node -e "console.log(($1/$2).toFixed(2))"; }
table="| Dockerfile | cache | tsrun (ms) | podman, overlay (ms) | tsrun / podman overlay | podman, vfs (ms) | tsrun / podman vfs |
| --- | --- | --- | --- | --- | --- | --- |"
for ctx in simple multi; do
  for mode in cold cached; do
    flag=$([ $mode = cold ] && echo "--no-cache " || echo "")
    t=$(median_ms "$json" "$REPO/bin/tsrun build -q $flag$ctx")
    po=$(median_ms "$json" "$PODMAN_OVERLAY build -q $flag$ctx")
    pv=$(median_ms "$json" "$PODMAN_VFS build -q $flag$ctx")
    what=$([ $ctx = simple ] && echo "FROM busybox + ENV, WORKDIR, COPY (20 files), RUN, CMD" || echo "two stages, COPY --from")
    table="$table
| $what | $mode | $t | $po | $(ratio "$t" "$po") | $pv | $(ratio "$t" "$pv") |"
  done
done

# Leave no images behind: every cold run made one.
as_user "$STORE_ENV; \$TSRUN image prune -a -f >/dev/null; \$TSRUN builder prune -a -f >/dev/null"
for p in "$PODMAN_OVERLAY" "$PODMAN_VFS"; do
  as_user "$p image prune -a -f >/dev/null; $p system prune -a -f >/dev/null 2>&1 || true"
done

load=$(cut -d' ' -f1-3 /proc/loadavg)
body="Measured $(date -u +%Y-%m-%d) with \`bench/build.sh $RUNS\` (hyperfine, $RUNS runs after 2 warm-up, medians; $(nproc) cores, $(uname -r), load average $load at the end); Podman $(podman --version | awk '{print $3}') with \`--runtime runc\`, rootless, as the same user, once with native overlay and once with vfs. Cold: \`build --no-cache\` (the base image is in both stores; every COPY and RUN runs). Cached: a rebuild of an unchanged context.

$table"
append_results "build" "$body"
echo "$table"
