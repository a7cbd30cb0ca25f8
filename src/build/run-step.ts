// RUN: the command runs in a container on the stage's layers, with the stage's ENV, USER,
// WORKDIR and the ARG values in its environment, on the network the build asked for (the private
// network by default, as `run`), its output streamed to ours. What it changed becomes the step's
// layer, packed by the storage worker exactly as `commit` packs a container (see
// image/commit.ts); the container is removed either way.
//
// The container is an intermediate one (Containers.createIntermediate): leased until it is
// removed, so a prune running meanwhile leaves it alone, and a build killed meanwhile leaves a
// container the next command sweeps away. Its layer dir and tar go to temporary names
// carrying our pid until the builder's transaction moves them into place.
import { closeSync, openSync } from "node:fs";
import path from "node:path";
import { tempPath } from "../store/temps.js";
import { faultPoint } from "../store/fault.js";
import type { Containers } from "../container/run.js";
import type { NetworkMode } from "../container/mounts.js";
import { waitExit } from "../container/process.js";
import { scanSpecFor } from "../image/diff.js";
import type { ImageConfig } from "../image/types.js";
import type { PackResult } from "../store/pack.js";
import type { SecurityFlags } from "../container/security/options.js";
import { removeFile } from "../remove-file.js";

export interface RunStepOptions {
  /** The image the stage started from (shown for the container), its layers so far and its config. */
  imageId: string;
  displayName: string;
  layers: string[];
  config: ImageConfig;
  argv: string[];
  /** KEY=VALUE: the ARG values the command sees. */
  env: string[];
  /** --mount specs (RUN --mount, see run-mounts.ts). */
  mounts?: string[];
  network: NetworkMode;
  /** --add-host and --ulimit of the build. */
  addHosts?: string[];
  ulimits?: string[];
  /** build --security-opt, --memory, --cpu-shares...: the RUN container's settings, as `run` takes them. */
  security?: Omit<SecurityFlags, "ulimits">;
  /** --shm-size of the build, in bytes. */
  shmSize?: number;
  /** Discard the command's output (build -q). */
  quiet: boolean;
  /** SOURCE_DATE_EPOCH: file times in the layer are clamped to it. */
  clampMtime?: number | undefined;
  /** Called with the command's pid once it runs (to stop it when the build is cancelled). */
  onStart?: (pid: number) => void;
}

export type RunStepResult =
  | { status: number }
  | { status: 0; packed: PackResult; layerTmp: string; tarFile: string };

/** The config a build container runs with: no volumes (RUN writes into the layer), no health check. */
function containerConfig(config: ImageConfig): ImageConfig {
  const c = structuredClone(config);
  if (c.config) {
    delete c.config.Volumes;
    delete c.config.Healthcheck;
    delete c.config.ExposedPorts;
    delete c.config.OnBuild;
  }
  return c;
}

/** Runs the command; on success returns its changes packed as a layer (not yet in the store). */
export async function runStep(containers: Containers, opts: RunStepOptions): Promise<RunStepResult> {
  const store = containers.store;
  const { record, lease } = await containers.createIntermediate({
    image: opts.displayName,
    base: { id: opts.imageId, layers: opts.layers, config: containerConfig(opts.config) },
    args: opts.argv,
    entrypoint: "",
    env: opts.env,
    mounts: opts.mounts ?? [],
    network: opts.network,
    addHosts: opts.addHosts ?? [],
    security: { ...(opts.security ?? {}), ulimits: opts.ulimits ?? [] },
    ...(opts.shmSize !== undefined ? { shmSize: opts.shmSize } : {}),
  });
  const devNull = opts.quiet ? openSync("/dev/null", "w") : -1;
  try {
    let status: number;
    try {
      const proc = await containers.start(record, opts.quiet ? [-1, devNull, devNull] : undefined);
      opts.onStart?.(proc.pid);
      try {
        status = await waitExit(proc.pid);
      } finally {
        closeSync(proc.pidfd);
      }
    } finally {
      containers.stopNetwork(record);
    }
    faultPoint("build:run-exited");
    if (status !== 0) return { status };
    const layerTmp = store.layers.createTemp();
    const tarFile = tempPath(store.paths.blobs, "build");
    try {
      const spec = scanSpecFor(containers, record);
      // BuildKit removes the mount points it made for RUN --mount, the parents included
      // (/run/secrets, /root/.cache): only the command's own changes make the layer.
      for (const m of record.hostConfig.mounts) {
        for (let dir = path.posix.dirname(m.target); dir !== "/" && dir !== "."; dir = path.posix.dirname(dir)) spec.mountPoints.push(dir.slice(1));
      }
      const packed = await store.pack({ ...spec, tarFile, layerDir: layerTmp, ...(opts.clampMtime !== undefined ? { clampMtime: opts.clampMtime } : {}) });
      return { status: 0, packed, layerTmp, tarFile };
    } catch (err) {
      removeFile(tarFile);
      await store.removeTree(layerTmp);
      throw err;
    }
  } finally {
    if (devNull >= 0) closeSync(devNull);
    // Removed under the container's own lease: it writes nothing, so a full disk cannot stop
    // it. Should it fail all the same, the lease stays: once this process has ended it is a
    // dead lease, and the next command sweeps the container away.
    await containers.remove(record, { underLease: lease });
    lease.release();
  }
}
