// Image references, parsed and normalised as Docker does (distribution/reference):
// "busybox" -> docker.io/library/busybox:latest, "localhost:5000/a/b@sha256:..." kept as is.

export interface Reference {
  /** Registry host, e.g. "docker.io" or "127.0.0.1:5000". */
  domain: string;
  /** Repository path within the registry, e.g. "library/busybox". */
  path: string;
  tag?: string;
  digest?: string;
}

export class ReferenceError extends Error {}

const DEFAULT_DOMAIN = "docker.io";
const LEGACY_DOMAIN = "index.docker.io";
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$|^\[[a-fA-F0-9:]+\](?::[0-9]+)?$/;

/** Parses a user-given reference; throws ReferenceError with Docker's wording on bad input. */
export function parseReference(input: string): Reference {
  if (input.length === 0) throw new ReferenceError("invalid reference format: empty reference");
  if (input.length > 4096) throw new ReferenceError("invalid reference format: reference too long");
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ReferenceError(`invalid reference format: bad digest in "${input}"`);
    if (digest.startsWith("sha256:") && !/^sha256:[a-f0-9]{64}$/.test(digest))
      throw new ReferenceError(`invalid reference format: bad sha256 digest in "${input}"`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ReferenceError(`invalid reference format: bad tag "${tag}" in "${input}"`);
  }
  if (rest.length === 0) throw new ReferenceError(`invalid reference format: no repository name in "${input}"`);
  let domain = DEFAULT_DOMAIN;
  let repoPath = rest;
  const firstSlash = rest.indexOf("/");
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase()) {
      domain = first;
      repoPath = rest.slice(firstSlash + 1);
      if (!DOMAIN.test(domain)) throw new ReferenceError(`invalid reference format: bad registry "${domain}" in "${input}"`);
    }
  }
  if (domain === LEGACY_DOMAIN) domain = DEFAULT_DOMAIN;
  if (repoPath !== repoPath.toLowerCase())
    throw new ReferenceError(`invalid reference format: repository name must be lowercase: "${input}"`);
  for (const component of repoPath.split("/")) {
    if (!COMPONENT.test(component)) throw new ReferenceError(`invalid reference format: "${input}"`);
  }
  if (domain === DEFAULT_DOMAIN && !repoPath.includes("/")) repoPath = `library/${repoPath}`;
  if (domain.length + repoPath.length + 1 > 255)
    throw new ReferenceError(`invalid reference format: repository name too long: "${input}"`);
  const ref: Reference = { domain, path: repoPath };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  if (ref.tag === undefined && ref.digest === undefined) ref.tag = "latest";
  return ref;
}

/**
 * Whether a name the user typed names its registry (its first component has a "." or ":", is
 * "localhost", or has upper case), as distribution/reference decides: the others are short
 * names, which Docker completes with docker.io and Podman with its search registries.
 */
export function hasRegistry(input: string): boolean {
  const slash = input.indexOf("/");
  if (slash < 0) return false;
  const first = input.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase();
}

/** domain/path without tag or digest. */
export function repositoryName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalised form, e.g. docker.io/library/busybox:latest. */
export function formatReference(ref: Reference): string {
  let s = repositoryName(ref);
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** The short form Docker prints: "busybox" for docker.io/library/busybox. */
export function familiarRepository(name: string): string {
  if (name.startsWith("docker.io/library/")) return name.slice("docker.io/library/".length);
  if (name.startsWith("docker.io/")) return name.slice("docker.io/".length);
  return name;
}

/** Splits a normalised "repo:tag" name into repository and tag. */
export function splitName(name: string): { repository: string; tag: string } {
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  if (colon > slash) return { repository: name.slice(0, colon), tag: name.slice(colon + 1) };
  return { repository: name, tag: "" };
}

/** Normalises a name the user typed; throws ReferenceError. */
export function normaliseName(input: string): string {
  return formatReference(parseReference(input));
}
