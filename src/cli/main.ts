// The command line: commander wiring only. Each command group lives in its own file with a
// register function (loaded on demand, src/cli/groups.ts); commands call the library API
// (src/tsrun.ts) and format its result. Errors become one line on stderr with Docker's exit codes.
import { CommanderError } from "commander";
import { plainSystemErrors, TsrunError } from "../errors.js";
import { normalizeBooleanFlags } from "./flag-syntax.js";
import { groupsFor, newProgram, registerGroups } from "./groups.js";

function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`Error: ${plainSystemErrors(message.split("\n")[0] ?? "")}\n`);
  process.exit(err instanceof TsrunError ? err.exitCode : 125);
}

async function main(): Promise<void> {
  const program = newProgram();
  await registerGroups(program, groupsFor(process.argv));
  await program.parseAsync(normalizeBooleanFlags(program, process.argv));
}

main().catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Help and version exit 0; a usage error is tsrun's error: 125 as in Docker.
    process.exit(err.exitCode === 0 ? 0 : 125);
  }
  fail(err);
});
