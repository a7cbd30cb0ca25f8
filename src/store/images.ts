// The image index: which images exist, their names, manifest, config and layers.
// One JSON file, replaced atomically under the store lock.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { publishStaged, stageFile, writeFileAtomic, type StagedFile } from "./atomic.js";
import { digestHex } from "./digest.js";
import { normaliseName } from "../image/reference.js";

export interface LayerRecord {
  /** sha256 of the uncompressed tar. */
  diffId: string;
  chainId: string;
  /** The blob as stored (compressed or not), and its media type. */
  digest: string;
  mediaType: string;
  size: number;
}

export interface ImageRecord {
  /** Image ID: the config blob's digest. */
  id: string;
  names: string[];
  /** Digest of the manifest blob that describes this image in the store. */
  manifest: string;
  /** Digests this image is known by in registries (repo@digest). */
  repoDigests: string[];
  layers: LayerRecord[];
  /** When the image entered this store. */
  added: string;
}

interface IndexFile {
  images: ImageRecord[];
}

/** Adds names to an image record, taking each name away from any other image (retagging). */
export function assignNames(images: ImageRecord[], target: ImageRecord, names: string[]): void {
  for (const name of names) {
    for (const other of images) {
      if (other !== target) other.names = other.names.filter((n) => n !== name);
    }
    if (!target.names.includes(name)) target.names.push(name);
  }
}

export class ImageIndex {
  readonly file: string;
  constructor(dir: string) {
    this.file = path.join(dir, "index.json");
  }

  /**
   * The index as last read, with the identity of the file it came from: a command often reads
   * the index twice (a commit: to find the parent, then under the lock to add the image), and
   * the file is only ever replaced by a rename, so an unchanged inode, size and change time mean
   * unchanged text. The records are parsed anew each time: callers change what they get.
   */
  private lastRead: { identity: string; text: string } | undefined;

  list(): ImageRecord[] {
    try {
      const st = statSync(this.file, { bigint: true });
      const identity = `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}:${st.mtimeNs}`;
      if (this.lastRead?.identity !== identity) this.lastRead = { identity, text: readFileSync(this.file, "utf8") };
      return (JSON.parse(this.lastRead.text) as IndexFile).images;
    } catch (err) {
      this.lastRead = undefined;
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new Error(`image index ${this.file} is unreadable: ${(err as Error).message}`);
    }
  }

  /**
   * Replace the whole list (call under the store lock). One line of JSON: the index grows with
   * every image, and every command that adds one reads, parses and writes it whole.
   */
  save(images: ImageRecord[]): void {
    this.lastRead = undefined;
    writeFileAtomic(this.file, indexText(images));
  }

  /**
   * save in two halves, for a caller that flushes the new index together with other files (the
   * blobs it refers to: StoreTransaction.putBlobsAndSaveImages): written but not yet in place.
   */
  stage(images: ImageRecord[]): StagedFile {
    this.lastRead = undefined;
    return stageFile(this.file, indexText(images));
  }

  /** Puts a staged index, flushed, in place. */
  publish(staged: StagedFile): void {
    this.lastRead = undefined;
    publishStaged(staged);
  }

  /**
   * Other names a name the store does not have may stand for (a short name's alias, localhost/
   * and search-registry forms: image/registry/short-names.ts), set by the library handle: the
   * store itself reads no configuration.
   */
  alternativeNames?: (query: string) => string[];

  /**
   * Finds an image by name (normalised as Docker does), full ID, "sha256:" ID or a unique ID
   * prefix. Returns undefined when nothing matches; throws when a prefix is ambiguous.
   */
  find(query: string, images = this.list()): ImageRecord | undefined {
    const idQuery = query.startsWith("sha256:") ? query.slice(7) : query;
    if (/^[a-f0-9]{3,64}$/.test(idQuery)) {
      const matches = images.filter((i) => digestHex(i.id).startsWith(idQuery));
      if (matches.length === 1) return matches[0];
      if (matches.length > 1 && idQuery.length < 64) throw new Error(`image ID prefix "${query}" is ambiguous`);
    }
    return this.findName(query, images).image;
  }

  /**
   * The image a name means and the stored name that matched it: Docker's normalised form
   * first (docker.io/library/NAME), else the first of the alternative names the store has.
   * With no match, the name is Docker's form and the image undefined.
   */
  findName(query: string, images = this.list()): { name: string; image: ImageRecord | undefined } {
    // A malformed reference is the user's error, reported as such (Docker's wording).
    const name = normaliseName(query);
    const byName = (n: string): ImageRecord | undefined =>
      n.includes("@") ? images.find((i) => i.repoDigests.includes(n) || i.manifest === n.slice(n.indexOf("@") + 1)) : images.find((i) => i.names.includes(n));
    const image = byName(name);
    if (image || !this.alternativeNames) return { name, image };
    for (const alternative of this.alternativeNames(query)) {
      const found = byName(alternative);
      if (found) return { name: alternative, image: found };
    }
    return { name, image: undefined };
  }
}

/** The index file's text: one line of JSON (see save). */
function indexText(images: ImageRecord[]): string {
  return JSON.stringify({ images } satisfies IndexFile) + "\n";
}
