// Small helpers shared by the command files.
import type { Command } from "commander";
import { TsrunError } from "../errors.js";
import { lazyReadline } from "../builtin.js";
import { writeOut } from "./stdout.js";
import { isHostPlatform } from "../image/platform-spec.js";
import { hostPlatform } from "../image/types.js";

/** commander collector for repeatable options (-e A -e B). */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Subcommands exit on commander errors too (the top-level handler maps them to 125). */
export function subcommand(program: Command, name: string): Command {
  return program.command(name).exitOverride();
}

/** Docker's boolean flag values ("-p=false", "--pause=0", "--sig-proxy=false"). */
export function parseBoolFlag(raw: string): boolean {
  // commander hands "-p=false" over as "=false".
  const value = raw.replace(/^=/, "");
  if (/^(true|1|t|yes)$/i.test(value)) return true;
  if (/^(false|0|f|no)$/i.test(value)) return false;
  throw new TsrunError(`invalid boolean value "${value}"`);
}
/** Docker's prompt; anything but y/Y (or no terminal answer at all) declines. */
export async function confirm(question: string): Promise<boolean> {
  writeOut(question);
  // Loaded here: every other command starts without readline.
  const { createInterface } = lazyReadline();
  const rl = createInterface({ input: process.stdin });
  const answer = await new Promise<string>((resolve) => {
    rl.once("line", resolve);
    rl.once("close", () => resolve(""));
  });
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}


/**
 * Podman's short-name prompt ("Please select an image"), as a numbered list read from the
 * terminal; offered only when stdin and stdout are both terminals, as Podman offers it.
 */
export function terminalSelect(): ((candidates: string[]) => Promise<string>) | undefined {
  if (!process.stdin.isTTY || !process.stdout.isTTY) return undefined;
  return async (candidates) => {
    const { createInterface } = lazyReadline();
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    try {
      writeOut(`? Please select an image:\n${candidates.map((c, i) => `  ${i + 1}) ${c}\n`).join("")}`);
      for (;;) {
        const answer = await new Promise<string | undefined>((resolve) => {
          rl.question(`Enter a number (1-${candidates.length}): `, resolve);
          rl.once("close", () => resolve(undefined));
        });
        if (answer === undefined) throw new TsrunError("no image selected");
        const n = Number(answer.trim());
        const chosen = Number.isInteger(n) ? candidates[n - 1] : candidates.find((c) => c === answer.trim());
        if (chosen) return chosen;
      }
    } finally {
      rl.close();
    }
  };
}

/**
 * --platform of commands on stored images (history, save, load, import): the store keeps one
 * platform per image, the host's, so a spelling of it is taken and another refused in one line.
 */
export function checkHostPlatform(value: string | undefined, command: string): void {
  if (value === undefined) return;
  let ok: boolean;
  try {
    ok = isHostPlatform(value);
  } catch (err) {
    throw new TsrunError(`${command} --platform ${value}: ${(err as Error).message}`);
  }
  const host = hostPlatform();
  if (!ok) throw new TsrunError(`${command} --platform ${value}: the store keeps the host's platform only (${host.os}/${host.architecture})`);
}

/** The cgroup limits `run`/`create` and `update` take, with Docker's flags; "0" (or "") means none. */
export function addResourceOptions(command: Command): Command {
  return command
    .option("--pids-limit <n>", "limit the number of processes (0 or -1: no limit; needs cgroup v2 delegation)")
    .option("-m, --memory <bytes>", "memory limit, e.g. 512m (0: none; needs cgroup v2 delegation)")
    .option("--cpus <n>", "number of CPUs, e.g. 1.5 (0: no limit; needs cgroup v2 delegation)")
    .option("-c, --cpu-shares <n>", "relative CPU weight, 2 to 262144 (0: default; needs cgroup v2 delegation)")
    .option("--cpu-period <us>", "CFS period in microseconds (needs cgroup v2 delegation)")
    .option("--cpu-quota <us>", "CFS quota in microseconds per period (needs cgroup v2 delegation)")
    .option("--cpuset-cpus <list>", 'CPUs the container may use, e.g. 0-1 ("": all; needs cgroup v2 delegation)')
    .option("--cpuset-mems <list>", "memory nodes the container may use (needs cgroup v2 delegation)")
    .option("--memory-swap <bytes>", "memory plus swap, -1 for unlimited swap (needs --memory and cgroup v2 delegation)")
    .option("--memory-reservation <bytes>", "memory soft limit (needs cgroup v2 delegation)");
}
