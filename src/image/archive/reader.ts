// Reads an image archive (docker-archive or oci-archive, compressed as a whole or not) member by
// member in one streaming pass. Members may come in any order (the manifest can be last), so
// each file is hashed as it passes and kept: small ones in memory, the rest spilled to a
// private directory in the store's tmp dir, from where the loader later moves the ones it
// needs into the blob store (same filesystem: a rename, no copy).
//
// Nothing is extracted by path: member names only become keys of a map, and names that would
// leave the archive root ("../evil", "/etc/x") are refused outright. Symlinks and hardlinks
// between members (podman and older Docker write `<id>/layer.tar` as a link to the real
// file) are resolved inside that map, never on disk.
import { createHash, type Hash } from "node:crypto";
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { Parser, type ReadEntry } from "tar";
import { withDecompressed } from "./compression.js";

/** JSON documents (manifest.json, index.json, configs, manifests) larger than this are refused. */
export const MAX_JSON_BYTES = 10 * 1024 * 1024;
/** Members up to this size stay in memory (configs, manifests, legacy json/VERSION files)... */
const SMALL_MEMBER = 64 * 1024;
/** ...as long as all of them together stay under this. */
const MEMORY_BUDGET = 16 * 1024 * 1024;
/** PAX and GNU long-name headers larger than this are refused (real ones are a few hundred bytes). */
const MAX_META_BYTES = 1024 * 1024;
/** Longest chain of links followed to reach a file. */
const MAX_LINK_HOPS = 16;
/** Names that are always JSON documents; refused as soon as their header says they are too big. */
const JSON_NAMES = new Set(["manifest.json", "index.json", "repositories", "oci-layout"]);

export interface ArchiveMember {
  /** Normalised name: no leading "./", no trailing "/", never absolute, never "..". */
  name: string;
  kind: "file" | "symlink" | "hardlink";
  size: number;
  /** sha256 of a file's content ("" for links). */
  digest: string;
  /** The first bytes of a file (compression magic). */
  head: Buffer;
  /** The content, for small files. */
  data?: Buffer;
  /** Where the content was spilled, for larger files. */
  file?: string;
  /** Symlink: the raw target; hardlink: the normalised name of the member it repeats. */
  linkTarget?: string;
}

export class ArchiveError extends Error {}

/**
 * A member name as a map key. Returns null for the archive root itself ("." or "./"); throws
 * for names that point outside the archive.
 */
export function memberName(raw: string): string | null {
  if (raw.includes("\0")) throw new ArchiveError(`archive member ${JSON.stringify(raw)}: NUL in the name`);
  if (raw.startsWith("/")) throw new ArchiveError(`archive member ${JSON.stringify(raw)}: absolute path`);
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new ArchiveError(`archive member ${JSON.stringify(raw)}: path escapes the archive`);
  return parts.length === 0 ? null : parts.join("/");
}

export class ArchiveContents {
  constructor(
    readonly members: Map<string, ArchiveMember>,
    private readonly spillDir: string,
  ) {}

  /**
   * The regular file a name refers to, following symlinks and hardlinks within the archive.
   * Undefined when there is no such member; throws for links that leave the archive or loop.
   */
  file(name: string): ArchiveMember | undefined {
    let current = memberName(name);
    for (let hop = 0; current !== null && hop <= MAX_LINK_HOPS; hop++) {
      const member = this.members.get(current);
      if (!member) return undefined;
      if (member.kind === "file") return member;
      const target = member.linkTarget ?? "";
      if (member.kind === "hardlink") {
        current = target;
        continue;
      }
      if (target.startsWith("/")) throw new ArchiveError(`archive member ${member.name}: symlink to an absolute path (${target})`);
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(member.name), target));
      if (resolved === ".." || resolved.startsWith("../")) throw new ArchiveError(`archive member ${member.name}: symlink leaves the archive (${target})`);
      current = memberName(resolved);
    }
    throw new ArchiveError(`archive member ${name}: too many levels of links`);
  }

  /** A small member's bytes (JSON documents), refusing anything over max. */
  read(member: ArchiveMember, what: string, max = MAX_JSON_BYTES): Buffer {
    if (member.size > max) throw new ArchiveError(`${what} (${member.name}) is ${member.size} bytes, more than the ${max} allowed`);
    return member.data ?? readFileSync(member.file as string);
  }

  /** A path to the member's content on disk, writing small in-memory members out first. */
  pathOf(member: ArchiveMember): string {
    if (member.file === undefined) {
      member.file = path.join(this.spillDir, `m-${createHash("sha256").update(member.name).digest("hex").slice(0, 16)}`);
      writeFileSync(member.file, member.data ?? Buffer.alloc(0), { mode: 0o600 });
    }
    return member.file;
  }
}

