#!/bin/bash
# tar headers: the per-entry CPU cost of tsrun's tar reader (layer unpacking: import, load, pull)
# and tar writer (commit, export), without the file system, on 100,200 small PAX entries: medians
# of 9 passes in one process. Give several checkouts (each built: node_modules, build/, src/) to
# compare them, run alternately three times, e.g. a checkout of main against this one; no Podman
# figure here: the commands that use these paths have their own benchmarks (load.sh, export.sh,
# commit.sh, pull.sh).
# Usage: bench/tar-headers.sh [CHECKOUT...]   (default: this checkout)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_ROOT:-/tmp/tsrun-bench}/tar-headers
mkdir -p "$WORK"
[ $# -gt 0 ] || set -- "$REPO"
archive="$WORK/entries.tar"
[ -f "$archive" ] || python3 - "$archive" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for d in range(200):
        info = tarfile.TarInfo(f"usr/share/doc/package-{d}"); info.type = tarfile.DIRTYPE; info.mode = 0o755; t.addfile(info)
        for f in range(500):
            info = tarfile.TarInfo(f"usr/share/doc/package-{d}/file-{f}.txt"); info.size = 10; t.addfile(info, io.BytesIO(b"0123456789"))
PY
cat > "$WORK/bench.mts" <<'TS'
import { readFileSync } from "node:fs";
import { TarReader } from "./src/store/tar-reader.ts";
import { TarWriter } from "./src/store/pack.ts";
const median = (run: () => void): number => {
  const times: number[] = [];
  for (let i = 0; i < 9; i++) {
    const t = process.hrtime.bigint();
    run();
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return times.sort((a, b) => a - b)[4] as number;
};
const data = readFileSync(process.argv[2] as string);
const read = median(() => {
  const reader = new TarReader({ entry: () => {}, data: () => {}, fileEnd: () => {} });
  for (let pos = 0; pos < data.length; pos += 1 << 20) reader.feed(data.subarray(pos, pos + (1 << 20)));
});
const write = median(() => {
  const tar = new TarWriter(() => {});
  for (let d = 0; d < 200; d++) {
    tar.add({ path: `usr/share/doc/package-${d}/`, type: "directory", mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1700000000 });
    for (let f = 0; f < 500; f++) {
      const link = f % 50 === 0;
      tar.add({ path: `usr/share/doc/package-${d}/file-${f}.txt`, type: link ? "symlink" : "fifo", linkpath: link ? "../other/target" : undefined, mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1700000000 });
    }
  }
  tar.finish();
});
console.log(`read ${read.toFixed(1)} ms, write ${write.toFixed(1)} ms (100,200 entries)`);
TS
for checkout in "$@"; do
  # The bundle goes into the checkout's dist/: the addon is found from there.
  cp "$WORK/bench.mts" "$checkout/.tar-headers-bench.mts"
  (cd "$checkout" && npx esbuild --bundle --platform=node --format=esm .tar-headers-bench.mts --outfile=dist/.tar-headers-bench.mjs --log-level=warning)
  rm "$checkout/.tar-headers-bench.mts"
done
for round in 1 2 3; do
  for checkout in "$@"; do
    echo "$checkout (round $round): $(cd "$checkout" && node dist/.tar-headers-bench.mjs "$archive")"
  done
done
for checkout in "$@"; do rm -f "$checkout/dist/.tar-headers-bench.mjs"; done
