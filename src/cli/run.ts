// `tsrun run`.
import { Option, type Command } from "commander";
import { Tsrun } from "../index.js";
import { TsrunError } from "../errors.js";
import { collect } from "./util.js";

export interface RunFlags {
  interactive: boolean;
  tty: boolean;
  detach: boolean;
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

export function parseLabels(list: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const l of list) {
    const eq = l.indexOf("=");
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? "" : l.slice(eq + 1);
  }
  return labels;
}

export async function runCommand(image: string, command: string[], o: RunFlags): Promise<number> {
  if (o.name === "") throw new TsrunError('invalid container name ""');
  if (o.detach) {
    const record = await new Tsrun().runDetached({
      image,
      args: command,
      name: o.name,
      env: o.env,
      envFiles: o.envFile,
      workdir: o.workdir,
      user: o.user,
      entrypoint: o.entrypoint,
      hostname: o.hostname,
      readOnly: o.readOnly,
      autoRemove: o.rm,
      tty: o.tty,
      interactive: o.interactive,
      network: o.network,
      labels: parseLabels(o.label),
    });
    process.stdout.write(`${record.id}\n`);
    return 0;
  }
  return new Tsrun().run({
    image,
    args: command,
    name: o.name,
    env: o.env,
    envFiles: o.envFile,
    workdir: o.workdir,
    user: o.user,
    entrypoint: o.entrypoint,
    hostname: o.hostname,
    readOnly: o.readOnly,
    autoRemove: o.rm,
    tty: o.tty,
    interactive: o.interactive,
    network: o.network,
    labels: parseLabels(o.label),
  });
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("Run a command in a new container")
    .argument("<image>")
    .argument("[command...]")
    .helpOption("--help")
    .option("-i, --interactive", "keep standard input open", false)
    .option("-t, --tty", "allocate a pseudo-terminal", false)
    .option("-d, --detach", "run in the background and print the container ID", false)
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
      process.exit(await runCommand(image, command, o));
    });
}
