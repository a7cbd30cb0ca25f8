// `system check|df|prune|info`, `info`, `version` and `container prune`: the store as a whole.
// Output follows Docker where Docker has the command (df columns and --format fields, prune's
// prompt and "Deleted ..." sections, version's Client section); `system check` is Podman's.
import type { Command } from "commander";
import { Tsrun } from "../tsrun.js";
import { collect, confirm } from "./util.js";
import { pruneFilter } from "../container/filters.js";
import { ago, formatData, formatRows, humanSize, shortId, table } from "./output.js";
import { familiarRepository, splitName } from "../image/reference.js";
import type { CheckReport } from "../system/check.js";
import type { DiskUsage } from "../system/df.js";
import type { SystemInfo } from "../system/info.js";
import type { VersionInfo } from "../system/version.js";
import { writeOut } from "./stdout.js";

// ---------------------------------------------------------------------------------------------
// system check

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function formatCheckReport(report: CheckReport, repair: boolean): string {
  const lines: string[] = [];
  const c = report.checked;
  const cache = c.buildCache > 0 ? `, ${plural(c.buildCache, "build cache entry").replace(/entrys$/, "entries")}` : "";
  lines.push(`Checked ${plural(c.images, "image")}, ${plural(c.containers, "container")}, ${plural(c.volumes, "volume")}, ${plural(c.layers, "layer")}, ${plural(c.blobs, "blob")}${cache}.`);
  if (report.inProgress.length > 0) lines.push(`In progress (not checked): ${report.inProgress.join(", ")}.`);
  for (const f of report.findings) {
    const outcome = f.repaired ? ` -> ${f.repaired}` : f.unrepaired && repair ? ` -> not repaired: ${f.unrepaired}` : "";
    lines.push(`${f.kind.padEnd(9)} ${f.subject}: ${f.problem}${outcome}`);
  }
  const r = report.reclaimable;
  if (r.blobs + r.layers > 0) {
    const what = `${plural(r.blobs, "blob")} and ${plural(r.layers, "layer")} nothing refers to (${humanSize(r.bytes)})`;
    lines.push(r.removed ? `Removed ${what}.` : `Reclaimable: ${what}; tsrun system prune or system check --repair removes them.`);
  }
  const problems = report.findings.length;
  const repaired = report.findings.filter((f) => f.repaired).length;
  if (problems === 0) lines.push("No problems found.");
  else if (repair) lines.push(`${plural(problems, "problem")} found, ${repaired} repaired.`);
  else lines.push(`${plural(problems, "problem")} found: tsrun system check --repair fixes what can be fixed.`);
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// system df

const DF_HEADERS = { Type: "TYPE", TotalCount: "TOTAL", Active: "ACTIVE", Size: "SIZE", Reclaimable: "RECLAIMABLE" };

/** "11.63MB (70%)" as docker/cli prints reclaimable space. */
function reclaimable(bytes: number, total: number): string {
  const size = humanSize(bytes, 4);
  return total > 0 ? `${size} (${Math.floor((bytes * 100) / total)}%)` : size;
}

function dfRows(usage: DiskUsage): Record<string, string>[] {
  return usage.rows.map((r) => ({
    Active: String(r.active),
    Reclaimable: r.type === "Build Cache" ? humanSize(r.reclaimable, 4) : reclaimable(r.reclaimable, r.size),
    Size: humanSize(r.size, 4),
    TotalCount: String(r.total),
    Type: r.type,
  }));
}

function dfVerbose(usage: DiskUsage): string {
  const out: string[] = ["Images space usage:", ""];
  const images: string[][] = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"]];
  for (const u of usage.images) {
    const names = u.image.names.length > 0 ? u.image.names : [""];
    for (const name of names) {
      const { repository, tag } = name ? splitName(name) : { repository: "<none>", tag: "<none>" };
      images.push([
        name ? familiarRepository(repository) : "<none>",
        tag,
        shortId(u.image.id),
        ago(u.image.added),
        humanSize(u.size, 4),
        humanSize(u.sharedSize, 4),
        humanSize(u.size - u.sharedSize, 4),
        String(u.containers),
      ]);
    }
  }
  out.push(table(images).trimEnd(), "", "Containers space usage:", "");
  const containers: string[][] = [["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"]];
  for (const u of usage.containers) {
    const c = u.container;
    const command = [c.path, ...c.args].join(" ");
    containers.push([
      c.id.slice(0, 12),
      c.imageName.startsWith("sha256:") ? shortId(c.imageName) : familiarRepository(c.imageName),
      JSON.stringify(command.length > 20 ? `${command.slice(0, 19)}…` : command),
      String(u.volumes),
      humanSize(u.size, 4),
      ago(c.created),
      c.state.status === "running" ? `Up ${ago(c.state.startedAt).replace(/ ago$/, "")}` : c.state.status === "created" ? "Created" : `Exited (${c.state.exitCode})`,
      c.name,
    ]);
  }
  out.push(table(containers).trimEnd(), "", "Local Volumes space usage:", "");
  const volumes: string[][] = [["VOLUME NAME", "LINKS", "SIZE"]];
  for (const u of usage.volumes) volumes.push([u.volume.Name, String(u.links), humanSize(u.size, 4)]);
  const cacheRow = usage.rows.find((r) => r.type === "Build Cache");
  const cache: string[][] = [["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"]];
  for (const r of usage.buildCache) {
    // The cache does not record when an entry was last hit: LAST USED stays empty, as Docker's for a record never used.
    cache.push([r.id.replace(/^sha256:/, "").slice(0, 12), r.type, humanSize(r.size, 4), r.created ? ago(r.created) : "", "", String(r.usage), String(r.shared)]);
  }
  out.push(table(volumes).trimEnd(), "", `Build cache usage: ${humanSize(cacheRow?.size ?? 0, 4)}`, "", table(cache).trimEnd());
  return out.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// info and version

function mapsText(maps: SystemInfo["Host"]["IDMappings"]["UIDMap"]): string {
  return maps.map((m) => (m.Size === 1 ? `${m.ContainerID}->${m.HostID}` : `${m.ContainerID}-${m.ContainerID + m.Size - 1}->${m.HostID}-${m.HostID + m.Size - 1}`)).join(", ");
}

const yesNo = (b: boolean): string => (b ? "yes" : "no");

export function formatInfo(info: SystemInfo): string {
  const h = info.Host;
  const s = info.Store;
  const cg = h.Cgroups;
  const lines = [
    "Client:",
    ` Version:          ${info.Version.Version}`,
    ` Node.js:          ${info.Version.NodeVersion}`,
    ` OS/Arch:          ${info.Version.OsArch}`,
    "",
    "Store:",
    ` Root:             ${s.GraphRoot}`,
    ` Run root:         ${s.RunRoot}`,
    ` Storage driver:   ${s.GraphDriverName}${h.Features.OverlayUserxattr ? " (userxattr)" : " (NOT usable here: overlay with userxattr failed)"}`,
    ` Images:           ${s.ImageStore.Number}`,
    ` Containers:       ${s.ContainerStore.Number} (running ${s.ContainerStore.Running}, stopped ${s.ContainerStore.Stopped})`,
    ` Volumes:          ${s.VolumeStore.Number}`,
    "",
    "Host:",
    ` Kernel:           ${h.Kernel}`,
    ` Operating system: ${h.Distribution || h.Os}`,
    ` CPUs:             ${h.CPUs}`,
    ` Total memory:     ${humanSize(h.MemTotal, 4)}`,
    ` Rootless:         ${h.Rootless}`,
    ` UID mapping:      ${mapsText(h.IDMappings.UIDMap)}`,
    ` GID mapping:      ${mapsText(h.IDMappings.GIDMap)}`,
    ` newuidmap:        ${h.NewUIDMap || "missing (install the uidmap package)"}`,
    ` Network helper:   ${h.Network.Executable ? `${h.Network.Executable} (${h.Network.Version || "version unknown"})` : "missing (install the passt package)"}`,
    ` /dev/net/tun:     ${h.Network.TunUsable ? "usable" : "not usable by this user (the private network needs it 0666)"}`,
    ` Cgroups:          ${cg.Version}${cg.Version === "v2" ? `, ${cg.Delegated ? `delegated (${cg.Controllers.join(" ") || "no controllers"})` : "not delegated"}` : ""}${cg.Delegated ? "" : ": --memory, --cpus and --pids-limit cannot be enforced"}`,
    ` openat2:          ${yesNo(h.Features.Openat2)}`,
  ];
  return lines.join("\n") + "\n";
}

export function formatVersion(v: VersionInfo): string {
  const c = v.Client;
  return ["Client:", ` Version:     ${c.Version}`, ` Node.js:     ${c.NodeVersion}`, ` OS/Arch:     ${c.OsArch}`, ` Kernel:      ${c.KernelVersion}`].join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Registration

async function infoCommand(o: { format?: string }): Promise<void> {
  const info = await new Tsrun().info();
  writeOut(o.format ? formatData(o.format, info) : formatInfo(info));
}

export function registerSystem(program: Command): void {
  const system = program.command("system").description("Manage tsrun's store");

  system
    .command("check")
    .description("Check the store's consistency (blobs, layers, images, containers, volumes, leftovers)")
    .option("-r, --repair", "remove what is garbage or damaged beyond repair, restore what can be restored", false)
    .option("-f, --force", "with --repair: also remove containers that are damaged or use a damaged image", false)
    .option("-q, --quick", "do not hash layer blobs (the slow part)", false)
    .option("--format <format>", "json, or a Go template over the report")
    .action(async (o: { repair: boolean; force: boolean; quick: boolean; format?: string }) => {
      const report = await new Tsrun().checkStore({ repair: o.repair, force: o.force, quick: o.quick });
      writeOut(o.format ? formatData(o.format, report) : formatCheckReport(report, o.repair));
      if (!report.ok) process.exitCode = 1;
    });

  system
    .command("df")
    .description("Show disk usage")
    .option("-v, --verbose", "show detailed information on space usage", false)
    .option("--format <format>", "table, json, or a Go template (fields Type, TotalCount, Active, Size, Reclaimable)")
    .action((o: { verbose: boolean; format?: string }) => {
      const usage = new Tsrun().diskUsage();
      if (o.verbose && !o.format) {
        writeOut(dfVerbose(usage));
        return;
      }
      const format = o.format && o.format !== "table" ? o.format : "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
      writeOut(formatRows(format, dfRows(usage), DF_HEADERS));
    });

  system
    .command("prune")
    .description("Remove stopped containers, dangling images and build cache (with -a every unused image and all build cache) and, with --volumes, unused anonymous volumes")
    .option("-a, --all", "remove all unused images, not just dangling ones", false)
    .option("--volumes", "prune anonymous volumes", false)
    .option("-f, --force", "do not prompt for confirmation", false)
    .option("--filter <filter>", "until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE] (a label filter leaves the build cache alone)", collect, [])
    .action(async (o: { all: boolean; volumes: boolean; force: boolean; filter: string[] }) => {
      // Bad filters fail before the question.
      pruneFilter(o.filter);
      if (!o.force) {
        const what = [
          "  - all stopped containers",
          ...(o.volumes ? ["  - all anonymous volumes not used by at least one container"] : []),
          o.all ? "  - all images without at least one container associated to them" : "  - all dangling images",
          o.all ? "  - all build cache" : "  - unused build cache",
        ];
        if (!(await confirm(`WARNING! This will remove:\n${what.join("\n")}\n\nAre you sure you want to continue? [y/N] `))) return;
      }
      const r = await new Tsrun().pruneSystem({ all: o.all, volumes: o.volumes, filters: o.filter });
      if (r.containers.length > 0) writeOut(`Deleted Containers:\n${r.containers.join("\n")}\n\n`);
      if (r.volumes.length > 0) writeOut(`Deleted Volumes:\n${r.volumes.join("\n")}\n\n`);
      if (r.images.length > 0) writeOut(`Deleted Images:\n${r.images.join("\n")}\n\n`);
      if (r.buildCache.length > 0) writeOut(`Deleted build cache objects:\n${r.buildCache.join("\n")}\n\n`);
      writeOut(`Total reclaimed space: ${humanSize(r.reclaimed)}\n`);
    });

  system
    .command("info")
    .description("Display system-wide information")
    .option("-f, --format <format>", "json, or a Go template (e.g. {{.Store.GraphRoot}})")
    .action(infoCommand);

  program
    .command("info")
    .description("Display system-wide information")
    .option("-f, --format <format>", "json, or a Go template (e.g. {{.Store.GraphRoot}})")
    .action(infoCommand);

  program
    .command("version")
    .description("Show the tsrun version information")
    .option("-f, --format <format>", "json, or a Go template (e.g. {{.Client.Version}})")
    .action((o: { format?: string }) => {
      const v = new Tsrun().version();
      writeOut(o.format ? formatData(o.format, v) : formatVersion(v));
    });

  const container = program.commands.find((c) => c.name() === "container") ?? program.command("container").description("Manage containers");
  container
    .command("prune")
    .description("Remove all stopped containers")
    .option("-f, --force", "do not prompt for confirmation", false)
    .option("--filter <filter>", "until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE]", collect, [])
    .action(async (o: { force: boolean; filter: string[] }) => {
      // Bad filters fail before the question.
      pruneFilter(o.filter);
      if (!o.force && !(await confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "))) return;
      const r = await new Tsrun().pruneContainers(o.filter);
      if (r.removed.length > 0) writeOut(`Deleted Containers:\n${r.removed.join("\n")}\n\n`);
      writeOut(`Total reclaimed space: ${humanSize(r.reclaimed)}\n`);
    });
}
