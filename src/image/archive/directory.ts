// `load -i DIR`: an image layout in a directory, as `podman load` accepts it: an OCI layout
// (`podman save --format oci-dir`, `skopeo copy ... oci:DIR`) or containers/image's "dir"
// layout (`podman save --format docker-dir`, `skopeo copy ... dir:DIR`: manifest.json, version
// and the blobs named by their hex digest). Docker's `load` reads archives only.
//
// The directory is read as the tar archive it would make, through the same reader and checks
// as every other archive: every file is copied into the load's private spill dir and hashed on
// the way, so nothing the user can change later (or a link the loader would follow) reaches the
// store.
import { createReadStream, lstatSync, readdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import { ArchiveError } from "./reader.js";
import { TarWriter } from "./tar-writer.js";

/** More files than any image layout has: a directory beyond this is not one. */
const MAX_FILES = 100_000;
/** Deeper than blobs/sha256/ by far. */
const MAX_DEPTH = 8;

/** The directory as a tar stream: regular files, directories and symlinks (resolved later inside the archive). */
export function directoryAsTar(dir: string): AsyncIterable<Buffer> {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const tar = new TarWriter(out);
  let files = 0;
  const walk = async (rel: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) throw new ArchiveError(`${path.join(dir, rel)}: directories nested too deep for an image layout`);
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const member = rel === "" ? name : `${rel}/${name}`;
      const full = path.join(dir, member);
      if (++files > MAX_FILES) throw new ArchiveError(`${dir}: more than ${MAX_FILES} files, not an image layout`);
      const st = lstatSync(full);
      if (st.isDirectory()) {
        await tar.directory(member);
        await walk(member, depth + 1);
      } else if (st.isSymbolicLink()) {
        await tar.symlink(member, readlinkSync(full));
      } else if (st.isFile()) {
        // A file that grows or shrinks meanwhile fails the stream (TarWriter checks the size).
        await tar.stream(member, st.size, createReadStream(full, { highWaterMark: 1 << 20 }));
      } else {
        throw new ArchiveError(`${full}: not a regular file, directory or symlink`);
      }
    }
  };
  // Anything else would be read in full only to be refused.
  const top = readdirSync(dir);
  if (!top.includes("index.json") && !top.includes("manifest.json")) {
    throw new ArchiveError(`${dir} is not an image layout: neither index.json (OCI layout) nor manifest.json (dir layout) is in it`);
  }
  walk("", 0)
    .then(() => tar.finish())
    .then(
      () => out.end(),
      (err: unknown) => out.destroy(err instanceof ArchiveError ? err : new ArchiveError(`cannot read ${dir}: ${(err as Error).message}`)),
    );
  return out;
}
