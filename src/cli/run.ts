// `tsrun run`.
import { Tsrun } from "../index.js";
import type { RunFlags } from "./main.js";
import { TsrunError } from "../errors.js";

export async function runCommand(image: string, command: string[], o: RunFlags): Promise<number> {
  const labels: Record<string, string> = {};
  for (const l of o.label) {
    const eq = l.indexOf("=");
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? "" : l.slice(eq + 1);
  }
  if (o.name === "") throw new TsrunError("invalid container name \"\"");
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
    labels,
  });
}
