// `tsrun images` and `tsrun import`.
import { Tsrun } from "../index.js";
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
