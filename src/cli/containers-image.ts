// Containers to images: `commit`, `export`, `diff`.
import type { Command } from "commander";
import { Tsrun } from "../tsrun.js";
import { collect, parseBoolFlag } from "./util.js";
import { formatChanges } from "../image/diff.js";
import { writeOut } from "./stdout.js";

export function registerContainerImages(program: Command): void {
  program
    .command("commit")
    .description("Create a new image from a container's changes")
    .argument("<container>")
    .argument("[repository[:tag]]")
    .option("-a, --author <author>", 'author (e.g. "John Hannibal Smith <hannibal@a-team.com>")')
    .option("-m, --message <message>", "commit message")
    .option("-c, --change <instruction>", "apply a Dockerfile instruction to the created image", collect, [])
    .option("-p, --pause [bool]", "pause the container during commit (default true)", parseBoolFlag, true)
    .action(async (container: string, reference: string | undefined, o: { author?: string; message?: string; change: string[]; pause: boolean }) => {
      const image = await new Tsrun().commit({ container, reference, author: o.author, message: o.message, changes: o.change, pause: o.pause });
      writeOut(`${image.id}\n`);
    });

  program
    .command("export")
    .description("Export a container's filesystem as a tar archive")
    .argument("<container>")
    .option("-o, --output <file>", "write to a file instead of standard output")
    .action(async (container: string, o: { output?: string }) => {
      await new Tsrun().exportContainer({ container, output: o.output });
    });

  program
    .command("diff")
    .description("Inspect changes to files or directories on a container's filesystem")
    .argument("<container>")
    .action(async (container: string) => {
      writeOut(formatChanges(await new Tsrun().diff(container)));
    });
}
