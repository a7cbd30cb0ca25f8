// Seccomp profiles in Docker's format: parsing and checking a profile file, and resolving it for
// this machine (architecture, kernel, the container's capabilities) into the rules the addon
// compiles to BPF with libseccomp. Semantics follow moby (profile -> OCI) and runc (OCI ->
// libseccomp): unknown syscall names are skipped, a rule with the default action is dropped,
// several conditions on the same argument become separate rules.
import { homedir, release } from "node:os";
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { TsrunError } from "../../errors.js";
import { native } from "../../native.js";
import { removeFile } from "../../remove-file.js";
import { defaultSeccompProfile } from "./default-seccomp.js";

export interface SeccompArg {
  index: number;
  value: number | string;
  valueTwo?: number | string;
  op: string;
}

export interface SeccompCondition {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

export interface SeccompSyscall {
  name?: string;
  names?: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[] | null;
  comment?: string;
  includes?: SeccompCondition;
  excludes?: SeccompCondition;
}

export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures: string[] | null }[];
  flags?: string[];
  syscalls?: SeccompSyscall[];
}

/** What the addon compiles: kernel action values, libseccomp architecture names. */
export interface ResolvedFilter {
  defaultAction: number;
  arches: string[];
  flags: number;
  rules: { name: string; action: number; args: [number, number, string, string][] }[];
}

const EPERM = 1;

// SECCOMP_RET_* (include/uapi/linux/seccomp.h); the errno or trace message goes in the low bits.
const ACTIONS: Record<string, (data: number | undefined) => number> = {
  SCMP_ACT_KILL: () => 0x00000000,
  SCMP_ACT_KILL_THREAD: () => 0x00000000,
  SCMP_ACT_KILL_PROCESS: () => 0x80000000,
  SCMP_ACT_TRAP: () => 0x00030000,
  SCMP_ACT_ERRNO: (errno) => (0x00050000 | ((errno ?? EPERM) & 0xffff)) >>> 0,
  SCMP_ACT_TRACE: (msg) => (0x7ff00000 | ((msg ?? EPERM) & 0xffff)) >>> 0,
  SCMP_ACT_LOG: () => 0x7ffc0000,
  SCMP_ACT_ALLOW: () => 0x7fff0000,
};

// libseccomp's enum scmp_compare.
const OPS: Record<string, number> = {
  SCMP_CMP_NE: 1,
  SCMP_CMP_LT: 2,
  SCMP_CMP_LE: 3,
  SCMP_CMP_EQ: 4,
  SCMP_CMP_GE: 5,
  SCMP_CMP_GT: 6,
  SCMP_CMP_MASKED_EQ: 7,
};

// seccomp(2) filter flags runc accepts.
const FLAGS: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC: 1,
  SECCOMP_FILTER_FLAG_LOG: 2,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: 4,
};

function fail(source: string, what: string): never {
  throw new TsrunError(`invalid seccomp profile ${source}: ${what}`);
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === "string");
}

function checkAction(source: string, action: unknown, where: string): string {
  if (typeof action !== "string") fail(source, `${where}: action must be a string`);
  if (action === "SCMP_ACT_NOTIFY") fail(source, `${where}: SCMP_ACT_NOTIFY needs a seccomp agent, which tsrun does not support`);
  if (!(action in ACTIONS)) fail(source, `${where}: unknown action "${action}"`);
  return action;
}

function checkErrno(source: string, v: unknown, where: string): void {
  if (v !== undefined && v !== null && (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffff)) fail(source, `${where}: errnoRet must be an integer from 0 to 65535`);
}

function checkCondition(source: string, c: unknown, where: string): void {
  if (c === undefined || c === null) return;
  if (typeof c !== "object" || Array.isArray(c)) fail(source, `${where} must be an object`);
  const o = c as Record<string, unknown>;
  for (const key of ["caps", "arches"]) {
    if (o[key] !== undefined && o[key] !== null && !isStringList(o[key])) fail(source, `${where}.${key} must be a list of strings`);
  }
  if (o.minKernel !== undefined && o.minKernel !== null && (typeof o.minKernel !== "string" || !/^\d+\.\d+(\.\d+)?$/.test(o.minKernel)))
    fail(source, `${where}.minKernel must look like "4.8"`);
}

function checkValue(source: string, v: unknown, where: string): void {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return;
  if (typeof v === "string" && /^\d+$/.test(v) && BigInt(v) < 1n << 64n) return;
  fail(source, `${where} must be an unsigned 64-bit integer`);
}

/**
 * JSON.parse for profiles: argument values above 2^53 (common as masks) would be rounded, so
 * such literals are read as strings. Inside a JSON string every quote is escaped, so the pattern
 * only matches real "value" and "valueTwo" keys.
 */