/** A file member being received. */
interface Receiving {
  member: ArchiveMember;
  hash: Hash;
  fd?: number;
  chunks?: Buffer[];
  received: number;
  /** Where the tap asked for this member's bytes too (decided at its first chunk). */
  sink?: MemberSink;
  tapped: boolean;
}

/**
 * Something that wants a spilled member's bytes while they pass (the loader's unpackers, which
 * then work while the rest of the archive is read). It decides from the member's name; the
 * bytes then go to the sink in order, every one exactly once.
 */
export interface MemberTap {
  open(name: string): MemberSink | undefined;
}

export interface MemberSink {
  /** Takes a chunk; a promise when the reader should wait before it reads on. */
  write(chunk: Buffer): Promise<void> | undefined;
  /** All bytes are in. */
  end(): void;
  /** The reading failed: the sink is abandoned. */
  abort(): void;
}

/**
 * Reads the whole archive into spillDir (an existing, empty directory). Rejects with a one-line
 * reason for anything malformed: bad compression, truncated or invalid tar, unsafe names,
 * duplicate members. The caller removes spillDir in every case.
 */
export async function readArchive(input: AsyncIterable<Buffer | string | Uint8Array>, spillDir: string, tap?: MemberTap): Promise<ArchiveContents> {
  const members = new Map<string, ArchiveMember>();
  const sinks: MemberSink[] = [];
  /** A sink's backpressure: the reader waits for it before it feeds the parser more. */
  let sinkWait: Promise<void> | undefined;
  let failure: Error | undefined;
  let inMemory = 0;
  let spilled = 0;
  let totalBytes = 0;
  let receiving: Receiving | undefined;

  const fail = (err: unknown): void => {
    if (failure) return;
    failure = err instanceof Error ? err : new Error(String(err));
  };

  const add = (member: ArchiveMember): void => {
    // Two members with one name: which one a loader sees would depend on the loader.
    if (members.has(member.name)) throw new ArchiveError(`archive member ${member.name} appears twice`);
    members.set(member.name, member);
  };

  const finishFile = (r: Receiving): void => {
    if (r.fd !== undefined) {
      closeSync(r.fd);
      r.fd = undefined;
    }
    if (r.received !== r.member.size) throw new ArchiveError(`archive member ${r.member.name} is truncated`);
    r.member.digest = "sha256:" + r.hash.digest("hex");
    if (r.chunks) r.member.data = Buffer.concat(r.chunks);
  };

  const onFile = (entry: ReadEntry, name: string): void => {
    const size = entry.size;
    if (JSON_NAMES.has(name) && size > MAX_JSON_BYTES) {
      throw new ArchiveError(`${name} is ${size} bytes, more than the ${MAX_JSON_BYTES} allowed`);
    }
    const member: ArchiveMember = { name, kind: "file", size, digest: "", head: Buffer.alloc(0) };
    add(member);
    const r: Receiving = { member, hash: createHash("sha256"), received: 0, tapped: false };
    if (size <= SMALL_MEMBER && inMemory + size <= MEMORY_BUDGET) {
      inMemory += size;
      r.chunks = [];
    } else {
      member.file = path.join(spillDir, `f${spilled++}`);
      r.fd = openSync(member.file, "wx", 0o600);
    }
    receiving = r;
    entry.on("data", (chunk: Buffer) => {
      if (failure) return;
      try {
        if (r.member.head.length < 8) r.member.head = Buffer.concat([r.member.head, chunk.subarray(0, 8 - r.member.head.length)]);
        r.hash.update(chunk);
        r.received += chunk.length;
        if (r.chunks) r.chunks.push(chunk);
        else {
          let off = 0;
          while (off < chunk.length) off += writeSync(r.fd as number, chunk, off);
          if (!r.tapped) {
            r.tapped = true;
            r.sink = tap?.open(name);
            if (r.sink) sinks.push(r.sink);
          }
          const wait = r.sink?.write(chunk);
          if (wait) sinkWait = sinkWait ? Promise.all([sinkWait, wait]).then(() => undefined) : wait;
        }
      } catch (err) {
        fail(new Error(`cannot keep archive member ${name}: ${(err as Error).message}`, { cause: err }));
      }
    });
    entry.on("end", () => {
      if (receiving === r) receiving = undefined;
      if (failure) return;
      try {
        finishFile(r);
        r.sink?.end();
      } catch (err) {
        fail(err);
      }
    });
  };

  const onEntry = (entry: ReadEntry): void => {
    if (failure) {
      entry.resume();
      return;
    }
    try {
      const name = memberName(entry.path);
      if (name === null || entry.type === "Directory") {
        entry.resume();
        return;
      }
      switch (entry.type) {
        case "File":
        case "OldFile":
        case "ContiguousFile":
          onFile(entry, name);
          return;
        case "SymbolicLink":
          add({ name, kind: "symlink", size: 0, digest: "", head: Buffer.alloc(0), linkTarget: entry.linkpath ?? "" });
          break;
        case "Link": {
          const target = memberName(entry.linkpath ?? "");
          if (target === null) throw new ArchiveError(`archive member ${name}: hardlink to the archive root`);
          add({ name, kind: "hardlink", size: 0, digest: "", head: Buffer.alloc(0), linkTarget: target });
          break;
        }
        default:
          throw new ArchiveError(`archive member ${name}: unexpected member type ${entry.type} in an image archive`);
      }
      entry.resume();
    } catch (err) {
      fail(err);
      entry.resume();
    }
  };

  // strict: every node-tar warning (bad checksum, truncation, invalid header) is an error.
  const parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: MAX_META_BYTES });
  parser.on("entry", onEntry);
  parser.on("ignoredEntry", (entry: ReadEntry) => {
    // node-tar skips an extended header larger than maxMetaEntrySize and reads the next entry
    // without it, under another name than other tar readers would give it: refused instead.
    if (entry.meta) fail(new ArchiveError(`archive member ${entry.path}: extended header of ${entry.size} bytes is larger than the ${MAX_META_BYTES} allowed`));
    else fail(new ArchiveError(`archive member ${entry.path}: unsupported member type ${entry.type}`));
  });
  parser.on("error", (err: Error) => {
    const code = (err as { tarCode?: unknown }).tarCode;
    if (code === "TAR_BAD_ARCHIVE" && /Unrecognized archive format/.test(err.message)) fail(new ArchiveError("not a tar archive (nor a compressed one)"));
    else if (members.size === 0 && receiving === undefined) fail(new ArchiveError(`not a tar archive: ${err.message}`, { cause: err }));
    else fail(new ArchiveError(`invalid tar archive: ${err.message}`, { cause: err }));
  });
  // Settles on an error too: node-tar need not emit "end" after one.
  const parserEnded = new Promise<void>((resolve) => {
    parser.once("end", () => resolve());
    parser.once("error", () => resolve());
  });

  try {
    await withDecompressed(input, "the archive", async (chunks) => {
      for await (const chunk of chunks) {
        if (failure) throw failure;
        totalBytes += chunk.length;
        // Entries consume their data synchronously (writeSync), so write()'s return value
        // needs no waiting for 'drain'.
        parser.write(chunk);
        if (failure) throw failure;
        if (sinkWait) {
          const wait = sinkWait;
          sinkWait = undefined;
          await wait;
        }
      }
      if (totalBytes === 0) throw new ArchiveError("the archive is empty");
      // node-tar ignores a partial header block at the very end; tar data comes in whole blocks.
      if (totalBytes % 512 !== 0) throw new ArchiveError(`the archive is truncated (${totalBytes} bytes is not a whole number of tar blocks)`);
      parser.end();
      await parserEnded;
    });
  } catch (err) {
    fail(err);
  } finally {
    const r = receiving as Receiving | undefined;
    if (r?.fd !== undefined) closeSync(r.fd);
  }
  if (!failure && receiving !== undefined) fail(new ArchiveError(`archive member ${(receiving as Receiving).member.name} is truncated`));
  if (failure) {
    for (const sink of sinks) sink.abort();
    throw failure;
  }
  return new ArchiveContents(members, spillDir);
}
