// Dockerfile instructions that only change an image's config (no layer): used by
// `import --change`, `commit --change`, and by the builder for the same instructions.
import { parseDockerfile, type Instruction } from "../build/dockerfile.js";
import { ShellLex, type EscapeChar, type ShellEnv } from "../build/shell-words.js";
import path from "node:path";
import { TsrunError } from "../errors.js";
import { parseDuration } from "../format/duration.js";
import { signalNumber } from "../format/signal.js";
import type { ContainerConfig, HealthConfig } from "./types.js";

/** The instructions Docker accepts in --change (DESIGN.md). */
export const CHANGE_INSTRUCTIONS = new Set(["cmd", "entrypoint", "env", "expose", "label", "onbuild", "stopsignal", "user", "volume", "workdir", "healthcheck"]);

export interface ConfigState {
  /** Whether CMD was set by this build or change list: ENTRYPOINT resets an inherited CMD only. */
  cmdSet: boolean;
}

const DEFAULT_SHELL = ["/bin/sh", "-c"];

function envMap(config: ContainerConfig): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of config.Env ?? []) {
    const eq = e.indexOf("=");
    if (eq > 0) m.set(e.slice(0, eq), e.slice(eq + 1));
  }
  return m;
}

/** Exec form as given; shell form wrapped in the image's SHELL (default /bin/sh -c). */
function commandLine(ins: Instruction, config: ContainerConfig): string[] {
  if (ins.json) return ins.args;
  return [...(config.Shell ?? DEFAULT_SHELL), ins.args.join(" ")];
}

function healthcheck(ins: Instruction, config: ContainerConfig): HealthConfig {
  const [kind, ...rest] = ins.args;
  if (kind?.toUpperCase() === "NONE") {
    if (rest.length > 0 || ins.flags.length > 0) throw new TsrunError("HEALTHCHECK NONE takes no arguments");
    return { Test: ["NONE"] };
  }
  if (kind?.toUpperCase() !== "CMD") throw new TsrunError(`unknown HEALTHCHECK type "${kind ?? ""}": expected CMD or NONE`);
  if (rest.join("").trim() === "") throw new TsrunError("Missing command after HEALTHCHECK CMD");
  const hc: HealthConfig = ins.json ? { Test: ["CMD", ...rest] } : { Test: ["CMD-SHELL", rest.join(" ")] };
  void config;
  for (const flag of ins.flags) {
    const m = /^--([a-z-]+)=(.*)$/.exec(flag);
    if (!m) throw new TsrunError(`HEALTHCHECK: bad flag "${flag}"`);
    const [, name, value] = m as unknown as [string, string, string];
    switch (name) {
      case "interval":
        hc.Interval = parseDuration(value);
        break;
      case "timeout":
        hc.Timeout = parseDuration(value);
        break;
      case "start-period":
        hc.StartPeriod = parseDuration(value);
        break;
      case "start-interval":
        hc.StartInterval = parseDuration(value);
        break;
      case "retries": {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 0) throw new TsrunError(`HEALTHCHECK: --retries must be a whole number, not "${value}"`);
        hc.Retries = n;
        break;
      }
      default:
        throw new TsrunError(`HEALTHCHECK: unknown flag --${name}`);
    }
  }
  return hc;
}

export interface ExpansionOptions {
  /** The variables words are expanded with (the builder's ARGs and ENV); the config's ENV by default. */
  scope?: ShellEnv;
  /** The Dockerfile's escape character. */
  escapeChar?: EscapeChar;
}

