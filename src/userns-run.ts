// Helper commands (rm, tar, sh, the storage worker) run as root over all the user's
// subordinate ids, as `podman unshare` does: in the network holder's user namespace, a new one,
// or a running container's.
import { closeSync } from "node:fs";
import { lazyNet } from "./builtin.js";
import { CLONE, encodePlan, native, type LaunchPlan } from "./native.js";
import { currentMapping, writeIdMaps, type UsernsMode } from "./userns.js";
import { closeHolder, holderForLaunch, holderUserNamespace } from "./network/holder.js";

export interface HelperResult {
  code: number;
  stderr: string;
}

/**
 * Runs argv inside a user namespace with the full id mapping, where the caller is root over all
 * its subordinate ids, in a mount namespace of its own: for storage work on files owned by many
 * uids. The namespace is the holder's when it applies (no setuid helper per run), else a new one.
 */
export function runInUserNamespace(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  opts: { joinUserNamespace?: string; stdin?: number; stdout?: number; userns?: UsernsMode } = {},
): Promise<HelperResult> {
  // Callers close their copies of the stdio fds as soon as this returns (so that a helper that
  // dies makes the other end fail instead of hang): keep our own until the helper has them, as
  // connecting to (or starting) the holder may wait first.
  const addon = native();
  const stdin = opts.stdin === undefined ? -1 : addon.dup(opts.stdin);
  let stdout = -1;
  try {
    stdout = opts.stdout === undefined ? -1 : addon.dup(opts.stdout);
  } catch (err) {
    if (stdin >= 0) closeSync(stdin);
    throw err;
  }
  let closed = false;
  const closeOurs = (): void => {
    if (closed) return;
    closed = true;
    for (const fd of [stdin, stdout]) if (fd >= 0) closeSync(fd);
  };
  return runWithStdio(argv, env, opts, stdin, stdout, closeOurs).finally(closeOurs);
}

async function runWithStdio(
  argv: string[],
  env: NodeJS.ProcessEnv,
  opts: { joinUserNamespace?: string; userns?: UsernsMode },
  stdin: number,
  stdout: number,
  /** Closes stdin and stdout once the helper has its own copies. */
  spawned: () => void,
): Promise<HelperResult> {
  const addon = native();
  const join = opts.joinUserNamespace;
  // Held until the helper runs: the holder cannot leave while we clone into its namespace.
  const holder = join ? undefined : await holderForLaunch(opts.userns);
  const [errRead, errWrite] = addon.pipe();
  const plan: LaunchPlan = {
    // A mount namespace in the holder's user namespace, or in a new one with the full mapping,
    // or an existing container's user namespace (joined: root there, in the host's mounts).
    cloneFlags: join ? 0 : holder ? CLONE.NEWNS : CLONE.NEWUSER | CLONE.NEWNS,
    mounts: [],
    maskedPaths: [],
    readOnlyPaths: [],
    argv,
    env: Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`])),
    searchPath: env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    setGroupsAllowed: true,
    stdio: [stdin, stdout, errWrite],
    stdinNull: false,
    noNewPrivileges: false,
    dieWithParent: true,
  };
  if (join) plan.joinNamespaces = [join];
  if (holder) plan.nest = holderUserNamespace(holder);
  let handle;
  try {
    handle = addon.spawn(encodePlan(plan));
  } finally {
    closeSync(errWrite);
    closeHolder(holder);
    spawned();
  }
  const stderrChunks: Buffer[] = [];
  // A socket, not an fs stream: fs reads of a pipe each hold a libuv pool thread until data
  // comes, and with waitPid that made every running helper hold two of the four (a pull with
  // several unpackers then had none left for its own fsync).
  const stream = new (lazyNet().Socket)({ fd: errRead, readable: true, writable: false });
  const ended = new Promise<void>((resolve) => {
    stream.on("data", (d) => stderrChunks.push(typeof d === "string" ? Buffer.from(d) : d));
    stream.on("close", () => resolve());
    stream.on("error", () => resolve());
  });
  try {
    if (!join && !holder) await writeIdMaps(handle.pid, currentMapping(), opts.userns);
  } catch (err) {
    closeSync(handle.syncFd);
    closeSync(handle.errorFd);
    closeSync(handle.pidfd);
    await addon.waitPid(handle.pid);
    throw err;
  }
  const resumed = addon.resume(handle.syncFd, handle.errorFd, handle.socketFd, false);
  if (join) await addon.waitPid(handle.pid); // the joiner; the command is resumed.pid
  // resume() learns a pid only from a joiner, which forks the command; otherwise the command
  // is the child spawned here and resumed.pid is -1, and waitpid(-1) would reap whichever child
  // exits first: a concurrent helper's status (a failed unpack then read as a success).
  const commandPid = join ? resumed.pid : handle.pid;
  const status = resumed.error && join ? { code: 125, signal: 0 } : await addon.waitPid(commandPid);
  closeSync(handle.pidfd);
  await ended;
  if (resumed.error) {
    const e = resumed.error;
    throw new Error(`${argv[0]} in user namespace: ${e.step}${e.message ? `: ${e.message}` : ""}`);
  }
  return { code: status.signal ? 128 + status.signal : status.code, stderr: Buffer.concat(stderrChunks).toString() };
}

