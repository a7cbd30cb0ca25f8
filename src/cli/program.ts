// The commander program and running one command line through it: shared by the full CLI
// (main.ts, every command group) and the bundle for `run`/`create` alone (main-run.ts).
import { Command, CommanderError } from "commander";
import { plainSystemErrors, TsrunError } from "../errors.js";
import { normalizeBooleanFlags } from "./flag-syntax.js";
import { tsrunVersion } from "../system/version.js";

export function newProgram(): Command {
  return new Command("tsrun")
    .description("Rootless, daemonless containers")
    .version(tsrunVersion(), "-v, --version")
    .enablePositionalOptions()
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`Error: ${str.replace(/^error: /, "").trimEnd()}\n`) });
}

/** Parses argv with the program and runs the command; errors become one line and an exit code. */
export function runProgram(program: Command, argv: string[]): void {
  // A reader that went away (`tsrun images | head -1`) ends the command quietly, as a write to a
  // closed pipe ends Docker's CLI (SIGPIPE; shells show 141), not with a stack trace. Commands
  // that handle it themselves (run's output copy, save) listen for it and never get here. (A
  // monitor, not a listener on process.stdout: that would create the stream in every command,
  // a few ms of `run`'s start-up.)
  process.on("uncaughtExceptionMonitor", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE" && err.syscall === "write") process.exit(141);
  });
  program.parseAsync(normalizeBooleanFlags(program, argv)).catch(exitOnError);
}

/** Help and version exit 0; a usage error is tsrun's error: 125 as in Docker; others say why. */
export function exitOnError(err: unknown): never {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 125);
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`Error: ${plainSystemErrors(message.split("\n")[0] ?? "")}\n`);
  process.exit(err instanceof TsrunError ? err.exitCode : 125);
}
