// The two path pattern languages a Docker build uses, ported from Go:
//
// - COPY/ADD source wildcards are Go's filepath.Match: `*` and `?` never cross a "/", `[...]`
//   classes (negated with `^`), `\` escapes the next character.
// - .dockerignore lines are moby/patternmatcher patterns: the same syntax plus `**` for any
//   number of directories, `!` exceptions, and a pattern that matches a directory also
//   excludes everything below it. The last matching line decides.
//
// Both are compiled to JavaScript regular expressions once per pattern.

/** A pattern Go would refuse (filepath.ErrBadPattern). */
export class BadPatternError extends Error {
  constructor(readonly pattern: string) {
    super(`syntax error in pattern: ${JSON.stringify(pattern)}`);
    this.name = "BadPatternError";
  }
}

/** Whether a COPY/ADD source uses wildcards (then it may match several paths, or none). */
export function hasWildcards(pattern: string): boolean {
  return /[*?[\\]/.test(pattern);
}

/**
 * One literal character for a unicode-mode RegExp: syntax characters are escaped, and "-" only
 * inside a class (in unicode mode "\\-" outside one is a syntax error: "requirements-*.txt").
 */
function escapeRegExp(ch: string, inClass = false): string {
  if (ch === "-") return inClass ? "\\-" : "-";
  return /[\\^$.*+?()[\]{}|/]/.test(ch) ? `\\${ch}` : ch;
}

/**
 * Compiles Go's filepath.Match syntax (see path.Match in Go's sources) into an anchored regular
 * expression. Throws BadPatternError for what Go reports as ErrBadPattern.
 */
export function compileGlob(pattern: string): RegExp {
  const chars = Array.from(pattern);
  let out = "^";
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] as string;
    if (ch === "*") {
      out += "[^/]*";
    } else if (ch === "?") {
      out += "[^/]";
    } else if (ch === "\\") {
      i++;
      if (i >= chars.length) throw new BadPatternError(pattern);
      out += escapeRegExp(chars[i] as string);
    } else if (ch === "[") {
      i++;
      let negated = false;
      if (chars[i] === "^") {
        negated = true;
        i++;
      }
      let body = "";
      let ranges = 0;
      // A class needs at least one range and a closing "]"; "]" right after "[" is a range end error in Go.
      for (;;) {
        if (i >= chars.length) throw new BadPatternError(pattern);
        if (chars[i] === "]" && ranges > 0) break;
        const lo = classChar(chars, i, pattern);
        i = lo.next;
        let item = escapeRegExp(lo.ch, true);
        if (chars[i] === "-") {
          const hi = classChar(chars, i + 1, pattern);
          if ((lo.ch.codePointAt(0) ?? 0) > (hi.ch.codePointAt(0) ?? 0)) throw new BadPatternError(pattern);
          item += `-${escapeRegExp(hi.ch, true)}`;
          i = hi.next;
        }
        body += item;
        ranges++;
      }
      // Go's classes never match the separator, negated or not.
      out += negated ? `[^/${body}]` : `(?!/)[${body}]`;
    } else {
      out += escapeRegExp(ch);
    }
  }
  return new RegExp(`${out}$`, "u");
}

function classChar(chars: string[], i: number, pattern: string): { ch: string; next: number } {
  const ch = chars[i];
  if (ch === undefined || ch === "-" || ch === "]") throw new BadPatternError(pattern);
  if (ch === "\\") {
    const escaped = chars[i + 1];
    if (escaped === undefined) throw new BadPatternError(pattern);
    return { ch: escaped, next: i + 2 };
  }
  return { ch, next: i + 1 };
}

/** Go's path.Clean for slash-separated paths ("" becomes "."). */
export function cleanPath(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  if (rooted) return `/${joined}`;
  return joined === "" ? "." : joined;
}

// ---------------------------------------------------------------------------------------------
// .dockerignore

/**
 * The patterns of a .dockerignore file, as moby/patternmatcher's ignorefile.ReadAll returns them:
 * comment lines (starting with "#") and blank lines skipped, each pattern trimmed and cleaned,
 * a leading "/" removed (patterns are relative to the context root).
 */
export function readDockerignore(text: string): string[] {
  const patterns: string[] = [];
  const lines = text.replace(/^\ufeff/, "").split(/\r?\n/);
  for (const raw of lines) {
    if (raw.startsWith("#")) continue;
    let pattern = raw.trim();
    if (pattern === "") continue;
    const invert = pattern.startsWith("!");
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
    }
    patterns.push(invert ? `!${pattern}` : pattern);
  }
  return patterns;
}

type MatchKind = "exact" | "prefix" | "suffix" | "regexp";

interface IgnorePattern {
  text: string;
  exclusion: boolean;
  kind: MatchKind;
  regexp?: RegExp;
}

