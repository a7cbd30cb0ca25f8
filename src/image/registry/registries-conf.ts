// Per-registry settings where Podman users keep them: containers-registries.conf(5). tsrun reads
// the [[registry]] tables of the v2 format (location, prefix, insecure, blocked, and
// [[registry.mirror]] with location, insecure, pull-from-mirror), the v1 format's
// [registries.search], [registries.insecure] and [registries.block] lists, and the short-name
// settings (unqualified-search-registries, short-name-mode, [aliases]: short-names.ts applies them).
//
// Files, as containers/image reads them: $CONTAINERS_REGISTRIES_CONF alone when set; else
// $XDG_CONFIG_HOME/containers/registries.conf when it exists, else
// /etc/containers/registries.conf; then the *.conf drop-ins of /etc/containers/registries.conf.d
// and $XDG_CONFIG_HOME/containers/registries.conf.d in name order, a later [[registry]] of the
// same prefix replacing an earlier one, a later file's unqualified-search-registries or
// short-name-mode replacing an earlier one's, a later alias of a name replacing (or, empty,
// erasing) an earlier one. Last, the aliases Podman (and tsrun) record after a prompt, in
// $XDG_CACHE_HOME/containers/short-name-aliases.conf, which win over every file.
//
// TOML by smol-toml: the format is full TOML (inline tables, arrays of tables, multi-line
// strings) and these files are written by hand and by distributions.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { TsrunError } from "../../errors.js";
import { hasRegistry, parseReference, ReferenceError, type Reference } from "../reference.js";

export interface RegistryEndpoint {
  /** "host[:port][/path]": where the matched prefix is rewritten to. */
  location: string;
  insecure: boolean;
}

export interface MirrorEndpoint extends RegistryEndpoint {
  /** Which pulls use the mirror: "all", "digest-only" (by digest) or "tag-only" (by tag). */
  pullFromMirror: "all" | "digest-only" | "tag-only";
}

export interface RegistryEntry extends RegistryEndpoint {
  /** What image names it applies to: "host[:port][/path]", or "*.domain" for every subdomain. */
  prefix: string;
  blocked: boolean;
  mirrors: MirrorEndpoint[];
  /** The file that defined it (for messages). */
  file: string;
}

/** One place to pull an image from: a registry host and the repository path there. */
export interface PullSource {
  domain: string;
  path: string;
  /** Whether TLS verification is off (and plain http allowed) for it. */
  insecure: boolean;
  mirror: boolean;
}

/** containers/image's short-name modes (short-names.ts says what each does). */
export type ShortNameMode = "enforcing" | "permissive" | "disabled";

/** A setting with the file that set it (for messages such as Podman's "Resolved ... (file)"). */
export interface FromFile<T> {
  value: T;
  file: string;
}

/** The short-name settings of all the files, merged. */
export interface ShortNameSettings {
  /** unqualified-search-registries (or v1 [registries.search]); undefined when no file sets it. */
  searchRegistries?: FromFile<string[]>;
  mode?: FromFile<ShortNameMode>;
  /** Short name ("name" or "ns/name") -> fully-qualified repository (no tag or digest). */
  aliases: Map<string, FromFile<string>>;
}

export interface RegistriesConf {
  entries: RegistryEntry[];
  shortNames: ShortNameSettings;
}

/** What one file says. */
interface ConfFile {
  entries: RegistryEntry[];
  searchRegistries?: string[];
  mode?: ShortNameMode;
  /** An empty value erases an alias an earlier file set. */
  aliases: Map<string, string>;
}

function configHome(env: NodeJS.ProcessEnv): string {
  return env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
}

/** Where Podman records the aliases a user picked at its prompt (rootless: the user's cache). */
export function aliasCacheFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "containers", "short-name-aliases.conf");
}

/** The files read, in order. */
export function registriesConfFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.CONTAINERS_REGISTRIES_CONF) return [env.CONTAINERS_REGISTRIES_CONF];
  const user = path.join(configHome(env), "containers", "registries.conf");
  const files = [existsSync(user) ? user : "/etc/containers/registries.conf"];
  const dropIns: { name: string; file: string }[] = [];
  for (const dir of ["/etc/containers/registries.conf.d", path.join(configHome(env), "containers", "registries.conf.d")]) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) if (name.endsWith(".conf")) dropIns.push({ name, file: path.join(dir, name) });
  }
  // Name order across both directories; a user's file of the same name comes after the system's.
  dropIns.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return [...files, ...dropIns.map((d) => d.file)];
}

