#!/bin/bash
# Pull speed: `tsrun pull` against `podman pull` from the same local registry (Debian's
# docker-registry on 127.0.0.1, plain http) into empty stores, for a 1-layer image of about 50 MB
# compressed and a 3-layer image. Both run rootless as the same user; each run starts from an
# empty store (hyperfine --prepare). Medians of RUNS runs; results appended to bench/RESULTS.md.
# Usage: bench/pull.sh [RUNS]
source "$(dirname "$0")/lib.sh"
RUNS=${1:-5}
ensure_bench_user
command -v docker-registry >/dev/null || { echo "bench/pull.sh needs Debian's docker-registry package" >&2; exit 1; }

work="$BENCH_ROOT/pull"
as_user "podman unshare rm -rf $work 2>/dev/null || rm -rf $work; mkdir -p $work/src $work/registry"
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
registry="127.0.0.1:$port"
cat > "$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: $registry
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null' EXIT
for _ in $(seq 50); do curl -fs "http://$registry/v2/" >/dev/null && break; sleep 0.1; done

# Layer tarballs (gzip -6, as registries usually serve them). The 1-layer image is a Debian
# minbase (bench/make-minbase.sh: debootstrap, cached in /var/cache/tsrun-bench), the image the
# issue's reference figures were measured with; the 3-layer image is that minbase plus this
# machine's /usr/lib/python3.11 and /usr/lib/gcc as two more layers. Without debootstrap (not
# root, no network) busybox plus /usr/lib/gcc and 4 MB of random bytes stand in for the minbase.
if "$REPO/bench/make-minbase.sh" "$work/base.tar" 2>"$work/minbase.log"; then
  base_desc="a Debian 12 minbase (debootstrap --variant=minbase, apt lists removed)"
else
  echo "bench/pull.sh: no Debian minbase ($(tail -1 "$work/minbase.log")); using a synthetic base layer" >&2
  "$REPO/scripts/make-busybox-rootfs.sh" "$work/busybox.tar"
  mkdir -p "$work/rootfs-one"
  tar -C "$work/rootfs-one" -xf "$work/busybox.tar"
  tar -C / -cf - usr/lib/gcc | tar -C "$work/rootfs-one" -xf -
  head -c 4000000 /dev/urandom > "$work/rootfs-one/random"
  tar -C "$work/rootfs-one" -cf "$work/base.tar" .
  base_desc="synthetic: busybox, /usr/lib/gcc of this machine and 4 MB of random bytes (no debootstrap here)"
fi
gzip -6 -c "$work/base.tar" > "$work/one.tar.gz"
cp "$work/one.tar.gz" "$work/l1.tar.gz"
tar -C / -cf - usr/lib/python3.11 | gzip -6 > "$work/l2.tar.gz"
tar -C / -cf - usr/lib/gcc | gzip -6 > "$work/l3.tar.gz"
chmod -R a+rX "$work"

src="TSRUN_ROOT=$work/src"
as_user "export $src; \$TSRUN import -q $work/one.tar.gz one >/dev/null && \$TSRUN push -q one $registry/bench/one:latest >/dev/null
  for l in l1 l2 l3; do \$TSRUN import -q $work/\$l.tar.gz \$l >/dev/null && \$TSRUN push -q \$l $registry/bench/parts:\$l >/dev/null; done"

# The 3-layer image: the three one-layer images' layers under one config and manifest.
node --input-type=module - "$registry" <<'EOF'
import { createHash } from "node:crypto";
const [registry] = process.argv.slice(2);
const base = `http://${registry}/v2/bench`;
const accept = { Accept: "application/vnd.oci.image.manifest.v1+json" };
const manifests = [];
const configs = [];
for (const tag of ["l1", "l2", "l3"]) {
  const m = await (await fetch(`${base}/parts/manifests/${tag}`, { headers: accept })).json();
  manifests.push(m);
  configs.push(await (await fetch(`${base}/parts/blobs/${m.config.digest}`)).json());
}
const config = { ...configs[0], rootfs: { type: "layers", diff_ids: configs.flatMap((c) => c.rootfs.diff_ids) }, history: configs.flatMap((c) => c.history ?? []) };
const configBytes = Buffer.from(JSON.stringify(config));
const configDigest = "sha256:" + createHash("sha256").update(configBytes).digest("hex");
for (const m of manifests) {
  const digest = m.layers[0].digest;
  const r = await fetch(`${base}/three/blobs/uploads/?mount=${digest}&from=bench/parts`, { method: "POST" });
  if (r.status !== 201) throw new Error(`mount ${digest}: ${r.status}`);
}
const upload = await fetch(`${base}/three/blobs/uploads/`, { method: "POST" });
const location = new URL(upload.headers.get("location"), `http://${registry}`);
location.searchParams.set("digest", configDigest);
if ((await fetch(location, { method: "PUT", body: configBytes })).status !== 201) throw new Error("config upload failed");
const manifest = {
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: configBytes.length },
  layers: manifests.map((m) => m.layers[0]),
};
const put = await fetch(`${base}/three/manifests/latest`, { method: "PUT", headers: { "Content-Type": manifest.mediaType }, body: JSON.stringify(manifest) });
if (put.status !== 201) throw new Error(`manifest PUT: ${put.status}`);
EOF