/** Applies one config instruction, as Docker's builder dispatchers do. */
export function applyInstruction(config: ContainerConfig, ins: Instruction, state: ConfigState, opts: ExpansionOptions = {}): void {
  const env = envMap(config);
  // Every word of an instruction sees the variables as they were before it (`ENV a=1 b=$a`
  // gives b the earlier a), as in Docker.
  const scope = opts.scope ?? new Map(env);
  const lex = new ShellLex(opts.escapeChar ?? "\\");
  const expand = (w: string): string => lex.processWord(w, scope);
  const expandWords = (w: string): string[] => lex.processWords(w, scope);
  switch (ins.keyword) {
    case "cmd":
      config.Cmd = commandLine(ins, config);
      state.cmdSet = true;
      break;
    case "entrypoint":
      config.Entrypoint = ins.json && ins.args.length === 0 ? null : commandLine(ins, config);
      if (!state.cmdSet) config.Cmd = null;
      break;
    case "env": {
      if (ins.args.length === 0) throw new TsrunError("ENV requires at least one argument");
      for (let i = 0; i + 1 < ins.args.length; i += 3) {
        // Both forms are expanded (the legacy `ENV key value with spaces` too), keys included.
        const key = expand(ins.args[i] as string);
        if (key === "") throw new TsrunError("ENV names can not be blank");
        env.set(key, expand(ins.args[i + 1] as string));
      }
      config.Env = [...env].map(([k, v]) => `${k}=${v}`);
      break;
    }
    case "label":
      // BuildKit's argument counts (its parse errors, word for word), for --change as for builds.
      if (ins.args.length === 0) throw new TsrunError("LABEL requires at least one argument");
      config.Labels = config.Labels ?? {};
      for (let i = 0; i + 1 < ins.args.length; i += 3) config.Labels[expand(ins.args[i] as string)] = expand(ins.args[i + 1] as string);
      break;
    case "expose":
      if (ins.args.length === 0) throw new TsrunError("EXPOSE requires at least one argument");
      config.ExposedPorts = config.ExposedPorts ?? {};
      for (const raw of ins.args.flatMap((a) => expandWords(a))) {
        const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(raw);
        if (!m) throw new TsrunError(`EXPOSE: invalid port "${raw}"`);
        const proto = (m[3] ?? "tcp").toLowerCase();
        const from = Number(m[1]);
        const to = m[2] ? Number(m[2]) : from;
        if (to > 65535) throw new TsrunError(`EXPOSE: invalid port "${raw}": ports go up to 65535`);
        if (to < from) throw new TsrunError(`EXPOSE: invalid port range "${raw}": the end is below the start`);
        for (let p = from; p <= to; p++) config.ExposedPorts[`${p}/${proto}`] = {};
      }
      break;
    case "stopsignal": {
      if (ins.args.length !== 1) throw new TsrunError("STOPSIGNAL requires exactly one argument");
      const sig = expand(ins.args[0] as string);
      // Checked here, as Docker does: an image whose STOPSIGNAL is not a signal cannot be stopped.
      signalNumber(sig);
      config.StopSignal = sig;
      break;
    }
    case "user":
      if (ins.args.length !== 1) throw new TsrunError("USER requires exactly one argument");
      config.User = expand(ins.args[0] as string);
      break;
    case "workdir": {
      const dir = expand(ins.args[0] ?? "");
      if (dir === "") throw new TsrunError("WORKDIR requires exactly one argument");
      // Relative to the previous one, cleaned as Go's filepath.Join does ("a/../b" is "/b").
      config.WorkingDir = path.posix.resolve(config.WorkingDir || "/", dir);
      break;
    }
    case "volume":
      if (ins.args.length === 0) throw new TsrunError("VOLUME requires at least one argument");
      config.Volumes = config.Volumes ?? {};
      for (const v of ins.args.map((a) => expand(a).trim())) {
        if (v === "") throw new TsrunError("VOLUME specified can not be an empty string");
        config.Volumes[v] = {};
      }
      break;
    case "onbuild": {
      if (!ins.next) throw new TsrunError("ONBUILD needs an instruction");
      const inner = ins.next.keyword;
      if (inner === "onbuild") throw new TsrunError("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (inner === "from" || inner === "maintainer") throw new TsrunError(`${inner.toUpperCase()} isn't allowed as an ONBUILD trigger`);
      config.OnBuild = [...(config.OnBuild ?? []), ins.next.original.replace(/^\s*onbuild\s+/i, "")];
      break;
    }
    case "healthcheck":
      config.Healthcheck = healthcheck(ins, config);
      break;
    case "shell":
      if (!ins.json) throw new TsrunError("SHELL requires the arguments to be in JSON form");
      config.Shell = ins.args;
      break;
    default:
      throw new TsrunError(`${ins.keyword.toUpperCase()} is not a config instruction`);
  }
}

/** Applies `--change` lines: only the instructions Docker allows there. */
export function applyChanges(base: ContainerConfig, changes: string[]): ContainerConfig {
  const config: ContainerConfig = structuredClone(base);
  const state: ConfigState = { cmdSet: false };
  for (const change of changes) {
    let instructions: Instruction[];
    try {
      instructions = parseDockerfile(change).instructions;
    } catch (err) {
      throw new TsrunError(`invalid change "${change}": ${(err as Error).message}`);
    }
    for (const ins of instructions) {
      if (!CHANGE_INSTRUCTIONS.has(ins.keyword)) throw new TsrunError(`${ins.keyword} is not a valid change command`);
      try {
        applyInstruction(config, ins, state);
      } catch (err) {
        throw new TsrunError(`invalid change "${change}": ${(err as Error).message}`);
      }
    }
  }
  return config;
}
