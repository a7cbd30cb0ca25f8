// Image commands: import, images, inspect, tag, rmi, history, image prune, and the `image`
// group (image ls/rm/inspect/tag/history/prune/import) Docker has beside them. Output follows the
// Docker CLI: its table columns, its --format fields and headers, its JSON shapes.
import { Option, type Command } from "commander";
import { Tsrun, type ImageSummary } from "../tsrun.js";
import { compileGlob } from "../build/path-patterns.js";
import { checkHostPlatform, collect, confirm } from "./util.js";
import { pruneFilter } from "../container/filters.js";
import { applyChanges } from "../image/config-changes.js";
import { ago, formatRows, goTimeString, humanSize, rfc3339Local, shortId, templateError } from "./output.js";
import { compileTemplate } from "../format/template.js";
import { inspectContainer, inspectImage } from "../image/inspect.js";
import { imageHistory } from "../image/history.js";
import { findImage, pruneImages, removeImage, tagImage } from "../image/remove.js";
import { parseReference, repositoryName, ReferenceError } from "../image/reference.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { writeOut } from "./stdout.js";

export async function importCommand(
  source: string,
  reference: string | undefined,
  o: { message?: string; change: string[]; quiet: boolean },
): Promise<void> {
  // Validate the changes before reading any input.
  const config = applyChanges({}, o.change);
  const image = await new Tsrun().importImage({ source, reference, message: o.message, config });
  writeOut(`${image.id}\n`);
}

// ---------------------------------------------------------------------------------------------
// --format output

// ---------------------------------------------------------------------------------------------
// images

interface ImagesFlags {
  all: boolean;
  quiet: boolean;
  digests: boolean;
  trunc: boolean;
  format?: string;
  filter: string[];
}

const IMAGE_HEADERS = {
  ID: "IMAGE ID",
  Repository: "REPOSITORY",
  Tag: "TAG",
  Digest: "DIGEST",
  CreatedSince: "CREATED",
  CreatedAt: "CREATED AT",
  Size: "SIZE",
  Containers: "CONTAINERS",
  SharedSize: "SHARED SIZE",
  UniqueSize: "UNIQUE SIZE",
  VirtualSize: "VIRTUAL SIZE",
};

/** Keeps rows whose repository (and tag, when given) match `docker images REPOSITORY[:TAG]`. */
function matchesReference(filter: string): (row: { repository: string; tag: string }) => boolean {
  let repository: string;
  let tag: string | undefined;
  try {
    const slash = filter.lastIndexOf("/");
    const colon = filter.lastIndexOf(":");
    const ref = parseReference(filter);
    repository = repositoryName(ref);
    tag = colon > slash ? ref.tag : undefined;
  } catch (err) {
    if (err instanceof ReferenceError) throw new TsrunError(err.message);
    throw err;
  }
  return (row) => row.repository === repository && (tag === undefined || row.tag === tag);
}

/**
 * `images --filter`, as the Docker daemon applies them: dangling=true|false, reference=PATTERN
 * (path.Match on the familiar repo:tag, or on the repo alone; several are OR'ed),
 * label=KEY[=VALUE] (all must match), before=IMAGE and since=IMAGE (by creation time).
 */
function applyImageFilters(t: Tsrun, rows: ImageSummary[], filters: readonly string[]): ImageSummary[] {
  const references: RegExp[] = [];
  let out = rows;
  for (const f of filters) {
    const eq = f.indexOf("=");
    if (eq <= 0) throw new TsrunError(`bad format of filter (expected name=value): ${f}`);
    const key = f.slice(0, eq).toLowerCase();
    const value = f.slice(eq + 1);
    switch (key) {
      case "dangling": {
        if (!/^(true|false|1|0)$/i.test(value)) throw new TsrunError(`invalid filter 'dangling=${value}'`);
        const dangling = /^(true|1)$/i.test(value);
        out = out.filter((r) => r.dangling === dangling);
        break;
      }
      case "reference":
        try {
          references.push(compileGlob(value));
        } catch {
          throw new TsrunError(`invalid filter 'reference=${value}': bad pattern`);
        }
        break;
      case "label": {
        const [k, v] = value.split(/=(.*)/s, 2) as [string, string | undefined];
        out = out.filter((r) => k in r.labels && (v === undefined || r.labels[k] === v));
        break;
      }
      case "before":
      case "since": {
        let created: string;
        try {
          const id = findImage(t.store, value).id;
          created = rows.find((r) => r.id === id)?.created ?? "";
        } catch (err) {
          if (err instanceof NotFoundError) throw new TsrunError(`invalid filter '${key}=${value}': No such image: ${value}`);
          throw err;
        }
        out = out.filter((r) => (key === "before" ? r.created < created : r.created > created));
        break;
      }
      default:
        throw new TsrunError(`invalid filter '${key}'`);
    }
  }
  if (references.length > 0) {
    out = out.filter((r) => {
      if (r.repository === "<none>") return false;
      const familiar = [`${r.displayRepository}:${r.tag}`, r.displayRepository];
      return references.some((re) => familiar.some((name) => re.test(name)));
    });
  }
  return out;
}