size_mb() { node -e 'const m=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log((m.layers.reduce((n,l)=>n+l.size,0)/1e6).toFixed(1))'; }
accept="Accept: application/vnd.oci.image.manifest.v1+json"
one_mb=$(curl -fs -H "$accept" "http://$registry/v2/bench/one/manifests/latest" | size_mb)
three_mb=$(curl -fs -H "$accept" "http://$registry/v2/bench/three/manifests/latest" | size_mb)

# Empty stores before every run; before each measured run, outside its time, the store is
# removed, caches dropped and the registry's blobs and both programs read back
# (bench_reset_scripts in lib.sh).
bench_reset_scripts "$work" "$work/registry/data"
tstore="$work/tsrun-store"
proot="$work/podman-root"
prun="$work/podman-run"
tsrun_pull="$work/as-user env TSRUN_ROOT=$tstore $REPO/bin/tsrun pull -q"
podman_pull="$work/as-user $PODMAN --root $proot --runroot $prun --storage-driver overlay pull -q --tls-verify=false"

loadavg=$(cut -d" " -f1-3 /proc/loadavg)  # other work on the machine shows here
json="$work/pull.json"
(cd "$work" && hyperfine -N --runs "$RUNS" --export-json "$json" \
  --prepare "$work/reset.sh $tstore" -n 'tsrun 1 layer' "$tsrun_pull $registry/bench/one:latest" \
  --prepare "$work/reset.sh $proot $prun" -n 'podman 1 layer' "$podman_pull $registry/bench/one:latest" \
  --prepare "$work/reset.sh $tstore" -n 'tsrun 3 layers' "$tsrun_pull $registry/bench/three:latest" \
  --prepare "$work/reset.sh $proot $prun" -n 'podman 3 layers' "$podman_pull $registry/bench/three:latest") >&2

# Sanity: the last pulled image runs.
as_user "TSRUN_ROOT=$tstore \$TSRUN run --rm $registry/bench/three:latest true"

t1=$(median_ms "$json" "tsrun 1 layer"); p1=$(median_ms "$json" "podman 1 layer")
t3=$(median_ms "$json" "tsrun 3 layers"); p3=$(median_ms "$json" "podman 3 layers")
ratio() { node -e "console.log(($1/$2).toFixed(2))"; }
c() { cpu_ms "$json" "$1"; }
table="| image | tsrun pull (ms) | podman pull (ms) | tsrun / podman | CPU tsrun / podman (ms, user+sys) |
| --- | --- | --- | --- | --- |
| 1 layer, $one_mb MB gzip | $t1 | $p1 | $(ratio "$t1" "$p1") | $(c "tsrun 1 layer") / $(c "podman 1 layer") |
| 3 layers, $three_mb MB gzip | $t3 | $p3 | $(ratio "$t3" "$p3") | $(c "tsrun 3 layers") / $(c "podman 3 layers") |"
body="Measured $(date -u +%Y-%m-%d) with \`bench/pull.sh $RUNS\` (median of $RUNS runs, $(nproc) cores, $(uname -r), load average $loadavg at the start): local docker-registry over plain http on 127.0.0.1, empty store before every run, both rootless as the same user (\`podman --runtime runc --storage-driver overlay pull -q --tls-verify=false\`); before each run, outside its time, kernel caches $BENCH_CACHES and the registry's blobs and both programs read back into the page cache. 1 layer: $base_desc; 3 layers: the same plus /usr/lib/python3.11 and /usr/lib/gcc of this machine; gzip -6. The issue's reference figures for Podman on its machine: about 2.9 s (minbase) and 4.2 s (3 layers); the target is tsrun ≤ 0.6 × Podman.

$table"
append_results "pull" "$body"
echo "$table"
