// The connection to tsrun-netns, the per-user process that holds a user namespace with the full
// id mapping and the network namespace of user-defined networks (native/netns.cc explains the
// design). Containers and storage helpers are started inside its user namespace, as Podman's are
// inside its pause process's: no setuid newuidmap/newgidmap per start. A container keeps a
// connection open for its life; the holder exits a while after the last one closes, and the
// next start brings up a new one.
import { closeSync, mkdirSync, openSync, readSync, statSync } from "node:fs";
import path from "node:path";
import { encodePlan, helperPath, native, CLONE, type LaunchPlan } from "../native.js";
import { currentMapping, isRemapped, setGroupsAllowed, writeIdMaps, type IdMapping, type UsernsMode } from "../userns.js";
import { storePaths } from "../store/paths.js";
import { TsrunError } from "../errors.js";

export interface HolderConnection {
  /** Close-on-exec; closing it (or exiting) releases this container's hold. */
  fd: number;
  pid: number;
}

/** The holder's socket: one holder per user, in tsrun's private run directory. */
export function holderSocket(runRoot: string): string {
  return path.join(runRoot, "netns-1.sock");
}

function ensureRunRoot(runRoot: string): void {
  mkdirSync(runRoot, { recursive: true, mode: 0o700 });
  const st = statSync(runRoot);
  const uid = process.getuid?.() ?? 0;
  // Another user's directory (a predictable /tmp name) would let them stand in for the holder.
  if (st.uid !== uid || (st.mode & 0o022) !== 0) throw new TsrunError(`${runRoot} must belong to uid ${uid} and not be writable by others`);
}

function tryConnect(socket: string): HolderConnection | undefined {
  try {
    return native().netnsConnect(socket);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ECONNREFUSED" || code === "ECONNRESET") return undefined;
    throw new TsrunError(`the network holder (tsrun-netns): ${(err as Error).message}`);
  }
}

/** A start of the holder in progress in this process, which concurrent callers wait for. */
let starting: Promise<void> | undefined;

/** Connects to the holder, starting it when none runs. */
export async function connectHolder(runRoot: string): Promise<HolderConnection> {
  ensureRunRoot(runRoot);
  const socket = holderSocket(runRoot);
  const conn = tryConnect(socket);
  if (conn) return conn;
  // One start at a time in this process (a pull starts several helpers at once): the file lock
  // below blocks the whole thread, so a second caller taking it while the first awaits its
  // start would never let the first finish.
  starting ??= startUnderLock(socket).finally(() => {
    starting = undefined;
  });
  await starting;
  const fresh = tryConnect(socket);
  if (!fresh) throw new TsrunError("the network holder (tsrun-netns) started but does not answer");
  return fresh;
}

/**
 * Starts a holder unless one answers by now. Under the lock the holder takes before it leaves,
 * so a holder never greets a client and then exits, and two processes never both start one.
 */
async function startUnderLock(socket: string): Promise<void> {
  const lock = openSync(`${socket}.lock`, "a", 0o600);
  try {
    native().flock(lock, true, true);
    const again = tryConnect(socket);
    if (again) {
      closeHolder(again);
      return;
    }
    await startHolder(socket);
  } finally {
    closeSync(lock);
  }
}

/** Connects only if a holder runs already (network rm: nothing to clean up otherwise). */
export function connectRunningHolder(runRoot: string): HolderConnection | undefined {
  return tryConnect(holderSocket(runRoot));
}

/** Sends one request; a refusal becomes a one-line error. */
export function holderRequest(conn: HolderConnection, line: string): void {
  const reply = native().netnsRequest(conn.fd, line);
  if (!reply.startsWith("ok")) throw new TsrunError(`connecting the network failed: ${reply.replace(/^err /, "")}`);
}

export function closeHolder(conn: HolderConnection | undefined): void {
  if (!conn) return;
  try {
    closeSync(conn.fd);
  } catch {
    // closed already
  }
}