type Table = Record<string, unknown>;

const isTable = (value: unknown): value is Table => typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);

function stringField(table: Table, key: string, where: string): string | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new TsrunError(`${where}: "${key}" must be a string`);
  return value;
}

function boolField(table: Table, key: string, where: string): boolean {
  const value = table[key];
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw new TsrunError(`${where}: "${key}" must be true or false`);
  return value;
}

/** "host[:port][/path]" with no scheme, no tag or digest: what location and prefix may hold. */
function checkLocation(value: string, key: string, where: string, wildcard = false): string {
  const text = value.replace(/\/+$/, "");
  if (wildcard && /^\*\.[a-z0-9.-]+$/i.test(text)) return text;
  if (!/^(?:[a-z0-9.-]+|\[[0-9a-f:]+\])(?::\d+)?(?:\/[a-z0-9._/-]+)?$/i.test(text)) {
    throw new TsrunError(`${where}: invalid ${key} "${value}" (expected host[:port][/path], without a scheme)`);
  }
  return text;
}

/** The registries of one file's text (name for messages). */
export function parseRegistriesConf(text: string, file: string): RegistryEntry[] {
  return parseConfFile(text, file, false).entries;
}

function hasTagOrDigest(name: string): boolean {
  return name.includes("@") || name.lastIndexOf(":") > name.lastIndexOf("/");
}

/** A short name as an alias names it: a repository without a registry, tag or digest. */
function checkAliasName(name: string, where: string): string {
  try {
    parseReference(name);
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(`${where}: invalid short name "${name}": ${err.message}`);
    throw err;
  }
  if (hasTagOrDigest(name)) throw new TsrunError(`${where}: invalid short name "${name}": an alias names no tag or digest`);
  if (hasRegistry(name)) throw new TsrunError(`${where}: invalid short name "${name}": it names a registry`);
  return name;
}

/** An alias's value: a fully-qualified repository, normalised as Docker does (docker.io/alpine -> docker.io/library/alpine). */
function checkAliasValue(name: string, value: string, where: string): string {
  if (value === "") return value;
  let ref: Reference;
  try {
    ref = parseReference(value);
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(`${where}: alias "${name}": invalid value "${value}": ${err.message}`);
    throw err;
  }
  if (!hasRegistry(value)) throw new TsrunError(`${where}: alias "${name}": "${value}" is not fully qualified (it must name its registry)`);
  if (hasTagOrDigest(value)) throw new TsrunError(`${where}: alias "${name}": "${value}" must not name a tag or digest`);
  return `${ref.domain}/${ref.path}`;
}

function stringList(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.some((r) => typeof r !== "string")) throw new TsrunError(`${what} must be a list of strings`);
  return value as string[];
}

/**
 * One file's settings. Without shortNames, a file with no line that starts a registry table or
 * key is not parsed: most files hold only comments or aliases (Debian's registries.conf,
 * shortnames.conf), and parsing them would cost every pull of a qualified name some
 * milliseconds. (A quoted "registry" key is not looked for: shortnames.conf has an alias of
 * that name.)
 */
