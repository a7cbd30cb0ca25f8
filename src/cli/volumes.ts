// `tsrun volume create|ls|inspect|rm|prune`.
import type { Command } from "commander";
import { Tsrun } from "../tsrun.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { collect, confirm } from "./util.js";
import { formatData, formatRows, humanSize, labelHeader, labelsColumn, table } from "./output.js";
import { labelMatcher } from "../container/filters.js";
import { parseKeyValues } from "../container/run.js";
import type { VolumeRecord } from "../container/volumes.js";
import { treeSize } from "../system/df.js";
import { parseLabels } from "./run.js";
import { writeOut } from "./stdout.js";

export function registerVolumes(program: Command): void {
  const volume = program.command("volume").description("Manage volumes");
  volume
    .command("create")
    .argument("[name]")
    .option("-l, --label <KEY=VALUE>", "set a label", collect, [])
    .option("-d, --driver <name>", "volume driver: local only", "local")
    .option("-o, --opt <KEY=VALUE>", "local driver options: type=tmpfs (o=size=64m,...), or o=bind with device=/host/dir", collect, [])
    .action(async (name: string | undefined, o: { label: string[]; driver: string; opt: string[] }) => {
      if (o.driver !== "local") throw new TsrunError(`volume driver ${o.driver} is not supported: volumes are local`);
      const options = parseKeyValues(o.opt, "option");
      const { record } = await new Tsrun().containers.volumes.create(name, parseLabels(o.label), false, options);
      writeOut(`${record.Name}\n`);
    });
  volume
    .command("ls")
    .alias("list")
    .option("-q, --quiet", "only volume names", false)
    .option("-f, --filter <filter>", "dangling=true|false, driver=local, label=KEY[=VALUE], name=PART (repeatable)", collect, [])
    .option("--format <format>", "table, json, or a Go template (e.g. {{.Name}})")
    .action((o: { quiet: boolean; filter: string[]; format?: string }) => {
      const t = new Tsrun();
      const keep = volumeFilter(o.filter, (name) => t.containers.volumeUsers(name).length > 0);
      const list = t.containers.volumes.list().filter(keep);
      if (o.quiet) for (const v of list) writeOut(`${v.Name}\n`);
      else if (o.format) writeOut(formatRows(o.format, list.map(volumeRow), VOLUME_HEADERS));
      else writeOut(table([["DRIVER", "VOLUME NAME"], ...list.map((v) => [v.Driver, v.Name])]));
    });
  volume
    .command("inspect")
    .argument("<name...>")
    .option("-f, --format <format>", "json, or a Go template (e.g. {{.Mountpoint}})")
    .action((names: string[], o: { format?: string }) => {
      const volumes = new Tsrun().containers.volumes;
      const records = names.map((n) => volumes.inspect(n));
      if (o.format) for (const r of records) writeOut(formatData(o.format, r));
      else writeOut(JSON.stringify(records, null, 4) + "\n");
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
    .option("--filter <filter>", "label=KEY[=VALUE], label!=KEY[=VALUE], all=true", collect, [])
    .action(async (o: { all: boolean; force: boolean; filter: string[] }) => {
      const all = o.all || o.filter.includes("all=true") || o.filter.includes("all=1");
      if (!o.force) {
        // Docker's question.
        const what = all ? "all local volumes not used by at least one container" : "anonymous local volumes not used by at least one container";
        if (!(await confirm(`WARNING! This will remove ${what}.\nAre you sure you want to continue? [y/N] `))) return;
      }
      const t = new Tsrun();
      const volumes = t.containers.volumes;
      const sizes = new Map(volumes.list().map((v) => [v.Name, treeSize(volumes.dataDir(v.Name))]));
      const removed = await volumes.prune(o.all, (v) => t.containers.volumeUsers(v), o.filter);
      writeOut(removed.length ? `Deleted Volumes:\n${removed.join("\n")}\n\n` : "");
      writeOut(`Total reclaimed space: ${humanSize(removed.reduce((n, v) => n + (sizes.get(v) ?? 0), 0))}\n`);
    });
}

/** docker/cli's volume formatter fields (keys sorted, as its json prints them); N/A where Docker has no value locally. */
function volumeRow(v: VolumeRecord): Record<string, unknown> {
  const row = {
    Availability: "N/A",
    Driver: v.Driver,
    Group: "N/A",
    Labels: labelsColumn(v.Labels ?? {}),
    Links: "N/A",
    Mountpoint: v.Mountpoint,
    Name: v.Name,
    Scope: v.Scope,
    Size: "N/A",
    Status: "N/A",
  };
  // A method, as docker/cli's {{.Label "KEY"}}: not enumerable, so `json` leaves it out.
  Object.defineProperty(row, "Label", { value: (name: string): string => v.Labels?.[name] ?? "", enumerable: false });
  return row;
}

const VOLUME_HEADERS = {
  Availability: "AVAILABILITY",
  Driver: "DRIVER",
  Group: "GROUP",
  Labels: "LABELS",
  Links: "LINKS",
  Mountpoint: "MOUNTPOINT",
  Name: "VOLUME NAME",
  Scope: "SCOPE",
  Size: "SIZE",
  Status: "STATUS",
  Label: labelHeader,
};

/** `volume ls --filter`: dangling, driver, label (every one must match), name (part of it); values of one key are alternatives. */
function volumeFilter(filters: string[], used: (name: string) => boolean): (v: VolumeRecord) => boolean {
  const byKey = new Map<string, ((v: VolumeRecord) => boolean)[]>();
  for (const f of filters) {
    const eq = f.indexOf("=");
    if (eq < 0) throw new TsrunError(`bad format of filter "${f}" (expected name=value)`);
    const key = f.slice(0, eq).toLowerCase();
    const value = f.slice(eq + 1);
    let check: (v: VolumeRecord) => boolean;
    if (key === "dangling") {
      if (!["true", "false", "1", "0"].includes(value)) throw new TsrunError(`invalid filter 'dangling=${value}'`);
      const dangling = value === "true" || value === "1";
      check = (v) => used(v.Name) !== dangling;
    } else if (key === "driver") {
      check = (v) => v.Driver === value;
    } else if (key === "name") {
      check = (v) => v.Name.includes(value);
    } else if (key === "label") {
      const matches = labelMatcher(value);
      check = (v) => matches(v.Labels ?? {});
    } else {
      throw new TsrunError(`invalid filter '${key}'`);
    }
    const group = key === "label" ? f : key;
    byKey.set(group, [...(byKey.get(group) ?? []), check]);
  }
  return (v) => [...byKey.values()].every((alternatives) => alternatives.some((c) => c(v)));
}