/**
 * Whether new namespaces are made inside the holder's user namespace: for a rootless user with
 * subordinate ids and the default mapping. Root and a single mapped id write their maps without
 * setuid helpers anyway; keep-id and nomap need maps of their own.
 */
export function joinsHolder(mode?: UsernsMode, m: IdMapping = currentMapping()): boolean {
  return m.uid !== 0 && m.subUids !== null && m.subGids !== null && !isRemapped(mode, m);
}

/**
 * A new network namespace owned by the holder's user namespace, as an fd (close-on-exec), for a
 * container whose network helper starts before the container does; undefined from a holder
 * started by an older tsrun, which does not make them (the container then makes its own).
 */
export function holderNetworkNamespace(conn: HolderConnection): number | undefined {
  try {
    return native().netnsNewNetwork(conn.fd);
  } catch (err) {
    const message = (err as Error).message;
    if (message.startsWith("unknown request")) return undefined;
    throw new TsrunError(`the network holder (tsrun-netns) could not make a network namespace: ${message}`);
  }
}

/** The holder's user namespace, as a launch plan's `nest`. */
export function holderUserNamespace(conn: HolderConnection): { userns: string } {
  return { userns: `/proc/${conn.pid}/ns/user` };
}

/**
 * A connection to the holder for a launch that joins its user namespace, or undefined when it
 * does not apply (joinsHolder). The caller closes it once the launched process runs (a helper)
 * or has exited (a container, whose restarts must find the same holder).
 */
export async function holderForLaunch(mode?: UsernsMode, runRoot: string = storePaths().runRoot): Promise<HolderConnection | undefined> {
  return joinsHolder(mode) ? connectHolder(runRoot) : undefined;
}

/** Starts tsrun-netns in a new user namespace (full mapping) and network namespace. */
async function startHolder(socket: string): Promise<void> {
  const addon = native();
  const mapping = currentMapping();
  const [readyRead, readyWrite] = addon.pipe();
  const devNull = openSync("/dev/null", "r+");
  const plan: LaunchPlan = {
    cloneFlags: CLONE.NEWUSER | CLONE.NEWNET,
    mounts: [],
    maskedPaths: [],
    readOnlyPaths: [],
    argv: [helperPath("tsrun-netns"), socket],
    env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    searchPath: "/usr/sbin:/usr/bin:/sbin:/bin",
    setGroupsAllowed: setGroupsAllowed(mapping),
    // Its complaint, if it cannot listen, arrives with the ready line.
    stdio: [devNull, readyWrite, readyWrite],
    stdinNull: false,
    noNewPrivileges: false,
    loopbackUp: true,
    dieWithParent: false,
  };
  let handle;
  try {
    handle = addon.spawn(encodePlan(plan));
  } finally {
    closeSync(readyWrite);
    closeSync(devNull);
  }
  try {
    try {
      await writeIdMaps(handle.pid, mapping);
    } catch (err) {
      closeSync(handle.syncFd);
      closeSync(handle.errorFd);
      throw new TsrunError(`starting the network holder: ${(err as Error).message}`);
    }
    const resumed = addon.resume(handle.syncFd, handle.errorFd, handle.socketFd, false);
    // It forks into the background at once; this is its short-lived parent.
    await addon.waitPid(handle.pid);
    if (resumed.error) throw new TsrunError(`starting the network holder: ${resumed.error.step}${resumed.error.message ? `: ${resumed.error.message}` : ""}`);
    let reply = "";
    const buf = Buffer.alloc(256);
    for (let n = readSync(readyRead, buf); n > 0 && !reply.includes("\n"); n = readSync(readyRead, buf)) reply += buf.subarray(0, n).toString();
    if (!reply.startsWith("ready ")) throw new TsrunError(`the network holder (tsrun-netns) failed to start${reply.trim() ? `: ${reply.trim()}` : ""}`);
  } finally {
    closeSync(handle.pidfd);
    closeSync(readyRead);
  }
}
