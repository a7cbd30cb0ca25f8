// The stage graph of a Dockerfile: the ARGs before the first FROM (the global scope), then one
// stage per FROM with its instructions, named by `AS name` (case-insensitive, as BuildKit) or
// known by its index. A stage depends on an earlier stage when its FROM names it or a COPY
// --from refers to it; the builder builds a stage only when the target needs it.
import { DockerfileParseError, type Dockerfile, type Instruction, type ParseWarning } from "./dockerfile.js";

export interface Stage {
  /** Position in the Dockerfile, from 0. */
  index: number;
  /** The name after AS, lowercased; undefined when the stage has none. */
  name: string | undefined;
  from: Instruction;
  /** The base as written (before expanding global ARGs), and the --platform flag if any. */
  base: string;
  platform: string | undefined;
  instructions: Instruction[];
}

export interface StageGraph {
  /** ARG instructions before the first FROM. */
  globalArgs: Instruction[];
  stages: Stage[];
  /** What BuildKit's linter reports without failing: a stage name used twice. */
  warnings: ParseWarning[];
}

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** Splits a parsed Dockerfile into its global ARGs and its stages; checks FROM lines and stage names. */
export function stageGraph(dockerfile: Dockerfile, fileName = "Dockerfile"): StageGraph {
  const fail = (ins: Instruction, reason: string): DockerfileParseError => new DockerfileParseError(reason, ins.startLine, ins.endLine, fileName);
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  const warnings: ParseWarning[] = [];
  for (const ins of dockerfile.instructions) {
    if (ins.keyword === "from") {
      const flags = parseFlags(ins, { platform: "string" }, fileName);
      const args = ins.args;
      if (!(args.length === 1 || (args.length === 3 && (args[1] ?? "").toLowerCase() === "as"))) {
        throw fail(ins, "FROM requires either one or three arguments");
      }
      let name: string | undefined;
      if (args.length === 3) {
        name = (args[2] ?? "").toLowerCase();
        if (!STAGE_NAME.test(name)) throw fail(ins, `invalid name for build stage: "${args[2] ?? ""}", name can't start with a number or contain symbols`);
        // A lint warning in BuildKit, not an error (docker/buildx's own Dockerfile names a stage twice).
        if (stages.some((s) => s.name === name)) warnings.push({ message: `duplicate stage name "${name}", stage names should be unique`, line: ins.startLine });
      }
      const platform = flags.get("platform");
      stages.push({ index: stages.length, name, from: ins, base: args[0] ?? "", platform: typeof platform === "string" ? platform : undefined, instructions: [] });
      continue;
    }
    const current = stages[stages.length - 1];
    if (current === undefined) {
      if (ins.keyword !== "arg") throw fail(ins, `no build stage in current context: ${ins.keyword.toUpperCase()} must come after a FROM`);
      globalArgs.push(ins);
      continue;
    }
    current.instructions.push(ins);
  }
  if (stages.length === 0) {
    const last = dockerfile.instructions[dockerfile.instructions.length - 1];
    throw new DockerfileParseError("no build stage in current context: the Dockerfile has no FROM", last?.startLine ?? 0, last?.endLine ?? 0, fileName);
  }
  return { globalArgs, stages, warnings };
}

/**
 * A stage by name (case-insensitive) or, for COPY --from, by index; undefined when none. A name
 * used twice means its last stage, or with `before` the last one above that index (what a FROM
 * line sees), as in BuildKit.
 */
export function findStage(graph: StageGraph, ref: string, before = Number.POSITIVE_INFINITY): Stage | undefined {
  const lower = ref.toLowerCase();
  const byName = [...graph.stages].reverse().find((s) => s.name === lower && s.index < before);
  if (byName) return byName;
  if (/^\d+$/.test(ref)) return graph.stages[Number(ref)];
  return undefined;
}

/** The stage `--target` names, or the last one. */
export function targetStage(graph: StageGraph, target: string | undefined): Stage {
  if (target === undefined || target === "") return graph.stages[graph.stages.length - 1] as Stage;
  const stage = [...graph.stages].reverse().find((s) => s.name === target.toLowerCase());
  if (!stage) throw new Error(`target stage "${target}" could not be found`);
  return stage;
}

/** A flag's value: one string, a bool (`--link`, `--link=false`), or repeated strings (`--mount`). */
export type FlagKind = "string" | "bool" | "strings";

/**
 * An instruction's `--name=value` flags, checked against the ones it accepts (BuildKit's
 * BFlags): an unknown or repeated flag, or a value on a bool flag other than true/false, is an
 * error with the instruction's line.
 */
export function parseFlags(ins: Instruction, accepted: Readonly<Record<string, FlagKind>>, fileName = "Dockerfile"): Map<string, string | boolean | string[]> {
  const out = new Map<string, string | boolean | string[]>();
  for (const flag of ins.flags) {
    const fail = (reason: string): DockerfileParseError => new DockerfileParseError(reason, ins.startLine, ins.endLine, fileName);
    if (!flag.startsWith("--")) throw fail(`invalid flag "${flag}"`);
    const eq = flag.indexOf("=");
    const name = eq < 0 ? flag.slice(2) : flag.slice(2, eq);
    const value = eq < 0 ? undefined : flag.slice(eq + 1);
    const kind = accepted[name];
    if (kind === undefined) throw fail(`unknown flag: --${name}`);
    if (out.has(name) && kind !== "strings") throw fail(`duplicate flag specified: --${name}`);
    if (kind === "strings") {
      if (value === undefined) throw fail(`missing a value on flag: --${name}`);
      const previous = out.get(name);
      out.set(name, [...(Array.isArray(previous) ? previous : []), value]);
    } else if (kind === "bool") {
      if (value === undefined || value.toLowerCase() === "true") out.set(name, true);
      else if (value.toLowerCase() === "false") out.set(name, false);
      else throw fail(`expecting boolean value for flag --${name}, not: ${value}`);
    } else {
      if (value === undefined) throw fail(`missing a value on flag: --${name}`);
      out.set(name, value);
    }
  }
  return out;
}
