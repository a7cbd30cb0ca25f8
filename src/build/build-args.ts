// ARG scoping as Docker does it. ARGs before the first FROM form the global scope, visible only to
// FROM lines; a stage sees an ARG from its declaration on (and those of the stage it is built
// FROM), with the --build-arg value if one was given, else its default, else (for `ARG NAME`
// alone) the global value. Declared ARGs with a value are in the environment of every later RUN
// of the stage (not in the image). An ARG and an ENV of the same name: the later one wins, as in
// BuildKit, where both set the build state's environment in order: `ENV X=1` then `ARG X=2`
// (or an ENV of the base image, and `ARG DEBIAN_FRONTEND=noninteractive`) gives 2 to RUN and
// to expansions, `ARG X=2` then `ENV X=1` gives 1; the image's Env keeps the ENV value.
//
// Some ARGs exist without a declaration: the proxy variables (given with --build-arg, they reach
// RUN but are kept out of the history and the cache key, as Docker does), and the platform
// variables (BUILDPLATFORM, TARGETARCH, ...), set in the global scope and importable into a
// stage with `ARG TARGETARCH`.
import { DockerfileParseError, type Instruction } from "./dockerfile.js";
import { ShellExpansionError, ShellLex, type EscapeChar } from "./shell-words.js";
import type { Platform } from "../image/types.js";

export const PROXY_ARGS: ReadonlySet<string> = new Set([
  "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
]);

/** BuildKit's automatic platform ARGs for a build on and for `platform`. */
export function platformArgs(platform: Platform): Map<string, string> {
  const variant = platform.variant ?? "";
  const spec = `${platform.os}/${platform.architecture}${variant ? `/${variant}` : ""}`;
  const out = new Map<string, string>();
  for (const prefix of ["BUILD", "TARGET"]) {
    out.set(`${prefix}PLATFORM`, spec);
    out.set(`${prefix}OS`, platform.os);
    out.set(`${prefix}ARCH`, platform.architecture);
    out.set(`${prefix}VARIANT`, variant);
  }
  return out;
}

/** Splits one ARG word into its name and its default (undefined when it has none). */
function argDeclaration(word: string): { name: string; defaultValue: string | undefined } {
  const eq = word.indexOf("=");
  return eq < 0 ? { name: word, defaultValue: undefined } : { name: word.slice(0, eq), defaultValue: word.slice(eq + 1) };
}

/** The values given with --build-arg, and which of them the build used. */
export class BuildArgs {
  readonly consumed = new Set<string>();
  readonly automatic: ReadonlyMap<string, string>;

  constructor(
    readonly given: ReadonlyMap<string, string>,
    platform: Platform,
    readonly escapeChar: EscapeChar,
    readonly fileName = "Dockerfile",
  ) {
    this.automatic = platformArgs(platform);
  }

  /** The global scope: the automatic platform ARGs, then the ARGs before the first FROM. */
  globalScope(globalArgs: readonly Instruction[]): Map<string, string> {
    const scope = new Map(this.automatic);
    for (const ins of globalArgs) {
      for (const word of this.words(ins)) {
        const { name, defaultValue } = argDeclaration(word);
        const value = this.resolve(ins, name, defaultValue, scope);
        // `ARG NAME` without a value changes nothing: an automatic platform ARG (the usual
        // `ARG TARGETARCH` before `FROM base-${TARGETARCH}`) or an earlier default stays.
        if (value !== undefined) scope.set(name, value);
      }
    }
    return scope;
  }

  /** The --build-arg value, else the default expanded in `scope`; undefined when neither exists. */
  resolve(ins: Instruction, name: string, defaultValue: string | undefined, scope: ReadonlyMap<string, string>): string | undefined {
    const given = this.given.get(name);
    if (given !== undefined) {
      this.consumed.add(name);
      return given;
    }
    if (defaultValue === undefined) return undefined;
    try {
      return new ShellLex(this.escapeChar).processWord(defaultValue, scope);
    } catch (err) {
      if (err instanceof ShellExpansionError) throw new DockerfileParseError(err.message, ins.startLine, ins.endLine, this.fileName);
      throw err;
    }
  }