export function imagesCommand(filter: string | undefined, o: ImagesFlags): void {
  const t = new Tsrun();
  let rows = applyImageFilters(t, t.listImages(), o.filter);
  if (filter !== undefined) rows = rows.filter(matchesReference(filter));
  const id = (full: string): string => (o.trunc ? shortId(full) : full);
  if (o.quiet) {
    const seen = new Set<string>();
    for (const r of rows) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      writeOut(`${id(r.id)}\n`);
    }
    return;
  }
  // Keys in sorted order: Docker's `json` of an image row is a map, printed sorted.
  const data = rows.map((r) => ({
    Containers: "N/A",
    // A getter: the zone name needs ICU, whose first use costs tens of milliseconds, and the
    // default table does not show this field.
    get CreatedAt(): string {
      return goTimeString(r.created);
    },
    CreatedSince: ago(r.created),
    Digest: r.digest,
    ID: id(r.id),
    Repository: r.displayRepository,
    SharedSize: "N/A",
    Size: humanSize(r.size),
    Tag: r.tag,
    UniqueSize: "N/A",
    VirtualSize: humanSize(r.size),
  }));
  const format =
    o.format && o.format !== "table"
      ? o.format
      : `table {{.Repository}}\t{{.Tag}}\t${o.digests ? "{{.Digest}}\t" : ""}{{.ID}}\t{{.CreatedSince}}\t{{.Size}}`;
  writeOut(formatRows(format, data, IMAGE_HEADERS));
}

// ---------------------------------------------------------------------------------------------
// inspect

type InspectType = "image" | "container";

function inspectOne(t: Tsrun, name: string, type: InspectType | undefined): Record<string, unknown> {
  if (type !== "image") {
    try {
      return inspectContainer(t.containers, t.containers.get(name));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      if (type === "container") throw new NotFoundError(`No such container: ${name}`);
    }
  }
  try {
    return inspectImage(t.store, findImage(t.store, name));
  } catch (err) {
    if (err instanceof NotFoundError && type === undefined) throw new NotFoundError(`No such object: ${name}`);
    throw err;
  }
}

export function inspectCommand(names: string[], o: { format?: string; type?: string }): void {
  if (o.type !== undefined && o.type !== "image" && o.type !== "container") {
    throw new TsrunError(`"${o.type}" is not a valid value for --type: expected image or container`);
  }
  const type = o.type as InspectType | undefined;
  let template;
  try {
    template = o.format ? compileTemplate(o.format) : undefined;
  } catch (err) {
    templateError(err);
  }
  const t = new Tsrun();
  const found: Record<string, unknown>[] = [];
  const errors: string[] = [];
  for (const name of names) {
    try {
      found.push(inspectOne(t, name, type));
    } catch (err) {
      if (!(err instanceof TsrunError)) throw err;
      errors.push(err.message);
    }
  }
  if (template) {
    let out = "";
    try {
      for (const item of found) out += `${template.execute(item)}\n`;
    } catch (err) {
      templateError(err);
    }
    writeOut(out);
  } else {
    writeOut(`${JSON.stringify(found, null, 4)}\n`);
  }
  if (errors.length > 0) {
    for (const e of errors.slice(0, -1)) process.stderr.write(`Error: ${e}\n`);
    throw new TsrunError(errors[errors.length - 1] as string);
  }
}

// ---------------------------------------------------------------------------------------------
// history

const HISTORY_HEADERS = { ID: "IMAGE", CreatedSince: "CREATED", CreatedAt: "CREATED AT", CreatedBy: "CREATED BY", Size: "SIZE", Comment: "COMMENT" };

