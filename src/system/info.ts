// `info`: where tsrun keeps its state, who it maps to whom, and what this kernel and host give it
// (the network helper, overlay with userxattr, openat2, cgroups): what to look at first when
// something does not work. Field names follow Podman's `info` (Host, Store, Version), so that
// --format templates written for it read the same fields here.
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, statfsSync } from "node:fs";
import { lazyChildProcess } from "../builtin.js";
import os from "node:os";
import path from "node:path";
import type { Containers } from "../container/run.js";
import type { Store } from "../store/store.js";
import { currentMapping } from "../userns.js";
import { native } from "../native.js";
import { findProgram } from "../network/outbound.js";
import { runInUserNamespace } from "../userns-run.js";
import { tempPath } from "../store/temps.js";
import { versionInfo, type VersionInfo } from "./version.js";

export interface IdMap {
  ContainerID: number;
  HostID: number;
  Size: number;
}

export interface SystemInfo {
  Host: {
    Arch: string;
    Os: string;
    Kernel: string;
    Distribution: string;
    Hostname: string;
    CPUs: number;
    MemTotal: number;
    Rootless: boolean;
    IDMappings: { UIDMap: IdMap[]; GIDMap: IdMap[] };
    /** Where newuidmap/newgidmap are ("" when missing: only one id can be mapped). */
    NewUIDMap: string;
    NewGIDMap: string;
    Network: { Helper: string; Executable: string; Version: string; TunUsable: boolean };
    Cgroups: { Version: "v1" | "v2" | "hybrid"; Delegated: boolean; Controllers: string[] };
    Features: { OverlayUserxattr: boolean; Openat2: boolean };
  };
  Store: {
    GraphRoot: string;
    RunRoot: string;
    GraphDriverName: string;
    ImageStore: { Number: number };
    ContainerStore: { Number: number; Running: number; Stopped: number };
    VolumeStore: { Number: number };
  };
  Version: VersionInfo["Client"];
}

function firstLine(file: string, pattern: RegExp): string {
  try {
    const m = pattern.exec(readFileSync(file, "utf8"));
    return m?.[1] ?? "";
  } catch {
    return "";
  }
}

function toMaps(start: number, own: number, range: { start: number; count: number } | null): IdMap[] {
  const maps: IdMap[] = [{ ContainerID: 0, HostID: own, Size: 1 }];
  if (range) maps.push({ ContainerID: 1, HostID: range.start, Size: range.count });
  return start === 0 && own === 0 ? [{ ContainerID: 0, HostID: 0, Size: 4294967295 }] : maps;
}

const CGROUP2_MAGIC = 0x63677270;

/** cgroup v2 (unified) or v1 (or hybrid), and whether this user may manage its own cgroup. */
export function cgroupInfo(): SystemInfo["Host"]["Cgroups"] {
  let unified = false;
  try {
    unified = statfsSync("/sys/fs/cgroup").type === CGROUP2_MAGIC;
  } catch {
    // No cgroup fs mounted.
  }
  if (!unified) return { Version: existsSync("/sys/fs/cgroup/unified") ? "hybrid" : "v1", Delegated: false, Controllers: [] };
  const own = firstLine("/proc/self/cgroup", /^0::(.*)$/m);
  const dir = path.join("/sys/fs/cgroup", own);
  let delegated = false;
  try {
    accessSync(path.join(dir, "cgroup.subtree_control"), constants.W_OK);
    accessSync(path.join(dir, "cgroup.procs"), constants.W_OK);
    delegated = true;
  } catch {
    // Not ours to manage.
  }
  const controllers = firstLine(path.join(dir, "cgroup.controllers"), /^(.*)$/m).split(" ").filter(Boolean);
  return { Version: "v2", Delegated: delegated, Controllers: controllers };
}

/** Whether openat2(2) exists (tsrun resolves every container path with RESOLVE_IN_ROOT). */
function hasOpenat2(): boolean {
  const O_PATH = 0o10000000;
  const root = openSync("/", O_PATH | constants.O_DIRECTORY);
  try {
    closeSync(native().openInRoot(root, ".", O_PATH, 0));
    return true;
  } catch {
    return false;
  } finally {
    closeSync(root);
  }
}

/** Mounts an overlay with userxattr inside a user namespace, as containers do (about 50 ms). */
async function overlayUserxattr(store: Store): Promise<boolean> {
  const dir = tempPath(store.paths.tmp, "probe");
  for (const sub of ["lower", "upper", "work", "merged"]) mkdirSync(path.join(dir, sub), { recursive: true });
  try {
    const r = await runInUserNamespace(["sh", "-c", 'mount -n -t overlay overlay -o "lowerdir=$1/lower,upperdir=$1/upper,workdir=$1/work,userxattr" "$1/merged"', "probe", dir]);
    return r.code === 0;
  } catch {
    return false;
  } finally {
    await store.removeTree(dir).catch(() => undefined);
  }
}

function networkInfo(): SystemInfo["Host"]["Network"] {
  // The helper the private network uses unless told otherwise (see outboundHelper).
  const slirp = findProgram("slirp4netns");
  const helper = slirp ? "slirp4netns" : findProgram("pasta") ? "pasta" : "";
  const executable = slirp ?? findProgram("pasta") ?? "";
  let version = "";
  if (executable) {
    const r = lazyChildProcess().spawnSync(executable, ["--version"], { encoding: "utf8", timeout: 2000 });
    version = (r.stdout ?? "").split("\n").find((l) => l.trim())?.trim() ?? "";
  }
  let tun = false;
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
    tun = true;
  } catch {
    // Not usable: the private network cannot work.
  }
  return { Helper: helper, Executable: executable, Version: version, TunUsable: tun };
}

export async function systemInfo(containers: Containers): Promise<SystemInfo> {
  const store = containers.store;
  const mapping = currentMapping();
  const version = versionInfo().Client;
  const all = containers.list();
  const running = all.filter((c) => c.state.status === "running").length;
  mkdirSync(store.paths.tmp, { recursive: true });
  return {
    Host: {
      Arch: version.Arch,
      Os: version.Os,
      Kernel: os.release(),
      Distribution: firstLine("/etc/os-release", /^PRETTY_NAME="?([^"\n]*)"?$/m),
      Hostname: os.hostname(),
      CPUs: os.cpus().length,
      MemTotal: os.totalmem(),
      Rootless: mapping.uid !== 0,
      IDMappings: { UIDMap: toMaps(mapping.uid, mapping.uid, mapping.subUids), GIDMap: toMaps(mapping.uid, mapping.gid, mapping.subGids) },
      NewUIDMap: findProgram("newuidmap") ?? "",
      NewGIDMap: findProgram("newgidmap") ?? "",
      Network: networkInfo(),
      Cgroups: cgroupInfo(),
      Features: { OverlayUserxattr: await overlayUserxattr(store), Openat2: hasOpenat2() },
    },
    Store: {
      GraphRoot: store.paths.root,
      RunRoot: store.paths.runRoot,
      GraphDriverName: "overlay",
      ImageStore: { Number: store.images.list().length },
      ContainerStore: { Number: all.length, Running: running, Stopped: all.length - running },
      VolumeStore: { Number: containers.volumes.names().length },
    },
    Version: version,
  };
}
