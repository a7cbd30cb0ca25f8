// Short names ("busybox", "team/app:1": no registry named) as Podman resolves them
// (containers/image's pkg/shortnames, containers-registries.conf(5)):
// - an alias for the name (without its tag or digest) in [aliases] is used alone;
// - else each unqualified-search registry is a candidate, in order; with several,
//   short-name-mode decides: "disabled" tries them all, "permissive" (the default) asks at a
//   terminal and tries them all without one, "enforcing" asks at a terminal and fails without
//   one. A choice made at the prompt is recorded as an alias in the user's
//   short-name-aliases.conf, as Podman records it.
// Where no file sets unqualified-search-registries, tsrun does what Docker does: the name means
// docker.io (docker.io/library/ for a one-component name). Podman fails there instead; a
// Docker user expects `tsrun pull busybox` to work on a machine with no registries.conf.
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../../store/atomic.js";
import { TsrunError } from "../../errors.js";
import { formatReference, hasRegistry, parseReference, type Reference } from "../reference.js";
import { aliasCacheFile, type ShortNameSettings } from "./registries-conf.js";

/** Asks the user which of several names to pull (a terminal prompt); returns one of them. */
export type SelectCandidate = (candidates: string[]) => Promise<string>;

export interface ShortNameResolution {
  /** Where to pull from, in order: the first that can be pulled is used. */
  candidates: Reference[];
  /** Podman's line saying how a short name was resolved, shown before pulling. */
  description?: string;
  /** The short name to record as an alias of the candidate once pulled (a prompt's choice). */
  record?: string;
}

/** The name without its tag or digest: what an alias names. */
function repositoryPart(input: string): string {
  const at = input.indexOf("@");
  const name = at >= 0 ? input.slice(0, at) : input;
  const colon = name.lastIndexOf(":");
  return colon > name.lastIndexOf("/") ? name.slice(0, colon) : name;
}

/** What follows the repository in the input (":tag", "@digest", both, or nothing). */
function tagAndDigest(input: string): string {
  return input.slice(repositoryPart(input).length);
}

function aliasCandidate(input: string, settings: ShortNameSettings): { ref: Reference; file: string } | undefined {
  const alias = settings.aliases.get(repositoryPart(input));
  return alias ? { ref: parseReference(alias.value + tagAndDigest(input)), file: alias.file } : undefined;
}

/**
 * Where a name may be pulled from. A name that names its registry is itself; a short name goes
 * through the aliases, then the search registries and short-name-mode. `select` is given only
 * when a user can be asked (stdin and stdout are a terminal).
 */
export async function resolveShortName(input: string, settings: ShortNameSettings, select?: SelectCandidate): Promise<ShortNameResolution> {
  const ref = parseReference(input);
  if (hasRegistry(input)) return { candidates: [ref] };
  const short = repositoryPart(input);
  const alias = aliasCandidate(input, settings);
  if (alias) return { candidates: [alias.ref], description: `Resolved "${short}" as an alias (${alias.file})` };
  const search = settings.searchRegistries;
  if (!search || search.value.length === 0) return { candidates: [ref] };
  const candidates = search.value.map((registry) => parseReference(`${registry}/${input}`));
  const description = `Resolving "${short}" using unqualified-search registries (${search.file})`;
  const mode = settings.mode?.value ?? "permissive";
  if (mode === "disabled" || candidates.length === 1) return { candidates, description };
  if (!select) {
    if (mode === "permissive") return { candidates, description };
    const names = candidates.map(formatReference).join(", ");
    throw new TsrunError(
      `short-name resolution enforced but cannot prompt without a TTY: "${input}" could be ${names} (short-name-mode "enforcing" in ${settings.mode?.file}): use a fully-qualified name or an alias`,
    );
  }
  const names = candidates.map(formatReference);
  const chosen = await select(names);
  const index = names.indexOf(chosen);
  if (index < 0) throw new TsrunError(`short name "${input}": "${chosen}" is not one of ${names.join(", ")}`);
  return { candidates: [candidates[index] as Reference], record: short };
}

/**
 * The other names a short name may have in the store, after Docker's (docker.io/library/NAME,
 * which the store looks up first): its alias, localhost/NAME (what Podman names images built or
 * loaded without a registry), then each search registry's, as Podman looks images up.
 */
export function localCandidates(input: string, settings: ShortNameSettings): string[] {
  if (hasRegistry(input)) return [];
  const names: string[] = [];
  const alias = aliasCandidate(input, settings);
  if (alias) names.push(formatReference(alias.ref));
  for (const registry of ["localhost", ...(settings.searchRegistries?.value ?? [])]) names.push(formatReference(parseReference(`${registry}/${input}`)));
  return [...new Set(names)];
}

/**
 * Records `name` as an alias of `value` (a repository) in the user's short-name-aliases.conf,
 * the file Podman records its prompt's choices in, keeping the aliases already there.
 */
export function recordAlias(name: string, value: string, env: NodeJS.ProcessEnv = process.env): string {
  const file = aliasCacheFile(env);
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new TsrunError(`cannot read ${file}: ${(err as Error).message}`);
  }
  // Only [aliases] lines are kept; the file is machine-written (Podman writes the same form).
  const aliases = new Map<string, string>();
  for (const m of text.matchAll(/^[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"/gm)) aliases.set(m[1] as string, m[2] as string);
  aliases.set(name, value);
  const lines = ["[aliases]", ...[...aliases].map(([k, v]) => `  ${JSON.stringify(k)} = ${JSON.stringify(v)}`)];
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileAtomic(file, `${lines.join("\n")}\n`, 0o644);
  return file;
}