/** Docker's stringutils.Ellipsis: at most n characters, the last one an ellipsis. */
function ellipsis(s: string, n: number): string {
  const chars = [...s];
  return chars.length <= n ? s : `${chars.slice(0, n - 1).join("")}…`;
}

export function historyCommand(name: string, o: { trunc: boolean; quiet: boolean; human: boolean; format?: string }): void {
  const t = new Tsrun();
  const rows = imageHistory(t.store, findImage(t.store, name));
  const id = (full: string): string => (full === "<missing>" || !o.trunc ? full : shortId(full));
  if (o.quiet) {
    for (const r of rows) writeOut(`${id(r.id)}\n`);
    return;
  }
  const data = rows.map((r) => {
    const createdBy = r.createdBy.replace(/\t/g, " ");
    // Keys in sorted order: Docker's `json` of a history row is a map, printed sorted.
    return {
      Comment: r.comment,
      CreatedAt: rfc3339Local(r.created),
      CreatedBy: o.trunc ? ellipsis(createdBy, 45) : createdBy,
      CreatedSince: o.human ? ago(r.created) : rfc3339Local(r.created),
      ID: id(r.id),
      Size: o.human ? humanSize(r.size) : String(r.size),
    };
  });
  const format = o.format && o.format !== "table" ? o.format : "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
  writeOut(formatRows(format, data, HISTORY_HEADERS));
}

// ---------------------------------------------------------------------------------------------
// rmi, tag, prune

export async function rmiCommand(names: string[], o: { force: boolean }): Promise<void> {
  const t = new Tsrun();
  const errors: string[] = [];
  let onlyMissing = true;
  for (const name of names) {
    try {
      for (const line of await removeImage(t.containers, name, o.force)) writeOut(`${line}\n`);
    } catch (err) {
      if (!(err instanceof TsrunError)) throw err;
      if (!(err instanceof NotFoundError)) onlyMissing = false;
      errors.push(err.message);
    }
  }
  // docker rmi -f: images that do not exist are reported but do not fail the command.
  if (errors.length > 0 && o.force && onlyMissing) {
    for (const e of errors) process.stderr.write(`Error: ${e}\n`);
    return;
  }
  if (errors.length > 0) {
    for (const e of errors.slice(0, -1)) process.stderr.write(`Error: ${e}\n`);
    throw new TsrunError(errors[errors.length - 1] as string);
  }
}

