// `tsrun images` and `tsrun import`.
import type { Command } from "commander";
import { Tsrun } from "../index.js";
import { collect } from "./util.js";
import { applyChanges } from "../image/config-changes.js";
import { ago, humanSize, shortId, table } from "./output.js";

export async function importCommand(
  source: string,
  reference: string | undefined,
  o: { message?: string; change: string[]; quiet: boolean },
): Promise<void> {
  // Validate the changes before reading any input.
  const config = applyChanges({}, o.change);
  const image = await new Tsrun().importImage({ source, reference, message: o.message, config });
  process.stdout.write(`${image.id}\n`);
}

export function imagesCommand(o: { all: boolean; quiet: boolean; digests: boolean; trunc: boolean }): void {
  const rows = new Tsrun().listImages();
  const id = (full: string): string => (o.trunc ? shortId(full) : full);
  if (o.quiet) {
    const seen = new Set<string>();
    for (const r of rows) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      process.stdout.write(`${id(r.id)}\n`);
    }
    return;
  }
  const header = ["REPOSITORY", "TAG", ...(o.digests ? ["DIGEST"] : []), "IMAGE ID", "CREATED", "SIZE"];
  const body = rows.map((r) => [r.displayRepository, r.tag, ...(o.digests ? [r.digest] : []), id(r.id), ago(r.created), humanSize(r.size)]);
  process.stdout.write(table([header, ...body]));
}

export function registerImages(program: Command): void {
  program
    .command("import")
    .description("Create an image from a root filesystem tarball (file, - or URL)")
    .argument("<source>")
    .argument("[reference]")
    .option("-m, --message <text>", "commit message for the imported image")
    .option("-c, --change <instruction>", "apply a Dockerfile instruction to the image config", collect, [])
    .option("-q, --quiet", "print only the image ID", false)
    .action(async (source: string, reference: string | undefined, o: { message?: string; change: string[]; quiet: boolean }) => {
      await importCommand(source, reference, o);
    });

  program
    .command("images")
    .description("List images")
    .option("-a, --all", "show all images", false)
    .option("-q, --quiet", "only show image IDs", false)
    .option("--digests", "show digests", false)
    .option("--no-trunc", "do not truncate output")
    .action((o: { all: boolean; quiet: boolean; digests: boolean; trunc: boolean }) => {
      imagesCommand(o);
    });
}
