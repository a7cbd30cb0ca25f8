// `tsrun save` and `tsrun load`: image archives, with Docker's options and messages.
import { InvalidArgumentError, type Command } from "commander";
import { Tsrun } from "../tsrun.js";
import { TsrunError } from "../errors.js";
import { familiarRepository, splitName } from "../image/reference.js";
import { ARCHIVE_FORMATS, type ArchiveFormat } from "../image/archive/save.js";
import { writeOut } from "./stdout.js";
import { checkHostPlatform } from "./util.js";

function parseFormat(value: string): ArchiveFormat {
  const format = ARCHIVE_FORMATS.find((f) => f === value);
  if (!format) throw new InvalidArgumentError(`unknown format "${value}": use docker-archive or oci-archive`);
  return format;
}

/** "busybox:latest" for docker.io/library/busybox:latest, as Docker prints names. */
function familiarName(name: string): string {
  const { repository, tag } = splitName(name);
  return `${familiarRepository(repository)}:${tag}`;
}

export function registerArchive(program: Command): void {
  program
    .command("save")
    .description("Save one or more images to a tar archive (streamed to STDOUT by default)")
    .argument("<image...>")
    .option("-o, --output <file>", "write to a file instead of STDOUT")
    .option("--format <format>", "docker-archive or oci-archive", parseFormat, "docker-archive" as ArchiveFormat)
    .option("--platform <os/arch>", "only the host's (the store keeps one platform per image)")
    .action(async (images: string[], o: { output?: string; format: ArchiveFormat; platform?: string }) => {
      checkHostPlatform(o.platform, "save");
      if (o.output === undefined && process.stdout.isTTY) {
        throw new TsrunError("cowardly refusing to save to a terminal. Use the -o flag or redirect");
      }
      await new Tsrun().save({ images, format: o.format, output: o.output ?? process.stdout });
    });

  program
    .command("load")
    .description("Load images from a tar archive (docker-archive or oci-archive, compressed or not), an image layout directory (OCI or dir, as podman saves them) or STDIN")
    .option("-i, --input <file>", "read from a file or directory instead of STDIN")
    .option("-q, --quiet", "suppress the load output", false)
    .option("--platform <os/arch>", "only the host's: the archive's images are taken as they are")
    .action(async (o: { input?: string; quiet: boolean; platform?: string }) => {
      checkHostPlatform(o.platform, "load");
      if (o.input === undefined && process.stdin.isTTY) {
        throw new TsrunError("requested load from stdin, but stdin is empty");
      }
      const result = await new Tsrun().load({ input: o.input ?? "-" });
      // Docker prints the renamings and the loaded names even with -q (it only hides progress).
      for (const r of result.renamed) {
        writeOut(`The image ${familiarName(r.name)} already exists, renaming the old one with ID ${r.previousId} to empty string\n`);
      }
      for (const image of result.images) {
        if (image.names.length === 0) writeOut(`Loaded image ID: ${image.id}\n`);
        for (const name of image.names) writeOut(`Loaded image: ${familiarName(name)}\n`);
      }
    });
}