export async function pruneCommand(o: { all: boolean; force: boolean; filter: string[] }): Promise<void> {
  // Bad filters fail before the question.
  pruneFilter(o.filter);
  if (!o.force) {
    const what = o.all ? "all images without at least one container associated to them" : "all dangling images";
    if (!(await confirm(`WARNING! This will remove ${what}.\nAre you sure you want to continue? [y/N] `))) return;
  }
  const result = await pruneImages(new Tsrun().containers, o.all, o.filter);
  if (result.lines.length > 0) writeOut(`Deleted Images:\n${result.lines.join("\n")}\n\n`);
  writeOut(`Total reclaimed space: ${humanSize(result.reclaimed)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Registration

interface CommandSpec {
  register(parent: Command, name: string): Command;
}

const importSpec: CommandSpec = {
  register: (parent, name) =>
    parent
      .command(name)
      .description("Create an image from a root filesystem tarball (file, - or URL)")
      .argument("<source>")
      .argument("[reference]")
      .option("-m, --message <text>", "commit message for the imported image")
      .option("-c, --change <instruction>", "apply a Dockerfile instruction to the image config", collect, [])
      .option("-q, --quiet", "print only the image ID", false)
      .option("--platform <os/arch>", "only the host's: the image is recorded for it")
      .action(async (source: string, reference: string | undefined, o: { message?: string; change: string[]; quiet: boolean; platform?: string }) => {
        checkHostPlatform(o.platform, "import");
        await importCommand(source, reference, o);
      }),
};

const imagesSpec: CommandSpec = {
  register: (parent, name) =>
    parent
      .command(name)
      .description("List images")
      .argument("[repository[:tag]]")
      .option("-a, --all", "show all images (tsrun keeps no intermediate images)", false)
      .option("-q, --quiet", "only show image IDs", false)
      .option("--digests", "show digests", false)
      .option("--no-trunc", "do not truncate output")
      .option("--format <format>", "format output: table, json, or a Go template (fields ID, Repository, Tag, Digest, CreatedSince, CreatedAt, Size)")
      .option("-f, --filter <filter>", "filter output (dangling=, reference=, label=, before=, since=)", collect, [])
      .action((filter: string | undefined, o: ImagesFlags) => {
        imagesCommand(filter, o);
      }),
};

const inspectOptions = (cmd: Command): Command =>
  cmd.option("-f, --format <template>", "format the output using a Go template").option("-s, --size", "display total file sizes (accepted; sizes are always shown)", false);

const historySpec: CommandSpec = {
  register: (parent, name) =>
    parent
      .command(name)
      .description("Show the history of an image")
      .argument("<image>")
      .option("--no-trunc", "do not truncate output")
      .option("-q, --quiet", "only show image IDs", false)
      .option("-H, --human [bool]", "print sizes and dates in human readable format (default true)", (v: string) => !/^(false|0)$/i.test(v), true)
      .option("--format <format>", "format output: table, json, or a Go template (fields ID, CreatedSince, CreatedAt, CreatedBy, Size, Comment)")
      .option("--platform <os/arch>", "only the host's (the store keeps one platform per image)")
      .action((image: string, o: { trunc: boolean; quiet: boolean; human: boolean; format?: string; platform?: string }) => {
        checkHostPlatform(o.platform, "history");
        historyCommand(image, o);
      }),
};

const rmiSpec: CommandSpec = {
  register: (parent, name) =>
    parent
      .command(name)
      .description("Remove one or more images")
      .argument("<image...>")
      .option("-f, --force", "untag an image a container uses (it is kept for the container)", false)
      .addOption(new Option("--no-prune", "accepted: untagged parent images are not kept apart").hideHelp())
      .option("--platform <os/arch>", "only the host's (the store keeps one platform per image)")
      .action(async (names: string[], o: { force: boolean; platform?: string }) => {
        checkHostPlatform(o.platform, "rmi");
        await rmiCommand(names, o);
      }),
};

const tagSpec: CommandSpec = {
  register: (parent, name) =>
    parent
      .command(name)
      .description("Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
      .argument("<source>")
      .argument("<target>")
      .action(async (source: string, target: string) => {
        await tagImage(new Tsrun().store, source, target);
      }),
};

/** `container inspect`: inspect for containers only. */
export function registerContainerInspect(container: Command): void {
  inspectOptions(container.command("inspect").description("Display detailed information on one or more containers").argument("<container...>")).action(
    (names: string[], o: { format?: string }) => inspectCommand(names, { ...o, type: "container" }),
  );
}

/** The `image` group, shared with other command files that add subcommands (save, load, ...). */
export function imageGroup(program: Command): Command {
  return program.commands.find((c) => c.name() === "image") ?? program.command("image").description("Manage images");
}

export function registerImages(program: Command): void {
  importSpec.register(program, "import");
  imagesSpec.register(program, "images");
  inspectOptions(
    program
      .command("inspect")
      .description("Return low-level information on images and containers")
      .argument("<name...>")
      .option("--type <type>", "only inspect objects of this type (image or container)"),
  ).action((names: string[], o: { format?: string; type?: string }) => inspectCommand(names, o));
  historySpec.register(program, "history");
  rmiSpec.register(program, "rmi");
  tagSpec.register(program, "tag");

  const image = imageGroup(program);
  importSpec.register(image, "import");
  imagesSpec.register(image, "ls").alias("list");
  inspectOptions(image.command("inspect").description("Display detailed information on one or more images").argument("<image...>")).action(
    (names: string[], o: { format?: string }) => inspectCommand(names, { ...o, type: "image" }),
  );
  historySpec.register(image, "history");
  rmiSpec.register(image, "rm").alias("remove");
  tagSpec.register(image, "tag");
  image
    .command("prune")
    .description("Remove unused images (dangling ones; with -a every image no container uses)")
    .option("-a, --all", "remove all images no container uses, not just dangling ones", false)
    .option("-f, --force", "do not prompt for confirmation", false)
    .option("--filter <filter>", "until=TIME (the image's creation), label=KEY[=VALUE], label!=KEY[=VALUE]", collect, [])
    .action(async (o: { all: boolean; force: boolean; filter: string[] }) => {
      await pruneCommand(o);
    });
}