function parseConfFile(text: string, file: string, shortNames: boolean): ConfFile {
  const result: ConfFile = { entries: [], aliases: new Map() };
  const registryLine = /^[ \t]*(?:\[\[?[ \t]*)?registr(?:y|ies)\b/m;
  const shortNameLine = /^[ \t]*(?:\[[ \t]*aliases\b|unqualified-search-registries\b|short-name-mode\b)/m;
  if (!registryLine.test(text) && !(shortNames && shortNameLine.test(text))) return result;
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (err) {
    const first = (err as Error).message.split("\n")[0] ?? "";
    throw new TsrunError(`${file}: invalid TOML: ${first}`);
  }
  const entries = result.entries;
  const usr = doc["unqualified-search-registries"];
  if (usr !== undefined) {
    result.searchRegistries = stringList(usr, `${file}: unqualified-search-registries`).map((r) => checkLocation(r, "unqualified-search-registries entry", file));
  }
  const mode = doc["short-name-mode"];
  if (mode !== undefined && mode !== "") {
    if (mode !== "enforcing" && mode !== "permissive" && mode !== "disabled") {
      throw new TsrunError(`${file}: short-name-mode must be "enforcing", "permissive" or "disabled", not ${JSON.stringify(mode)}`);
    }
    result.mode = mode;
  }
  const aliases = doc.aliases;
  if (aliases !== undefined) {
    if (!isTable(aliases)) throw new TsrunError(`${file}: [aliases] must be a table`);
    for (const [name, value] of Object.entries(aliases)) {
      if (typeof value !== "string") throw new TsrunError(`${file}: [aliases] "${name}" must be a string`);
      result.aliases.set(checkAliasName(name, `${file}: [aliases]`), checkAliasValue(name, value, `${file}: [aliases]`));
    }
  }
  const v1 = doc.registries;
  if (v1 !== undefined) {
    // v1: [registries.search|insecure|block] registries = [...].
    if (!isTable(v1)) throw new TsrunError(`${file}: "registries" must be a table`);
    if (doc.registry !== undefined || usr !== undefined) throw new TsrunError(`${file}: mixes the v1 [registries.*] tables with v2 settings`);
    if (v1.search !== undefined) {
      const list = stringList(isTable(v1.search) ? v1.search.registries : undefined, `${file}: [registries.search] registries`);
      result.searchRegistries = list.map((r) => checkLocation(r, "registry", `${file}: [registries.search]`));
    }
    for (const [kind, flag] of [["insecure", "insecure"], ["block", "blocked"]] as const) {
      const table = v1[kind];
      if (table === undefined) continue;
      const list = stringList(isTable(table) ? table.registries : undefined, `${file}: [registries.${kind}] registries`);
      for (const host of list) {
        const location = checkLocation(host, "registry", `${file}: [registries.${kind}]`);
        const existing = entries.find((e) => e.prefix === location);
        const entry = existing ?? { prefix: location, location, insecure: false, blocked: false, mirrors: [], file };
        entry[flag] = true;
        if (!existing) entries.push(entry);
      }
    }
    return result;
  }
  const registries = doc.registry;
  if (registries === undefined) return result;
  if (!Array.isArray(registries)) throw new TsrunError(`${file}: "registry" must be an array of tables ([[registry]])`);
  for (const [i, raw] of registries.entries()) {
    const where = `${file}: [[registry]] #${i + 1}`;
    if (!isTable(raw)) throw new TsrunError(`${where}: not a table`);
    const locationText = stringField(raw, "location", where);
    const prefixText = stringField(raw, "prefix", where);
    if (!locationText && !prefixText) throw new TsrunError(`${where}: needs a location or a prefix`);
    const checkedLocation = locationText ? checkLocation(locationText, "location", where) : undefined;
    const prefix = prefixText ? checkLocation(prefixText, "prefix", where, true) : (checkedLocation as string);
    if (prefix.startsWith("*.") && checkedLocation) throw new TsrunError(`${where}: a wildcard prefix "${prefix}" cannot have a location`);
    const location = checkedLocation ?? prefix;
    const mirrorsRaw = raw.mirror ?? [];
    if (!Array.isArray(mirrorsRaw)) throw new TsrunError(`${where}: "mirror" must be an array of tables ([[registry.mirror]])`);
    const mirrors = mirrorsRaw.map((m, j): MirrorEndpoint => {
      const mwhere = `${where} mirror #${j + 1}`;
      if (!isTable(m)) throw new TsrunError(`${mwhere}: not a table`);
      const mlocation = stringField(m, "location", mwhere);
      if (!mlocation) throw new TsrunError(`${mwhere}: needs a location`);
      const pull = stringField(m, "pull-from-mirror", mwhere) ?? "all";
      if (pull !== "all" && pull !== "digest-only" && pull !== "tag-only") throw new TsrunError(`${mwhere}: pull-from-mirror must be "all", "digest-only" or "tag-only", not "${pull}"`);
      return { location: checkLocation(mlocation, "location", mwhere), insecure: boolField(m, "insecure", mwhere), pullFromMirror: pull };
    });
    entries.push({ prefix, location, insecure: boolField(raw, "insecure", where), blocked: boolField(raw, "blocked", where), mirrors, file });
  }
  return result;
}

function readConf(file: string, mustExist: boolean): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === "ENOENT" || code === "ENOTDIR") && !mustExist) return undefined;
    throw new TsrunError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * Every configured registry, later files' entries replacing earlier ones of the same prefix;
 * with shortNames, the short-name settings too (otherwise left empty: reading them costs a
 * parse of every alias file, which only a short name needs).
 */
export function loadRegistriesConfig(env: NodeJS.ProcessEnv = process.env, shortNames = false): RegistriesConf {
  const byPrefix = new Map<string, RegistryEntry>();
  const settings: ShortNameSettings = { aliases: new Map() };
  for (const file of registriesConfFiles(env)) {
    // Only a file named by $CONTAINERS_REGISTRIES_CONF must exist.
    const text = readConf(file, file === env.CONTAINERS_REGISTRIES_CONF);
    if (text === undefined) continue;
    const conf = parseConfFile(text, file, shortNames);
    for (const entry of conf.entries) byPrefix.set(entry.prefix, entry);
    if (conf.searchRegistries) settings.searchRegistries = { value: conf.searchRegistries, file };
    if (conf.mode) settings.mode = { value: conf.mode, file };
    for (const [name, value] of conf.aliases) {
      if (value === "") settings.aliases.delete(name);
      else settings.aliases.set(name, { value, file });
    }
  }
  if (shortNames) {
    const cache = aliasCacheFile(env);
    const text = readConf(cache, false);
    if (text !== undefined) {
      for (const [name, value] of parseConfFile(text, cache, true).aliases) if (value !== "") settings.aliases.set(name, { value, file: cache });
    }
  }
  return { entries: [...byPrefix.values()], shortNames: settings };
}

/** Every configured registry, later files' entries replacing earlier ones of the same prefix. */
export function loadRegistriesConf(env: NodeJS.ProcessEnv = process.env): RegistryEntry[] {
  return loadRegistriesConfig(env).entries;
}

/** How much of "domain/path" a prefix matches (its length), or -1. */
function matchLength(prefix: string, name: string): number {
  if (prefix.startsWith("*.")) {
    const host = name.split("/")[0] ?? "";
    return host.endsWith(prefix.slice(1)) ? prefix.length : -1;
  }
  if (name === prefix || name.startsWith(`${prefix}/`)) return prefix.length;
  return -1;
}

/** The entry that applies to an image: the longest matching prefix, as containers/image picks. */
export function findRegistry(entries: RegistryEntry[], ref: Pick<Reference, "domain" | "path">): RegistryEntry | undefined {
  const name = `${ref.domain}/${ref.path}`;
  let best: RegistryEntry | undefined;
  let bestLength = -1;
  for (const entry of entries) {
    const length = matchLength(entry.prefix, name);
    if (length > bestLength) {
      best = entry;
      bestLength = length;
    }
  }
  return best;
}

function rewrite(location: string, entry: RegistryEntry, ref: Pick<Reference, "domain" | "path">): { domain: string; path: string } {
  const name = `${ref.domain}/${ref.path}`;
  // A wildcard prefix keeps the name as it is (it has no location of its own).
  const rewritten = entry.prefix.startsWith("*.") ? name : location + name.slice(entry.prefix.length);
  const slash = rewritten.indexOf("/");
  return { domain: rewritten.slice(0, slash), path: rewritten.slice(slash + 1) };
}

/**
 * A registry registries.conf blocks. Its own class: a short name's search moves on to the next
 * candidate after it, as containers/image does (every candidate's error is collected).
 */
export class BlockedRegistryError extends TsrunError {
  constructor(domain: string, file: string) {
    super(`registry ${domain} is blocked in ${file}`);
    this.name = "BlockedRegistryError";
  }
}

/**
 * Where to pull an image from, in order: the entry's mirrors (those its pull-from-mirror allows
 * for this reference), then its location. Refuses a blocked registry.
 */
export function pullSources(entries: RegistryEntry[], ref: Reference): PullSource[] {
  const entry = findRegistry(entries, ref);
  if (!entry) return [{ domain: ref.domain, path: ref.path, insecure: false, mirror: false }];
  if (entry.blocked) throw new BlockedRegistryError(ref.domain, entry.file);
  const sources: PullSource[] = [];
  for (const mirror of entry.mirrors) {
    if (mirror.pullFromMirror === "digest-only" && !ref.digest) continue;
    if (mirror.pullFromMirror === "tag-only" && ref.digest) continue;
    sources.push({ ...rewrite(mirror.location, entry, ref), insecure: mirror.insecure, mirror: true });
  }
  sources.push({ ...rewrite(entry.location, entry, ref), insecure: entry.insecure, mirror: false });
  return sources;
}

/**
 * Where a push goes: the image's own registry, as containers/image pushes (mirrors are for
 * pulls, and a location is not applied); refuses a blocked registry.
 */
export function pushTarget(entries: RegistryEntry[], ref: Reference): { insecure: boolean } {
  const entry = findRegistry(entries, ref);
  if (entry?.blocked) throw new BlockedRegistryError(ref.domain, entry.file);
  return { insecure: entry?.insecure ?? false };
}