/** patternmatcher's Pattern.compile: "**" spans directories, the rest is filepath.Match. */
function compileIgnorePattern(text: string): Pick<IgnorePattern, "kind" | "regexp"> {
  const chars = Array.from(text);
  let re = "^";
  let kind: MatchKind = "exact";
  for (let i = 0, n = 0; i < chars.length; i++, n++) {
    const ch = chars[i] as string;
    if (ch === "*") {
      if (chars[i + 1] === "*") {
        i++;
        // "**/" is read as "**".
        if (chars[i + 1] === "/") i++;
        if (i + 1 >= chars.length) {
          if (kind === "exact") kind = "prefix";
          else {
            re += ".*";
            kind = "regexp";
          }
        } else {
          re += "(.*/)?";
          kind = "regexp";
        }
        if (n === 0) kind = "suffix";
      } else {
        re += "[^/]*";
        kind = "regexp";
      }
    } else if (ch === "?") {
      re += "[^/]";
      kind = "regexp";
    } else if (".+()|{}$".includes(ch)) {
      re += `\\${ch}`;
    } else if (ch === "\\") {
      if (i + 1 < chars.length) {
        i++;
        re += escapeRegExp(chars[i] as string);
        kind = "regexp";
      } else {
        re += "\\\\";
      }
    } else if (ch === "[" || ch === "]") {
      re += ch;
      kind = "regexp";
    } else {
      re += ch === "^" ? "\\^" : ch;
    }
  }
  if (kind !== "regexp") return { kind };
  try {
    return { kind, regexp: new RegExp(`${re}$`, "u") };
  } catch {
    throw new BadPatternError(text);
  }
}

function matchOne(p: IgnorePattern, file: string): boolean {
  switch (p.kind) {
    case "exact":
      return file === p.text;
    case "prefix":
      return file.startsWith(p.text.slice(0, -2));
    case "suffix": {
      const suffix = p.text.slice(2);
      if (file.endsWith(suffix)) return true;
      // "**/foo" also matches "foo".
      return suffix.startsWith("/") && file === suffix.slice(1);
    }
    case "regexp":
      return p.regexp?.test(file) ?? false;
  }
}

/**
 * .dockerignore matching (patternmatcher's MatchesOrParentMatches): a path is excluded when the
 * last pattern that matches it, or one of its parent directories, is not an exception.
 */
export class IgnoreMatcher {
  private readonly patterns: IgnorePattern[] = [];
  /** Whether any "!" exception exists: only then must an excluded directory still be walked. */
  readonly hasExceptions: boolean;

  constructor(patterns: readonly string[]) {
    let exceptions = false;
    for (const raw of patterns) {
      let text = raw.trim();
      if (text === "") continue;
      text = cleanPath(text);
      let exclusion = false;
      if (text.startsWith("!")) {
        if (text.length === 1) throw new BadPatternError("!");
        exclusion = true;
        exceptions = true;
        text = text.slice(1);
      }
      // Go checks the syntax with filepath.Match; the same errors surface here.
      compileGlob(text.replace(/\*\*/g, "*"));
      this.patterns.push({ text, exclusion, ...compileIgnorePattern(text) });
    }
    this.hasExceptions = exceptions;
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** Whether some pattern (not an exception) could match a path below `dir`, which none matches. */
  mayMatchBelow(dir: string): boolean {
    const parts = dir.split("/");
    return this.patterns.some((p) => !p.exclusion && patternMayMatchBelow(p.text, parts));
  }

  /** Whether `file` (a clean, slash-separated path relative to the context) is excluded. */
  excludes(file: string): boolean {
    if (file === "." || file === "") return false;
    let matched = false;
    const slash = file.lastIndexOf("/");
    const parents = slash < 0 ? [] : file.slice(0, slash).split("/");
    for (const p of this.patterns) {
      // An inclusion cannot change a match, an exception cannot change a non-match.
      if (p.exclusion !== matched) continue;
      let match = matchOne(p, file);
      for (let i = 0; !match && i < parents.length; i++) match = matchOne(p, parents.slice(0, i + 1).join("/"));
      if (match) matched = !p.exclusion;
    }
    return matched;
  }
}

/**
 * Whether a pattern could match a path below `dirParts` (a directory it does not match itself):
 * its components before the first "**" must match the directory's, one by one.
 */
function patternMayMatchBelow(pattern: string, dirParts: readonly string[]): boolean {
  const components = pattern.split("/");
  for (let i = 0; i < dirParts.length; i++) {
    const component = components[i];
    if (component === undefined) return true;
    if (component.includes("**")) return true;
    if (!hasWildcards(component)) {
      if (component !== dirParts[i]) return false;
      continue;
    }
    if (!compileGlob(component).test(dirParts[i] as string)) return false;
  }
  return components.length > dirParts.length;
}

/**
 * What COPY/ADD take below a source directory, as BuildKit's copier (tonistiigi/fsutil) selects
 * it: paths relative to the source, `--exclude` patterns (moby/patternmatcher, like
 * .dockerignore: a matched directory drops everything below it, `!` re-includes) and, for
 * `COPY --parents`, the pattern of what to keep below the source root (a path matches it when it
 * or one of its parent directories does).
 */
export class CopyFilter {
  private readonly include: IgnoreMatcher | undefined;
  private readonly exclude: IgnoreMatcher | undefined;

  /** Throws BadPatternError for a pattern patternmatcher refuses. */
  constructor(include: readonly string[], exclude: readonly string[]) {
    const included = new IgnoreMatcher(include);
    const excluded = new IgnoreMatcher(exclude);
    this.include = included.empty ? undefined : included;
    this.exclude = excluded.empty ? undefined : excluded;
  }

  /** Whether the exclude patterns drop `file` (relative to the source). */
  excludes(file: string): boolean {
    return this.exclude?.excludes(file) ?? false;
  }

  /** Whether `file` (relative to the source) is copied. */
  accepts(file: string): boolean {
    if (this.include && !this.include.excludes(file)) return false;
    return !this.excludes(file);
  }

  /** For a directory that is not copied itself: whether something below it may be. */
  mayAcceptBelow(dir: string): boolean {
    if (this.exclude?.excludes(dir) && !this.exclude.hasExceptions) return false;
    if (this.include && !this.include.excludes(dir) && !this.include.mayMatchBelow(dir)) return false;
    return true;
  }
}
