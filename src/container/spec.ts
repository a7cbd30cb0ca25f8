// How a container's process is derived from its image and the run options, exactly as Docker
// documents it: ENTRYPOINT/CMD merging, environment, user specs.
import { readFileSync } from "node:fs";
import { TsrunError } from "../errors.js";
import type { ContainerConfig } from "../image/types.js";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface CommandOptions {
  /** --entrypoint: undefined when not given; "" clears the image's ENTRYPOINT. */
  entrypoint?: string | undefined;
  /** Arguments after the image name: they replace the image's CMD. */
  args: string[];
}

/**
 * Docker's table: exec-form ENTRYPOINT gets CMD (or the run arguments) appended; arguments
 * replace CMD; --entrypoint replaces ENTRYPOINT and drops the image's CMD. (A shell-form
 * ENTRYPOINT is stored as ["/bin/sh","-c","..."], so appended words never reach the command.)
 */
export function mergeCommand(image: ContainerConfig | undefined, opts: CommandOptions): string[] {
  let entrypoint: string[];
  let cmd: string[];
  if (opts.entrypoint !== undefined) {
    entrypoint = opts.entrypoint === "" ? [] : [opts.entrypoint];
    cmd = opts.args;
  } else {
    entrypoint = image?.Entrypoint ?? [];
    cmd = opts.args.length > 0 ? opts.args : (image?.Cmd ?? []);
  }
  const argv = [...entrypoint, ...cmd];
  if (argv.length === 0) throw new TsrunError("no command specified: the image has no ENTRYPOINT or CMD and none was given");
  return argv;
}

/** Splits "KEY=VALUE" into its parts; a bare "KEY" has value undefined. */
export function splitEnv(entry: string): [string, string | undefined] {
  const eq = entry.indexOf("=");
  return eq < 0 ? [entry, undefined] : [entry.slice(0, eq), entry.slice(eq + 1)];
}

/** Parses an --env-file: KEY=VALUE or KEY lines, '#' comments and blank lines skipped. */
export function parseEnvFile(text: string, file: string): string[] {
  const out: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/^\s+/, "");
    if (line === "" || line.startsWith("#")) return;
    const [key] = splitEnv(line);
    if (key === "" || /\s/.test(key)) throw new TsrunError(`${file}:${i + 1}: invalid environment variable "${raw}"`);
    out.push(line);
  });
  return out;
}

/** A file named by a flag (--env-file, --label-file), or a one-line error naming it. */
function readFlagFile(file: string, kind: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new TsrunError(`cannot read ${kind} file ${file}: ${(err as Error).message}`);
  }
}

/** The variables of --env-file files, in order (run, create and exec). */
export function readEnvFiles(files: readonly string[]): string[] {
  return files.flatMap((f) => parseEnvFile(readFlagFile(f, "env"), f));
}

/** --label-file: KEY=VALUE lines; blank lines and # comments skipped (as docker/cli reads them). */
export function readLabelFiles(files: readonly string[]): string[] {
  return files.flatMap((f) =>
    readFlagFile(f, "label")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#")),
  );
}

/**
 * The environment: the image's, then the run's (-e KEY takes KEY from the host and is dropped
 * when the host has none), with PATH defaulted and HOSTNAME/TERM/HOME as Docker sets them.
 */
export function mergeEnv(
  imageEnv: string[] | undefined,
  runEnv: string[],
  extra: { hostname: string; tty: boolean; home: string },
  hostEnv: NodeJS.ProcessEnv = process.env,
): string[] {
  const env = new Map<string, string>();
  env.set("PATH", DEFAULT_PATH);
  env.set("HOSTNAME", extra.hostname);
  if (extra.tty) env.set("TERM", "xterm");
  for (const e of imageEnv ?? []) {
    const [k, v] = splitEnv(e);
    if (v !== undefined) env.set(k, v);
  }
  for (const e of runEnv) {
    const [k, v] = splitEnv(e);
    if (k === "") throw new TsrunError(`invalid environment variable "${e}"`);
    if (v !== undefined) env.set(k, v);
    else if (hostEnv[k] !== undefined) env.set(k, hostEnv[k] as string);
  }
  if (!env.has("HOME")) env.set("HOME", extra.home);
  return [...env].map(([k, v]) => `${k}=${v}`);
}