  /**
   * --build-arg names no ARG declared (Docker warns about them). Proxy variables are always used;
   * SOURCE_DATE_EPOCH and BuildKit's own BUILDKIT_* settings (BUILDKIT_INLINE_CACHE, ...) tell the
   * builder something and are no ARGs.
   */
  unconsumed(): string[] {
    return [...this.given.keys()].filter((k) => !this.consumed.has(k) && !PROXY_ARGS.has(k) && k !== "SOURCE_DATE_EPOCH" && !k.startsWith("BUILDKIT_")).sort();
  }

  words(ins: Instruction): string[] {
    if (ins.args.length === 0) throw new DockerfileParseError("ARG requires at least one argument", ins.startLine, ins.endLine, this.fileName);
    for (const word of ins.args) {
      if (argDeclaration(word).name === "") throw new DockerfileParseError("ARG names can not be blank", ins.startLine, ins.endLine, this.fileName);
    }
    return ins.args;
  }
}

/** The ARGs of one stage. */
export class StageArgs {
  /** Declared ARGs with their values (undefined: declared, no value), in declaration order. */
  private readonly declared = new Map<string, string | undefined>();
  /** ARGs declared (with a value) after the last ENV of their name: their value wins over the ENV's. */
  private readonly shadowing = new Set<string>();

  constructor(
    private readonly buildArgs: BuildArgs,
    private readonly globals: ReadonlyMap<string, string>,
  ) {}

  /**
   * The ARGs of a stage built FROM this one: BuildKit carries the declared ARGs and their values
   * over (Docker's documentation: "arguments and variables are inherited from parent stages").
   */
  derive(): StageArgs {
    const child = new StageArgs(this.buildArgs, this.globals);
    for (const [name, value] of this.declared) child.declared.set(name, value);
    for (const name of this.shadowing) child.shadowing.add(name);
    return child;
  }

  /** `ARG a b=c`: declares them; env is the stage's ENV (used to expand defaults). */
  declare(ins: Instruction, env: readonly string[]): { name: string; value: string | undefined }[] {
    const out: { name: string; value: string | undefined }[] = [];
    for (const word of this.buildArgs.words(ins)) {
      const { name, defaultValue } = argDeclaration(word);
      let value = this.buildArgs.resolve(ins, name, defaultValue, this.expansionScope(env));
      // `ARG NAME` alone takes the global value (the automatic platform ARGs included).
      if (value === undefined && defaultValue === undefined) value = this.globals.get(name);
      this.declared.set(name, value);
      if (value !== undefined) this.shadowing.add(name);
      else this.shadowing.delete(name);
      out.push({ name, value });
    }
    return out;
  }

  /** An ENV instruction set these names: from here on their ENV value wins over an ARG's. */
  envSet(names: Iterable<string>): void {
    for (const name of names) this.shadowing.delete(name);
  }

  /** The variables an instruction's words are expanded with: ARG values, ENV over them, ARGs declared after an ENV over that. */
  expansionScope(env: readonly string[]): Map<string, string> {
    const scope = new Map<string, string>();
    for (const [name, value] of this.declared) if (value !== undefined) scope.set(name, value);
    for (const entry of env) {
      const eq = entry.indexOf("=");
      if (eq > 0) scope.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
    for (const name of this.shadowing) {
      const value = this.declared.get(name);
      if (value !== undefined) scope.set(name, value);
    }
    return scope;
  }

  /**
   * The ARG values a RUN gets in its environment (those ENV does not override), sorted by name
   * so the cache key does not depend on declaration order; proxy variables given with
   * --build-arg come last and are flagged so they stay out of the cache key and history.
   */
  runEnvironment(env: readonly string[]): { args: [string, string][]; proxies: [string, string][] } {
    const envKeys = new Set(env.map((e) => e.slice(0, Math.max(0, e.indexOf("=")))));
    const args: [string, string][] = [];
    for (const [name, value] of this.declared) {
      if (value !== undefined && (!envKeys.has(name) || this.shadowing.has(name))) args.push([name, value]);
    }
    const proxies: [string, string][] = [];
    for (const name of PROXY_ARGS) {
      const value = this.buildArgs.given.get(name);
      if (value !== undefined && !this.declared.has(name) && !envKeys.has(name)) proxies.push([name, value]);
    }
    return { args: args.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)), proxies };
  }
}
