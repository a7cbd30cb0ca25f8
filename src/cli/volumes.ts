// `tsrun volume create|ls|inspect|rm|prune`.
import type { Command } from "commander";
import { Tsrun } from "../tsrun.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { collect } from "./util.js";
import { table } from "./output.js";
import { parseLabels } from "./run.js";
import { writeOut } from "./stdout.js";

export function registerVolumes(program: Command): void {
  const volume = program.command("volume").description("Manage volumes");
  volume
    .command("create")
    .argument("[name]")
    .option("-l, --label <KEY=VALUE>", "set a label", collect, [])
    .action(async (name: string | undefined, o: { label: string[] }) => {
      const { record } = await new Tsrun().containers.volumes.create(name, parseLabels(o.label));
      writeOut(`${record.Name}\n`);
    });
  volume
    .command("ls")
    .alias("list")
    .option("-q, --quiet", "only volume names", false)
    .action((o: { quiet: boolean }) => {
      const list = new Tsrun().containers.volumes.list();
      if (o.quiet) for (const v of list) writeOut(`${v.Name}\n`);
      else writeOut(table([["DRIVER", "VOLUME NAME"], ...list.map((v) => [v.Driver, v.Name])]));
    });
  volume
    .command("inspect")
    .argument("<name...>")
    .action((names: string[]) => {
      const volumes = new Tsrun().containers.volumes;
      writeOut(JSON.stringify(names.map((n) => volumes.inspect(n)), null, 4) + "\n");
    });
  volume
    .command("rm")
    .alias("remove")
    .argument("<name...>")
    .option("-f, --force", "no error for volumes that do not exist (one in use is still refused, as Docker does)", false)
    .action(async (names: string[], o: { force: boolean }) => {
      const t = new Tsrun();
      let failed: TsrunError | undefined;
      for (const n of names) {
        try {
          await t.containers.volumes.remove(n, (v) => t.containers.volumeUsers(v));
          writeOut(`${n}\n`);
        } catch (err) {
          if (!(err instanceof TsrunError)) throw err;
          if (o.force && err instanceof NotFoundError) continue;
          // The others are still removed; the command fails at the end, as Docker's does.
          if (failed) process.stderr.write(`Error: ${failed.message}\n`);
          failed = err;
        }
      }
      if (failed) throw failed;
    });
  volume
    .command("prune")
    .option("-f, --force", "do not prompt", false)
    .option("-a, --all", "remove named volumes too, not only anonymous ones", false)
    .action(async (o: { all: boolean }) => {
      const t = new Tsrun();
      const removed = await t.containers.volumes.prune(o.all, (v) => t.containers.volumeUsers(v));
      writeOut(removed.length ? `Deleted Volumes:\n${removed.join("\n")}\n\n` : "");
      writeOut(`Total reclaimed space: ${removed.length} volume(s)\n`);
    });
}