export interface UserSpec {
  user: string;
  group?: string;
}

/** Parses -u/--user or USER: "name", "uid", "name:group", "uid:gid". */
export function parseUserSpec(spec: string): UserSpec {
  const parts = spec.split(":");
  if (parts.length > 2 || parts[0] === "" || (parts.length === 2 && parts[1] === ""))
    throw new TsrunError(`invalid user "${spec}": expected USER[:GROUP]`);
  const user = parts[0] as string;
  return parts.length === 2 ? { user, group: parts[1] as string } : { user };
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 4 || f[0] === "") continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    out.push({ name: f[0] as string, uid, gid, home: f[5] || "/" });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 3 || f[0] === "") continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    out.push({ name: f[0] as string, gid, members: (f[3] ?? "").split(",").map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

/**
 * For --userns keep-id: /etc/passwd and /etc/group with the caller's account added when the
 * image has no entry for its ids (as Podman adds one), so that name, HOME and `id` work inside.
 * Undefined for a file that needs no change.
 */
export function keepIdAccounts(
  passwdText: string,
  groupText: string,
  user: { uid: number; gid: number; name: string; home: string },
): { passwd?: string; group?: string } {
  const out: { passwd?: string; group?: string } = {};
  const users = parsePasswd(passwdText);
  const groups = parseGroup(groupText);
  const free = (name: string, taken: string[]): string => (taken.includes(name) ? `${name}-${user.uid}` : name);
  const withNewline = (t: string): string => (t === "" || t.endsWith("\n") ? t : `${t}\n`);
  if (!users.some((u) => u.uid === user.uid)) {
    const name = free(user.name, users.map((u) => u.name));
    out.passwd = `${withNewline(passwdText)}${name}:*:${user.uid}:${user.gid}:${name}:${user.home}:/bin/sh\n`;
  }
  if (!groups.some((g) => g.gid === user.gid)) {
    const name = free(user.name, groups.map((g) => g.name));
    out.group = `${withNewline(groupText)}${name}:x:${user.gid}:\n`;
  }
  return out;
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  groups: number[];
  home: string;
}

const isNumber = (s: string): boolean => /^\d+$/.test(s);

/**
 * Resolves a user spec through the image's /etc/passwd and /etc/group as runc does: names must
 * exist; numeric ids need not; without an explicit group the user's supplementary groups apply.
 */
export function resolveUser(spec: UserSpec, passwd: PasswdEntry[], groups: GroupEntry[], limits: { maxUid: number; maxGid: number }): ResolvedUser {
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (isNumber(spec.user)) {
    uid = Number(spec.user);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === spec.user);
    if (!entry) throw new TsrunError(`unable to find user ${spec.user}: no matching entries in passwd file`);
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  let supplementary: number[] = [];
  if (spec.group !== undefined) {
    if (isNumber(spec.group)) gid = Number(spec.group);
    else {
      const g = groups.find((x) => x.name === spec.group);
      if (!g) throw new TsrunError(`unable to find group ${spec.group}: no matching entries in group file`);
      gid = g.gid;
    }
  } else if (entry) {
    const name = entry.name;
    supplementary = groups.filter((g) => g.members.includes(name)).map((g) => g.gid);
  }
  if (uid > limits.maxUid)
    throw new TsrunError(`user ${spec.user}: uid ${uid} is not mapped in the user namespace (the highest mapped uid is ${limits.maxUid})`);
  if (gid > limits.maxGid)
    throw new TsrunError(`group of ${spec.user}: gid ${gid} is not mapped in the user namespace (the highest mapped gid is ${limits.maxGid})`);
  const all = [gid, ...supplementary.filter((g) => g !== gid && g <= limits.maxGid)];
  return { uid, gid, groups: [...new Set(all)], home: entry?.home ?? "/" };
}
