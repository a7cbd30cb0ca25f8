// The command line: commander wiring only. Each command group lives in its own file with a
// register function; commands call the library API (src/index.ts) and format its result.
// Errors become one line on stderr with Docker's exit codes.
import { Command, CommanderError } from "commander";
import { plainSystemErrors, TsrunError } from "../errors.js";
import { registerRun } from "./run.js";
import { registerImages } from "./images.js";
import { registerContainers } from "./containers.js";
import { registerVolumes } from "./volumes.js";
import { registerContainerImages } from "./containers-image.js";
import { registerRegistry } from "./registry.js";
import { registerArchive } from "./archive.js";
import { registerBuild, registerBuilder } from "./build.js";
import { normalizeBooleanFlags } from "./flag-syntax.js";
import { registerSystem } from "./system.js";
import { tsrunVersion } from "../system/version.js";
import { registerNetworks } from "./networks.js";

function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`Error: ${plainSystemErrors(message.split("\n")[0] ?? "")}\n`);
  process.exit(err instanceof TsrunError ? err.exitCode : 125);
}

const program = new Command("tsrun")
  .description("Rootless, daemonless containers")
  .version(tsrunVersion(), "-v, --version")
  .enablePositionalOptions()
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(`Error: ${str.replace(/^error: /, "").trimEnd()}\n`) });

// One line per command group.
registerRun(program);
registerImages(program);
registerContainers(program);
registerVolumes(program);
registerContainerImages(program);
registerRegistry(program);
registerArchive(program);
registerBuild(program);
registerBuilder(program);
registerSystem(program);
registerNetworks(program);

program.parseAsync(normalizeBooleanFlags(program, process.argv)).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Help and version exit 0; a usage error is tsrun's error: 125 as in Docker.
    process.exit(err.exitCode === 0 ? 0 : 125);
  }
  fail(err);
});
