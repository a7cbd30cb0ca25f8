// The command line: commander wiring only. Each command calls the library API (src/index.ts)
// and formats its result; errors become one line on stderr and Docker's exit codes.
import { Command, CommanderError, Option } from "commander";
import { TsrunError } from "../errors.js";

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function fail(err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`Error: ${message.split("\n")[0]}\n`);
  process.exit(err instanceof TsrunError ? err.exitCode : 125);
}

const program = new Command("tsrun")
  .description("Rootless, daemonless containers")
  .version("0.1.0", "-v, --version")
  .enablePositionalOptions()
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(`Error: ${str.replace(/^error: /, "").trimEnd()}\n`) });

program
  .command("run")
  .description("Run a command in a new container")
  .argument("<image>")
  .argument("[command...]")
  .helpOption("--help")
  .option("-i, --interactive", "keep standard input open", false)
  .option("-t, --tty", "allocate a pseudo-terminal", false)
  .option("--rm", "remove the container when it exits", false)
  .option("--name <name>", "assign a name to the container")
  .option("-e, --env <KEY=VALUE>", "set an environment variable (KEY alone takes the host's)", collect, [])
  .option("--env-file <file>", "read environment variables from a file", collect, [])
  .option("-w, --workdir <dir>", "working directory inside the container")
  .option("-u, --user <user[:group]>", "user name or uid, optionally with group")
  .option("--entrypoint <command>", "override the image's ENTRYPOINT")
  .option("-h, --hostname <name>", "container host name")
  .option("--read-only", "mount the root filesystem read-only", false)
  .addOption(new Option("--network <mode>", "network mode").choices(["none", "host", "private"]).default("private"))
  .option("-l, --label <KEY=VALUE>", "set a label", collect, [])
  .passThroughOptions()
  .action(async (image: string, command: string[], o: RunFlags) => {
    const { runCommand } = await import("./run.js");
    process.exit(await runCommand(image, command, o));
  });

program
  .command("import")
  .description("Create an image from a root filesystem tarball (file, - or URL)")
  .argument("<source>")
  .argument("[reference]")
  .option("-m, --message <text>", "commit message for the imported image")
  .option("-c, --change <instruction>", "apply a Dockerfile instruction to the image config", collect, [])
  .option("-q, --quiet", "print only the image ID", false)
  .action(async (source: string, reference: string | undefined, o: { message?: string; change: string[]; quiet: boolean }) => {
    const { importCommand } = await import("./images.js");
    await importCommand(source, reference, o);
  });

program
  .command("images")
  .description("List images")
  .option("-a, --all", "show all images", false)
  .option("-q, --quiet", "only show image IDs", false)
  .option("--digests", "show digests", false)
  .option("--no-trunc", "do not truncate output")
  .action(async (o: { all: boolean; quiet: boolean; digests: boolean; trunc: boolean }) => {
    const { imagesCommand } = await import("./images.js");
    imagesCommand(o);
  });

export interface RunFlags {
  interactive: boolean;
  tty: boolean;
  rm: boolean;
  name?: string;
  env: string[];
  envFile: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  readOnly: boolean;
  network: "none" | "host" | "private";
  label: string[];
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Help and version exit 0; a usage error is tsrun's error: 125 as in Docker.
    process.exit(err.exitCode === 0 ? 0 : 125);
  }
  fail(err);
});