export function parseProfileJson(text: string): unknown {
  return JSON.parse(text.replace(/("value(?:Two)?"\s*:\s*)(\d{16,})/g, '$1"$2"'));
}

/** Parses and checks a profile in Docker's JSON format; errors name the file and the problem. */
export function parseSeccompProfile(text: string, source: string): SeccompProfile {
  let raw: unknown;
  try {
    raw = parseProfileJson(text);
  } catch (err) {
    fail(source, (err as Error).message);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(source, "not a JSON object");
  const p = raw as Record<string, unknown>;
  checkAction(source, p.defaultAction, "defaultAction");
  checkErrno(source, p.defaultErrnoRet, "defaultErrnoRet");
  if (p.architectures !== undefined && p.architectures !== null && !isStringList(p.architectures)) fail(source, "architectures must be a list of strings");
  if (isStringList(p.architectures) && p.architectures.length > 0 && Array.isArray(p.archMap) && p.archMap.length > 0)
    fail(source, "both architectures and archMap are given; use one");
  if (p.archMap !== undefined && p.archMap !== null) {
    if (!Array.isArray(p.archMap)) fail(source, "archMap must be a list");
    for (const [i, m] of p.archMap.entries()) {
      const e = m as Record<string, unknown>;
      if (typeof m !== "object" || m === null || typeof e.architecture !== "string") fail(source, `archMap[${i}].architecture must be a string`);
      if (e.subArchitectures !== undefined && e.subArchitectures !== null && !isStringList(e.subArchitectures)) fail(source, `archMap[${i}].subArchitectures must be a list of strings`);
    }
  }
  const arches = [
    ...(isStringList(p.architectures) ? p.architectures : []),
    ...(Array.isArray(p.archMap) ? (p.archMap as { architecture: string; subArchitectures?: string[] | null }[]).flatMap((m) => [m.architecture, ...(m.subArchitectures ?? [])]) : []),
  ];
  for (const a of arches) if (!/^SCMP_ARCH_[A-Z0-9_]+$/.test(a)) fail(source, `unknown architecture "${a}"`);
  if (p.flags !== undefined && p.flags !== null) {
    if (!isStringList(p.flags)) fail(source, "flags must be a list of strings");
    for (const f of p.flags) if (!(f in FLAGS)) fail(source, `unsupported flag "${f}"`);
  }
  if (p.syscalls !== undefined && p.syscalls !== null) {
    if (!Array.isArray(p.syscalls)) fail(source, "syscalls must be a list");
    for (const [i, s] of p.syscalls.entries()) {
      const where = `syscalls[${i}]`;
      if (typeof s !== "object" || s === null || Array.isArray(s)) fail(source, `${where} must be an object`);
      const r = s as Record<string, unknown>;
      if (r.name && Array.isArray(r.names) && r.names.length > 0) fail(source, `${where}: both name and names are given; use one`);
      if (r.name !== undefined && typeof r.name !== "string") fail(source, `${where}.name must be a string`);
      if (r.names !== undefined && r.names !== null && !isStringList(r.names)) fail(source, `${where}.names must be a list of strings`);
      if (!r.name && !(Array.isArray(r.names) && r.names.length > 0)) fail(source, `${where}: no syscall names`);
      checkAction(source, r.action, where);
      checkErrno(source, r.errnoRet, where);
      checkCondition(source, r.includes, `${where}.includes`);
      checkCondition(source, r.excludes, `${where}.excludes`);
      if (r.args !== undefined && r.args !== null) {
        if (!Array.isArray(r.args)) fail(source, `${where}.args must be a list`);
        if (r.args.length > 6) fail(source, `${where}.args: a syscall has at most 6 arguments`);
        for (const [j, a] of r.args.entries()) {
          const aw = `${where}.args[${j}]`;
          const arg = a as Record<string, unknown>;
          if (typeof a !== "object" || a === null) fail(source, `${aw} must be an object`);
          if (typeof arg.index !== "number" || !Number.isInteger(arg.index) || arg.index < 0 || arg.index > 5) fail(source, `${aw}.index must be 0 to 5`);
          if (typeof arg.op !== "string" || !(arg.op in OPS)) fail(source, `${aw}: unknown op "${String(arg.op)}"`);
          checkValue(source, arg.value ?? 0, `${aw}.value`);
          checkValue(source, arg.valueTwo ?? 0, `${aw}.valueTwo`);
        }
      }
    }
  }
  return p as unknown as SeccompProfile;
}

/** Go's GOARCH for this machine, the names moby matches "arches" against. */
export function goArch(arch: string = process.arch): string {
  const map: Record<string, string> = { x64: "amd64", ia32: "386", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64", mips64el: "mips64le", loong64: "loong64" };
  return map[arch] ?? arch;
}

const NATIVE_SECCOMP_ARCH: Record<string, string> = {
  amd64: "SCMP_ARCH_X86_64",
  "386": "SCMP_ARCH_X86",
  arm64: "SCMP_ARCH_AARCH64",
  arm: "SCMP_ARCH_ARM",
  ppc64le: "SCMP_ARCH_PPC64LE",
  s390x: "SCMP_ARCH_S390X",
  riscv64: "SCMP_ARCH_RISCV64",
  mips64le: "SCMP_ARCH_MIPSEL64",
};

function kernelAtLeast(kernel: string, min: string): boolean {
  const k = kernel.split(/[^0-9]+/).map(Number);
  const m = min.split(".").map(Number);
  for (let i = 0; i < m.length; i++) {
    const a = k[i] ?? 0;
    const b = m[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

export interface ResolveContext {
  /** The container's capabilities (its bounding set), CAP_ names. */
  caps: string[];
  /** GOARCH-style name; default this machine's. */
  arch?: string;
  /** Kernel release; default this machine's. */
  kernel?: string;
}

/** A profile resolved for this machine and these capabilities, ready for the addon. */
export function resolveSeccomp(profile: SeccompProfile, ctx: ResolveContext): ResolvedFilter {
  const arch = ctx.arch ?? goArch();
  const kernel = ctx.kernel ?? release();
  const defaultAction = ACTIONS[profile.defaultAction]!(profile.defaultErrnoRet);
  const seccompArches = [...(profile.architectures ?? [])];
  const native = NATIVE_SECCOMP_ARCH[arch];
  for (const m of profile.archMap ?? []) {
    if (m.architecture === native) seccompArches.push(m.architecture, ...(m.subArchitectures ?? []));
  }
  const applies = (c: SeccompCondition | undefined, include: boolean): boolean => {
    if (!c) return true;
    // moby: an "includes" needs every listed capability and the architecture; an "excludes"
    // drops the rule when any listed capability is present or the architecture matches.
    if (include) {
      if (c.arches && c.arches.length > 0 && !c.arches.includes(arch)) return false;
      if (c.caps && c.caps.length > 0 && !c.caps.every((cap) => ctx.caps.includes(cap))) return false;
      if (c.minKernel && !kernelAtLeast(kernel, c.minKernel)) return false;
      return true;
    }
    if (c.arches && c.arches.length > 0 && c.arches.includes(arch)) return false;
    if (c.caps && c.caps.length > 0 && c.caps.some((cap) => ctx.caps.includes(cap))) return false;
    if (c.minKernel && kernelAtLeast(kernel, c.minKernel)) return false;
    return true;
  };
  const rules: ResolvedFilter["rules"] = [];
  for (const s of profile.syscalls ?? []) {
    if (!applies(s.includes, true) || !applies(s.excludes, false)) continue;
    const action = ACTIONS[s.action]!(s.errnoRet ?? undefined);
    if (action === defaultAction) continue;
    const names = s.name ? [s.name] : (s.names ?? []);
    const args = (s.args ?? []).map((a): [number, number, string, string] => [a.index, OPS[a.op]!, String(a.value ?? 0), String(a.valueTwo ?? 0)]);
    // libseccomp cannot AND two comparisons of one argument: runc adds them as separate rules.
    const indexes = args.map((a) => a[0]);
    const sameArgTwice = new Set(indexes).size !== indexes.length;
    for (const name of names) {
      if (sameArgTwice) for (const a of args) rules.push({ name, action, args: [a] });
      else rules.push({ name, action, args });
    }
  }
  return {
    defaultAction,
    arches: [...new Set(seccompArches)].map((a) => a.replace(/^SCMP_ARCH_/, "").toLowerCase()),
    flags: (profile.flags ?? []).reduce((f, name) => f | (FLAGS[name] ?? 0), 0),
    rules,
  };
}

const compiled = new Map<string, { program: Buffer; flags: number }>();

function cacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache"), "tsrun");
}

/** How many compiled programs the cache keeps: one per profile and capability set in use. */
const SECCOMP_CACHE_KEEP = 32;

/**
 * Keeps the newest `keep` cached programs in dir (by the time each was written) and removes
 * the others: every distinct --security-opt seccomp= profile or --cap-add set adds a file, and
 * the cache must not grow without end. A program removed while still in use is compiled again
 * (15-35 ms) and written anew.
 */
export function pruneSeccompCache(dir: string, keep: number): void {
  const files = readdirSync(dir).filter((n) => /^seccomp-[0-9a-f]{16}\.bpf$/.test(n));
  if (files.length <= keep) return;
  const byAge = files
    .map((name) => {
      try {
        return { name, written: statSync(path.join(dir, name)).mtimeMs };
      } catch {
        return undefined; // removed meanwhile by another tsrun
      }
    })
    .filter((f): f is { name: string; written: number } => f !== undefined)
    .sort((a, b) => b.written - a.written);
  for (const f of byAge.slice(keep)) removeFile(path.join(dir, f.name));
}

/** Compiles a resolved filter with libseccomp (the addon), without any caching. */
export function compileFilter(filter: ResolvedFilter): Buffer {
  try {
    return native().compileSeccomp(filter).program;
  } catch (err) {
    throw new TsrunError(`cannot compile the seccomp profile: ${(err as Error).message}`);
  }
}

/**
 * FNV-1a (32 bits, from a given basis: two bases make a 64-bit name) over 32-bit words, not
 * bytes: it runs once per process, before the JIT has warmed up, where every loop turn costs
 * (byte by byte, the profile's 9 kB key took ~5 ms). The tail is zero-padded.
 */
function fnv1a(data: string | Uint8Array, basis: number): number {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  // An aligned copy: Int32Array needs an offset that is a multiple of 4.
  const copy = new Uint8Array((bytes.length + 3) & ~3);
  copy.set(bytes);
  const words = new Int32Array(copy.buffer);
  let h = basis | 0;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ (words[i] as number), 0x01000193);
  return Math.imul(h ^ bytes.length, 0x01000193) >>> 0;
}

const hex8 = (n: number): string => n.toString(16).padStart(8, "0");

/** A cached program's file: "tsrun-seccomp 2 LENGTH CHECKSUM KEYLENGTH\n", the key, the program. */
export function encodeCachedProgram(key: string, program: Buffer): Buffer {
  const header = `tsrun-seccomp 3 ${program.length} ${hex8(fnv1a(program, 0x811c9dc5))} ${Buffer.byteLength(key)}\n`;
  return Buffer.concat([Buffer.from(header + key), program]);
}

/** The program in a cache file's bytes, if they are whole and for exactly this key. */
export function decodeCachedProgram(bytes: Buffer, key: string): Buffer | undefined {
  const nl = bytes.indexOf(10);
  if (nl <= 0) return undefined;
  const keyLength = Number(bytes.subarray(0, nl).toString().split(" ")[4]);
  if (!Number.isInteger(keyLength)) return undefined;
  const program = bytes.subarray(nl + 1 + keyLength);
  if (program.length === 0 || program.length % 8 !== 0) return undefined;
  return encodeCachedProgram(key, program).equals(bytes) ? Buffer.from(program) : undefined;
}

/**
 * The BPF program of a profile for this machine and these capabilities. libseccomp takes 15-35
 * ms for Docker's profile on three architectures, as long as a whole container start, so
 * programs are cached on disk and in memory (exec and health checks reuse the container's). A
 * cached program skips resolving the profile too. The cache file is named by a 64-bit hash of
 * the key (the profile, the capabilities, the machine and the libseccomp version) and holds the
 * whole key, compared exactly, and a checksum of the program: no node:crypto on this path.
 */
export function seccompProgram(profile: SeccompProfile, ctx: ResolveContext): { program: Buffer; flags: number } {
  const full = { caps: [...ctx.caps].sort(), arch: ctx.arch ?? goArch(), kernel: ctx.kernel ?? release() };
  const key = `${native().seccompVersion()}\0${JSON.stringify([profile, full])}`;
  const memo = compiled.get(key);
  if (memo) return memo;
  const flags = (profile.flags ?? []).reduce((f, name) => f | (FLAGS[name] ?? 0), 0);
  // The file's name only has to tell keys apart most of the time (the file holds the whole key,
  // compared exactly): Docker's default profile is named by a word instead of its 9 kB.
  const nameKey = profile === defaultSeccompProfile() ? `${native().seccompVersion()}\0default\0${JSON.stringify(full)}` : key;
  const file = path.join(cacheDir(), `seccomp-${hex8(fnv1a(nameKey, 0x811c9dc5))}${hex8(fnv1a(nameKey, 0x050c5d1f))}.bpf`);
  let program: Buffer | undefined;
  try {
    program = decodeCachedProgram(readFileSync(file), key);
  } catch {
    // Not cached yet.
  }
  if (!program) {
    program = compileFilter(resolveSeccomp(profile, full));
    try {
      mkdirSync(cacheDir(), { recursive: true });
      const tmp = `${file}.${process.pid}`;
      writeFileSync(tmp, encodeCachedProgram(key, program));
      renameSync(tmp, file);
      pruneSeccompCache(cacheDir(), SECCOMP_CACHE_KEEP);
    } catch {
      // A read-only cache only costs time.
    }
  }
  const out = { program, flags };
  compiled.set(key, out);
  return out;
}
